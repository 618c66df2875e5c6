package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/corpus"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	helmrelease "helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The Helm corpus: charts generated here in the shapes public charts use,
// each rendered by deliver and by Helm, and compared twice:
//   - with `helm template` (the CLI), byte for byte;
//   - with the objects `helm install` would create: the release manifest
//     and each hook's manifest, as Helm's install assembles them, read by
//     the decoder kubectl and Helm's kube client use (the YAML-or-JSON
//     stream decoder, then the unstructured JSON scheme).
// The second comparison does not use any of deliver's YAML code, so a
// difference born in deliver's splitting, fast path or number handling
// shows up here.

// writeChart writes a generated chart under root/charts/name.
func writeChart(t *testing.T, root string, c corpus.Chart) {
	t.Helper()
	if err := corpus.WriteTree(filepath.Join(root, "charts", c.Name), c.Files); err != nil {
		t.Fatal(err)
	}
}

// helmInstall runs Helm's own install of a chart in client-only dry run,
// as `helm template` runs it, and returns the release it assembled.
func helmInstall(chartDir, release, namespace string) (*helmrelease.Release, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.DryRunOption, inst.ClientOnly, inst.Replace = true, "true", true, true
	inst.ReleaseName, inst.Namespace, inst.IncludeCRDs = release, namespace, true
	rel, err := inst.RunWithContext(context.Background(), ch, map[string]any{})
	if err != nil {
		return nil, fmt.Errorf("helm install --dry-run: %w", err)
	}
	return rel, nil
}

// helmInstallObjects returns the objects `helm install` would create for
// a chart: its release manifest and hook manifests (helmInstall) read by
// the YAML-or-JSON decoder Helm's kube client and kubectl build objects
// with. Each object is its canonical JSON.
func helmInstallObjects(chartDir, release, namespace string) ([]string, error) {
	rel, err := helmInstall(chartDir, release, namespace)
	if err != nil {
		return nil, err
	}
	out, err := kubectlDecode(rel.Manifest)
	if err != nil {
		return nil, err
	}
	for _, h := range rel.Hooks {
		objs, err := kubectlDecode(h.Manifest)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	slices.Sort(out)
	return out, nil
}

// kubectlDecode reads a YAML stream as kubectl's resource builder does
// (StreamVisitor): YAML-or-JSON documents, trimmed, empty and null ones
// skipped, each decoded by the unstructured JSON scheme.
func kubectlDecode(manifest string) ([]string, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []string
	for {
		var ext runtime.RawExtension
		if err := d.Decode(&ext); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("kubectl decoder: %w", err)
		}
		raw := bytes.TrimSpace(ext.Raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
		if err != nil {
			return nil, fmt.Errorf("kubectl decoder: %w", err)
		}
		b, err := json.Marshal(obj.(*unstructured.Unstructured).Object)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
}

func canonicalJSON(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// corpusRoot writes every generated chart into a temporary repository.
func corpusRoot(t *testing.T) (string, []corpus.Chart) {
	t.Helper()
	charts := corpus.Charts()
	root := t.TempDir()
	for _, c := range charts {
		writeChart(t, root, c)
	}
	return root, charts
}

func corpusOptions(root string, c corpus.Chart) HelmOptions {
	return HelmOptions{Root: root, App: "corpus", Chart: "charts/" + c.Name, ReleaseName: "rel", Namespace: "ns", IncludeCRDs: true}
}

// TestHelmCorpusInstall renders every generated chart with deliver and
// compares its objects with those `helm install` would create, equal
// after parsing by kubectl's decoder.
func TestHelmCorpusInstall(t *testing.T) {
	root, charts := corpusRoot(t)
	var compared, refused, objects atomic.Int64
	t.Cleanup(func() {
		t.Logf("%d charts compared (%d objects), %d refused by both", compared.Load(), objects.Load(), refused.Load())
		// Mostly valid charts, or the corpus proves little.
		valid := 0
		for _, c := range charts {
			if !c.Refused {
				valid++
			}
		}
		if compared.Load() < int64(valid)*8/10 {
			t.Errorf("only %d of %d charts rendered", compared.Load(), len(charts))
		}
	})
	for _, c := range charts {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			want, herr := helmInstallObjects(filepath.Join(root, "charts", c.Name), "rel", "ns")
			set, err := Helm(context.Background(), corpusOptions(root, c))
			if c.Refused {
				// Helm's CLI refuses it (TestHelmCorpusTemplate checks
				// that), not always action.Install.
				if err == nil {
					t.Fatal("deliver renders a chart helm refuses")
				}
				refused.Add(1)
				return
			}
			if herr != nil || err != nil {
				// Invalid YAML a chart generates is refused by both.
				if (herr == nil) != (err == nil) {
					t.Fatalf("helm install: %v\ndeliver: %v", herr, err)
				}
				refused.Add(1)
				return
			}
			var objs []string
			for _, o := range append(set.Objects, set.Hooks...) {
				objs = append(objs, canonicalJSON(t, o.Object))
			}
			slices.Sort(objs)
			compared.Add(1)
			objects.Add(int64(len(objs)))
			if diff := cmp.Diff(want, objs); diff != "" {
				t.Errorf("objects (-want helm install +got deliver):\n%s", diff)
			}
		})
	}
}

// TestHelmCorpusTemplate compares deliver's documents of every generated
// chart with what `helm template` prints, byte for byte.
func TestHelmCorpusTemplate(t *testing.T) {
	helm := testbin(t, "helm")
	root, charts := corpusRoot(t)
	for _, c := range charts {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			want, herr := cliOutput(t, root, helm, "template", "rel", "charts/"+c.Name, "--namespace", "ns", "--include-crds")
			got, err := helmTemplate(context.Background(), corpusOptions(root, c))
			if c.Refused && herr == nil {
				t.Fatalf("helm template does not refuse the chart the corpus says it refuses")
			}
			if herr != nil || err != nil {
				// Invalid YAML a chart generates is refused by both.
				if (herr == nil) != (err == nil) {
					t.Fatalf("helm template: %v\ndeliver: %v", herr, err)
				}
				return
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("output (-want helm template +got deliver):\n%s", diff)
			}
		})
	}
}

