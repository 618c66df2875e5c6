package render

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	fluxkustomize "github.com/fluxcd/pkg/kustomize"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	sigsyaml "sigs.k8s.io/yaml"
)

// randomAdditions draws what a Flux Kustomization may add: a target
// namespace, a name prefix and suffix, patches (strategic merge and JSON
// 6902, with targets by kind, name pattern and label selector), images
// (new and known names, tags and digests).
func randomAdditions(r *rand.Rand) *KustomizeAdditions {
	a := &KustomizeAdditions{}
	if r.IntN(2) == 0 {
		a.Namespace = "flux-ns"
	}
	if r.IntN(3) == 0 {
		a.NamePrefix = "fx-"
	}
	if r.IntN(3) == 0 {
		a.NameSuffix = "-fx"
	}
	patches := []types.Patch{
		{Patch: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: any, labels: {patched: \"yes\"}}\n", Target: &types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Kind: "ConfigMap"}}}},
		{Patch: "- op: add\n  path: /metadata/annotations\n  value: {flux: patched}\n", Target: &types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Group: "apps", Kind: "Deployment"}, Name: "w.*"}}},
		{Patch: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 5}\n", Target: &types.Selector{LabelSelector: "app=web"}},
	}
	for _, p := range patches {
		if r.IntN(3) == 0 {
			a.Patches = append(a.Patches, p)
		}
	}
	images := []types.Image{{Name: "nginx", NewTag: "1.29"}, {Name: "nginx", Digest: "sha256:" + strings.Repeat("a", 64)},
		{Name: "nginx", NewName: "mirror.example/nginx"}, {Name: "busybox", NewName: "mirror.example/busybox", NewTag: "1"}}
	for _, im := range images {
		if r.IntN(3) == 0 {
			a.Images = append(a.Images, im)
		}
	}
	return a
}

// fluxSpec is the Kustomization spec of the additions.
func fluxSpec(a *KustomizeAdditions) map[string]any {
	spec := map[string]any{}
	for k, v := range map[string]string{"targetNamespace": a.Namespace, "namePrefix": a.NamePrefix, "nameSuffix": a.NameSuffix} {
		if v != "" {
			spec[k] = v
		}
	}
	var patches, images []any
	for _, p := range a.Patches {
		t := p.Target
		patches = append(patches, map[string]any{"patch": p.Patch, "target": map[string]any{
			"group": t.Group, "kind": t.Kind, "name": t.Name, "labelSelector": t.LabelSelector,
		}})
	}
	for _, im := range a.Images {
		images = append(images, map[string]any{"name": im.Name, "newName": im.NewName, "newTag": im.NewTag, "digest": im.Digest})
	}
	if patches != nil {
		spec["patches"] = patches
	}
	if images != nil {
		spec["images"] = images
	}
	return spec
}

// TestKustomizeAdditionsAsFlux compares deliver's build of the kustomize
// corpus with random additions against Flux's: its own generator
// (github.com/fluxcd/pkg/kustomize) writing them into a copy of the
// kustomization, then the build, read by kubectl's decoder.
func TestKustomizeAdditionsAsFlux(t *testing.T) {
	t.Parallel()
	root, cases := kustCorpus(t)
	flux := t.TempDir()
	if err := os.CopyFS(flux, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(23, 29))
	var rd Renderer
	var tally corpusTally
	tally.check(t, len(cases))
	for _, c := range cases {
		add := randomAdditions(r)
		dir := filepath.Join(flux, c.Name, c.Path)
		// Flux adds origin annotations to the objects of a kustomization
		// without resources (its generator sets buildMetadata for it);
		// deliver does not: such cases are left out.
		var k types.Kustomization
		if data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); err != nil || sigsyaml.Unmarshal(data, &k) != nil || len(k.Resources) == 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			ks := unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
				"metadata": map[string]any{"name": "app", "namespace": "flux-system"}, "spec": fluxSpec(add),
			}}
			var out []byte
			_, kerr := fluxkustomize.NewGenerator("", ks).WriteFile(dir)
			if kerr == nil {
				m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
				if kerr = err; err == nil {
					out, kerr = m.AsYaml()
				}
			}
			set, err := rd.Kustomize(context.Background(), KustomizeOptions{Root: filepath.Join(root, c.Name), Path: c.Path, App: "corpus", Additions: add})
			var got []string
			if err == nil {
				for _, o := range append(set.Objects, set.Hooks...) {
					got = append(got, canonicalJSON(t, o.Object))
				}
				slices.Sort(got)
			}
			if testing.Verbose() && kerr != nil {
				t.Logf("flux refuses: %v", kerr)
			}
			tally.compare(t, out, kerr, got, err)
		})
	}
}
