package render

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// PostRenderer is one kustomize post-renderer of a Helm chart's output,
// in the shape of Flux HelmRelease's spec.postRenderers[].kustomize plus
// commonLabels. It is what a kustomization with these fields and the
// chart's output as its only resource builds to.
type PostRenderer struct {
	// Patches are inline strategic merge or JSON 6902 patches, applied in
	// order, each to its Target (a strategic merge patch without one
	// applies to the object it names). Path is not allowed: there are no
	// files to read.
	Patches []types.Patch
	// Images set the name, tag or digest of container images.
	Images []types.Image
	// CommonLabels are added to every object and to selectors, as
	// kustomize's commonLabels.
	CommonLabels map[string]string
}

// postRenderDir is the folder of the in-memory file system a post-render
// builds in; postRenderInput is the file holding the chart's output there.
const (
	postRenderDir   = "/postrender"
	postRenderInput = "helm-output.yaml"
)

// postRendered is one object a post-render built and the origin of the
// chart document it came from.
type postRendered struct {
	origin object.Origin
	m      map[string]any
}

// postRender runs the post-renderers of opts in order on the documents a
// chart rendered, as Helm 3's --post-renderer does: on its manifests (the
// CRDs of crds/ included, with IncludeCRDs) and not on its hooks, which
// Helm 3 installs as the chart rendered them (helm.sh/helm/v3 pkg/action
// renderResources pipes only the manifest buffer through the
// post-renderer; hooks are sorted out before it). Each post-renderer's
// output is printed as `kustomize build` prints it and read by the next,
// so a chain is `... | kustomize build | kustomize build`.
//
// Each built object keeps the origin (template and document) of the chart
// document it came from, found by the identity kustomize loaded it with
// (Resource.OrgId). kustomize keeps no earlier identity of a name that a
// JSON 6902 patch replaced: such an object, in the last post-renderer or
// an earlier one, is named by its place in the output (builtOrigin).
func (r *Renderer) postRender(opts HelmOptions, docs []helmDoc) ([]postRendered, error) {
	// The input, as Helm writes its manifest buffer, and the origin of
	// each object in it.
	var in strings.Builder
	origins := map[string][]object.Origin{}
	counts := map[string]int{}
	for _, d := range docs {
		if !d.hook {
			fmt.Fprintf(&in, "---\n# Source: %s\n%s\n", d.source, d.content)
		}
		for _, m := range d.parsed {
			// Counted as Helm does, hooks included.
			origin := object.Origin{App: opts.App, Template: d.source, Doc: counts[d.source]}
			counts[d.source]++
			if d.hook {
				continue
			}
			for _, k := range postRenderKeys(m) {
				origins[k] = append(origins[k], origin)
			}
		}
	}
	input := []byte(in.String())
	var built []*resource.Resource
	for i, pr := range opts.PostRenderers {
		for j, p := range pr.Patches {
			if p.Path != "" {
				// The build has no files to read: see postRenderBuild.
				return nil, fmt.Errorf("helm: app %s: postRenderers[%d].kustomize.patches[%d]: path is not allowed, give the patch inline", opts.App, i, j)
			}
		}
		var err error
		if built, err = r.postRenderBuild(input, newPostRenderKustomization(pr)); err != nil {
			return nil, postRenderError(opts, i, pr, err, func(k postRenderKustomization) error {
				_, err := r.postRenderBuild(input, k)
				return err
			})
		}
		if i < len(opts.PostRenderers)-1 {
			if input, err = printResources(built); err != nil {
				return nil, fmt.Errorf("helm: app %s: postRenderers[%d]: print: %w", opts.App, i, err)
			}
		}
	}
	out := make([]postRendered, len(built))
	for i, res := range built {
		m, err := resourceObject(res)
		if err != nil {
			return nil, fmt.Errorf("helm: app %s: postRenderers: %w", opts.App, err)
		}
		out[i] = postRendered{origin: builtOrigin(opts, origins, res, i), m: m}
	}
	return out, nil
}

// postRenderKustomization is the kustomization file of one post-render.
type postRenderKustomization struct {
	types.TypeMeta `json:",inline"`
	Resources      []string      `json:"resources"`
	Patches        []types.Patch `json:"patches,omitempty"`
	Labels         []types.Label `json:"labels,omitempty"`
	Images         []types.Image `json:"images,omitempty"`
}

// newPostRenderKustomization writes commonLabels as kustomize reads them
// (types.Kustomization.FixKustomization): labels that include selectors.
// kustomize would otherwise print its deprecation warning for
// commonLabels to the process's stderr on every build.
func newPostRenderKustomization(pr PostRenderer) postRenderKustomization {
	k := postRenderKustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{postRenderInput},
		Patches:   pr.Patches, Images: pr.Images,
	}
	if len(pr.CommonLabels) > 0 {
		k.Labels = []types.Label{{Pairs: pr.CommonLabels, IncludeSelectors: true}}
	}
	return k
}