// TestHelmBlockScalarAtDocumentEnd is the case users found: a literal
// block scalar that ends a chart's only template keeps its final line
// break, as in `helm install`.
func TestHelmBlockScalarAtDocumentEnd(t *testing.T) {
	root := t.TempDir()
	writeChart(t, root, corpus.Chart{Name: "c", Files: map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  rules: |\n    {}\n",
	}})
	set, err := Helm(context.Background(), HelmOptions{Root: root, App: "c", Chart: "charts/c"})
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructured.NestedString(set.Objects[0].Object, "data", "rules")
	if got != "{}\n" {
		t.Errorf("data.rules = %q, want %q (as helm install)", got, "{}\n")
	}
}

// TestPlainCorpus reads plain YAML in the corpus's shapes with deliver's
// decoder and with kubectl's: every generated template without template
// actions, as written (many end without a line break, in a block scalar),
// and every release manifest Helm assembled from the charts.
func TestPlainCorpus(t *testing.T) {
	root, charts := corpusRoot(t)
	type input struct{ name, data string }
	var inputs []input
	for _, d := range corpus.PlainDocuments() {
		inputs = append(inputs, input{d.Name, d.Data})
	}
	for _, c := range charts {
		if rel, err := helmInstall(filepath.Join(root, "charts", c.Name), "rel", "ns"); err == nil {
			inputs = append(inputs, input{c.Name + "/manifest", rel.Manifest})
		}
	}
	compared := 0
	for _, in := range inputs {
		want, kerr := kubectlDecode(in.data)
		objs, err := Decode(in.name, []byte(in.data))
		if kerr != nil || err != nil {
			if kerr == nil {
				t.Errorf("%s: deliver refused what kubectl reads: %v", in.name, err)
			}
			continue
		}
		var got []string
		for _, o := range objs {
			got = append(got, canonicalJSON(t, o.Object))
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: objects (-want kubectl +got deliver):\n%s", in.name, diff)
		}
		compared++
	}
	t.Logf("%d plain inputs compared of %d", compared, len(inputs))
	if compared < len(inputs)*8/10 {
		t.Errorf("only %d of %d inputs compared", compared, len(inputs))
	}
}