// postRenderBuild builds k with input as its resource file, on an
// in-memory file system that holds nothing else, through runKustomize:
// the same builtin-only kustomize (no exec or KRM function plugins, no
// helm inflation) as kustomize apps. With nothing but the two files on it,
// a build cannot read the repository, the machine or the network.
func (r *Renderer) postRenderBuild(input []byte, k postRenderKustomization) ([]*resource.Resource, error) {
	kdata, err := yaml.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("kustomization: %w", err)
	}
	fsys := filesys.MakeFsInMemory()
	if err := fsys.MkdirAll(postRenderDir); err != nil {
		return nil, err
	}
	if err := fsys.WriteFile(postRenderDir+"/"+postRenderInput, input); err != nil {
		return nil, err
	}
	if err := fsys.WriteFile(postRenderDir+"/kustomization.yaml", kdata); err != nil {
		return nil, err
	}
	r.kustomizeMu.Lock()
	defer r.kustomizeMu.Unlock()
	return runKustomize(fsys, postRenderDir)
}

// postRenderError names the post-renderer, and the patch when one is to
// blame, of a failed build. kustomize applies a kustomization's patches in
// order before its labels and images, and its error does not say which
// patch failed: the failing one is the first whose prefix of the patches
// does not build. This runs only on a failure.
func postRenderError(opts HelmOptions, i int, pr PostRenderer, err error, build func(postRenderKustomization) error) error {
	where := fmt.Sprintf("helm: app %s: postRenderers[%d].kustomize", opts.App, i)
	if len(pr.Patches) > 0 {
		for j := range pr.Patches {
			k := newPostRenderKustomization(PostRenderer{Patches: pr.Patches[:j+1]})
			if perr := build(k); perr != nil {
				return fmt.Errorf("%s.patches[%d]: %w%s", where, j, perr, postRenderHint(perr))
			}
		}
	}
	return fmt.Errorf("%s: %w%s", where, err, postRenderHint(err))
}

// postRenderHint adds to kustomize's hint that a patch naming an object
// found nothing: it may name a hook, which is not post-rendered.
func postRenderHint(err error) string {
	if strings.Contains(err.Error(), "no resource matches") {
		return " (the chart's hooks are not post-rendered, as with Helm 3's --post-renderer: a patch cannot name one)"
	}
	return kustomizeHint(err)
}

// printResources prints built resources as `kustomize build` does: each
// one's JSON as YAML, joined by "---".
func printResources(built []*resource.Resource) ([]byte, error) {
	var out []byte
	for i, res := range built {
		doc, err := resourceJSON(res)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, y...)
	}
	return out, nil
}

// postRenderKeys are the keys an object of the chart's output is found
// under after a build: its group, kind and name, with and without its
// namespace (an empty one as kustomize's "default").
func postRenderKeys(m map[string]any) []string {
	if m == nil {
		return nil
	}
	u := &unstructured.Unstructured{Object: m}
	if u.IsList() {
		var keys []string
		items, _ := m["items"].([]any)
		for _, it := range items {
			if im, ok := it.(map[string]any); ok {
				keys = append(keys, postRenderKeys(im)...)
			}
		}
		return keys
	}
	gk := u.GroupVersionKind().GroupKind()
	return []string{idKey(gk, u.GetNamespace(), u.GetName()), idKey(gk, "*", u.GetName())}
}

func idKey(gk schema.GroupKind, namespace, name string) string {
	if namespace == "" {
		namespace = "default"
	}
	return gk.String() + "/" + namespace + "/" + name
}

// builtOrigin is the origin of the chart document a built resource came
// from. An object kustomize made up (none of the post-renderers' fields
// can) or one whose identity is ambiguous gets the post-renderers'
// output and its index there.
func builtOrigin(opts HelmOptions, origins map[string][]object.Origin, res *resource.Resource, i int) object.Origin {
	id := res.OrgId()
	gk := schema.GroupKind{Group: id.Group, Kind: id.Kind}
	ns := id.Namespace
	if strings.HasPrefix(ns, "~") { // kustomize's cluster-scoped mark
		ns = ""
	}
	for _, k := range []string{idKey(gk, ns, id.Name), idKey(gk, "*", id.Name)} {
		if o := origins[k]; len(o) == 1 {
			return o[0]
		}
	}
	return object.Origin{App: opts.App, Template: fmt.Sprintf("postRenderers[%d] output", len(opts.PostRenderers)-1), Doc: i}
}
