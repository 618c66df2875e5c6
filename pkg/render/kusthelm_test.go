package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/corpus"
	"github.com/deliverhq/deliver/pkg/object"
)

// The kustomize helmCharts corpus: every third chart of the Helm corpus
// (block scalars at document ends, hooks and test hooks, CRDs, library
// charts and subcharts, tpl, charts helm refuses) in a kustomization that
// inflates it with helmCharts, with the options Argo CD users write
// (a release namespace, includeCRDs, skipHooks, skipTests, valuesInline
// under each valuesMerge, a valuesFile, additionalValuesFiles, a chartHome)
// and kustomize's own fields around it (namespace, which leaves the
// chart's objects alone, namePrefix, labels, a resource and a
// configMapGenerator of its own). deliver builds it with its own Helm
// engine; `kustomize build --enable-helm` runs the helm binary.

// kustHelmCase is one case of the corpus: its folder's name, and whether
// helm refuses its chart.
type kustHelmCase struct {
	name    string
	refused bool
}

// writeKustHelmCase writes the kustomization of one chart into dir.
func writeKustHelmCase(t *testing.T, r *rand.Rand, dir string, c corpus.Chart) {
	t.Helper()
	home := "charts"
	var k strings.Builder
	if r.IntN(4) == 0 {
		home = "vendor/helm"
		k.WriteString("helmGlobals: {chartHome: vendor/helm}\n")
	}
	if err := corpus.WriteTree(filepath.Join(dir, home, c.Name), c.Files); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\ndata: {a: b}\n"}
	if r.IntN(3) == 0 {
		k.WriteString("namespace: kust-ns\n")
	}
	if r.IntN(3) == 0 {
		k.WriteString("namePrefix: p-\n")
	}
	if r.IntN(3) == 0 {
		k.WriteString("labels: [{pairs: {team: shop}}]\n")
	}
	k.WriteString("resources: [cm.yaml]\n")
	if r.IntN(3) == 0 {
		k.WriteString("configMapGenerator: [{name: gen, literals: [x=y]}]\n")
	}
	fmt.Fprintf(&k, "helmCharts:\n- name: %s\n  releaseName: rel\n", c.Name)
	if r.IntN(2) == 0 {
		k.WriteString("  namespace: release-ns\n")
	}
	for _, f := range []string{"includeCRDs", "skipHooks", "skipTests"} {
		if r.IntN(2) == 0 {
			fmt.Fprintf(&k, "  %s: true\n", f)
		}
	}
	switch r.IntN(5) {
	case 0:
		files["values-a.yaml"] = "extra: {fromFile: 1, list: [a, b]}\n"
		k.WriteString("  valuesFile: values-a.yaml\n")
	case 1:
		files["values-b.yaml"] = "extra: {more: true}\n"
		k.WriteString("  additionalValuesFiles: [values-b.yaml]\n")
	}
	if r.IntN(2) == 0 {
		k.WriteString("  valuesInline: {extra: {inline: 2, list: [c]}, big: 1000000}\n")
		if m := []string{"", "merge", "override", "replace"}[r.IntN(4)]; m != "" {
			fmt.Fprintf(&k, "  valuesMerge: %s\n", m)
		}
	}
	files["kustomization.yaml"] = k.String()
	if err := corpus.WriteTree(dir, files); err != nil {
		t.Fatal(err)
	}
}

// TestKustomizeHelmChartsAsCLI compares deliver's build of the corpus
// with `kustomize build --enable-helm`, read by kubectl's decoder.
func TestKustomizeHelmChartsAsCLI(t *testing.T) {
	kustomize, helm := testbin(t, "kustomize"), testbin(t, "helm")
	root := t.TempDir()
	r := rand.New(rand.NewPCG(3, 11))
	var cases []kustHelmCase
	for i, c := range corpus.Charts() {
		if i%3 != 0 {
			continue
		}
		dir := filepath.Join(root, c.Name)
		writeKustHelmCase(t, r, dir, c)
		cases = append(cases, kustHelmCase{name: c.Name, refused: c.Refused})
	}
	var rd Renderer
	var tally corpusTally
	tally.check(t, len(cases))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(root, c.name)
			out, kerr := cliOutput(t, dir, kustomize, "build", "--enable-helm", "--helm-command", helm, ".")
			got, err := deliverKustomize(t, &rd, root, corpus.Kustomization{Name: c.name, Path: "."})
			if c.refused && kerr == nil {
				t.Errorf("kustomize builds the chart the corpus says helm refuses")
			}
			tally.compare(t, out, kerr, got, err)
		})
	}
}

// TestKustomizeHelmCharts checks what the corpus does not: a chart's hook
// is a hook of the app, the chart's files count among the render's reads
// (a change there renders the app again), and the refusals name the
// kustomization and the chart.
func TestKustomizeHelmCharts(t *testing.T) {
	t.Parallel()
	chart := map[string]string{
		"o/charts/web/Chart.yaml":             "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"o/charts/web/values.yaml":            "level: info\n",
		"o/charts/web/templates/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {level: {{ .Values.level }}}\n",
		"o/charts/web/templates/hook.yaml":    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {helm.sh/hook: pre-upgrade}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}}}\n",
		"o/charts/web/templates/_helpers.tpl": "{{- define \"x\" }}{{ end }}\n",
	}
	with := func(k string) map[string]string {
		m := map[string]string{"o/kustomization.yaml": k}
		for p, c := range chart {
			m[p] = c
		}
		return m
	}
	t.Run("hooks and reads", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		if err := corpus.WriteTree(root, with("helmCharts:\n- {name: web, releaseName: shop, valuesInline: {level: debug}}\n")); err != nil {
			t.Fatal(err)
		}
		var r Renderer
		reads := &Reads{}
		set, err := r.Kustomize(t.Context(), KustomizeOptions{Root: root, Path: "o", App: "web", Reads: reads})
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Objects) != 1 || set.Objects[0].GetName() != "shop" || len(set.Hooks) != 1 || set.Hooks[0].GetName() != "migrate" {
			t.Fatalf("objects %v, hooks %v: want ConfigMap shop and the hook Job migrate", names(set.Objects), names(set.Hooks))
		}
		if got, _, _ := unstructured.NestedString(set.Objects[0].Object, "data", "level"); got != "debug" {
			t.Errorf("level %q, want debug (valuesInline)", got)
		}
		for _, p := range []string{"f:o/kustomization.yaml", "f:o/charts/web/values.yaml", "f:o/charts/web/templates/cm.yaml", "f:o/charts/web/Chart.yaml"} {
			if !slices.Contains(reads.Paths(), p) {
				t.Errorf("reads %v lack %s", reads.Paths(), p)
			}
		}
	})
	repoURL := kustHelmRepo(t, nil).URL
	tests := []struct{ name, kustomization, want string }{
		{"no release name", "helmCharts:\n- {name: web}\n", "kustomize: o: o/kustomization.yaml: helmCharts[0] (web): releaseName is required"},
		{"name template", "helmCharts:\n- {name: web, releaseName: a, nameTemplate: x}\n", "helmCharts[0] (web): nameTemplate is not supported"},
		{"no chart", "helmCharts:\n- {name: api, releaseName: a}\n", "helmCharts[0] (api): no repo specified for pull, no chart found at o/charts/api"},
		{"chart not in its repository", "helmCharts:\n- {name: api, releaseName: a, repo: " + repoURL + ", version: 1.2.3}\n", "helmCharts[0] (api): helm: chart " + repoURL + " api@1.2.3: "},
		{"remote values", "helmCharts:\n- {name: web, releaseName: a, valuesFile: https://example.com/v.yaml}\n", "valuesFile https://example.com/v.yaml: only files of the repository are allowed"},
		{"values merge", "helmCharts:\n- {name: web, releaseName: a, valuesInline: {a: 1}, valuesMerge: mix}\n", "valuesMerge must be one of [merge override replace]"},
		{"chart home climbs out", "helmGlobals: {chartHome: ../../..}\nhelmCharts:\n- {name: web, releaseName: a}\n", "helmCharts[0] (web): chartHome ../../..: path escapes the repository root"},
		{"inline values that do not merge", "helmCharts:\n- {name: web, releaseName: a, valuesInline: {level: {a: b}}}\n", "helmCharts[0] (web): could not merge values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := corpus.WriteTree(root, with(tt.kustomization)); err != nil {
				t.Fatal(err)
			}
			var r Renderer
			_, err := r.Kustomize(t.Context(), KustomizeOptions{Root: root, Path: "o", App: "web"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func names(objs []*object.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// kustHelmRepo serves charts, packaged, from an index.yaml like a chart
// repository (no credentials, as kustomize's helm pull uses none).
func kustHelmRepo(t *testing.T, charts []corpus.Chart) *httptest.Server {
	t.Helper()
	idx := repo.NewIndexFile()
	files := map[string][]byte{}
	for _, c := range charts {
		src := filepath.Join(t.TempDir(), c.Name)
		if err := corpus.WriteTree(src, c.Files); err != nil {
			t.Fatal(err)
		}
		ch, err := loader.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		tgz, err := chartutil.Save(ch, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(tgz)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if err := idx.MustAdd(ch.Metadata, filepath.Base(tgz), "", hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
		files["/"+filepath.Base(tgz)] = data
	}
	index, err := sigsyaml.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	files["/index.yaml"] = index
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestKustomizeHelmChartsRemoteAsCLI: charts that are not in the
// repository come from their repo, as `kustomize build --enable-helm`
// pulls them with `helm pull`: every tenth chart of the Helm corpus that
// helm loads, served by a chart repository, with the corpus' options.
// deliver renders first, then the CLI, which pulls into the folder.
func TestKustomizeHelmChartsRemoteAsCLI(t *testing.T) {
	kustomize, helm := testbin(t, "kustomize"), testbin(t, "helm")
	var charts []corpus.Chart
	for i, c := range corpus.Charts() {
		if i%10 != 1 || c.Refused {
			continue
		}
		if _, err := loader.LoadFiles(bufferedFiles(c.Files)); err != nil {
			continue // helm cannot package it either
		}
		charts = append(charts, c)
	}
	srv := kustHelmRepo(t, charts)
	root := t.TempDir()
	r := rand.New(rand.NewPCG(5, 13))
	var rd Renderer
	var tally corpusTally
	tally.check(t, len(charts))
	for _, c := range charts {
		dir := filepath.Join(root, c.Name)
		writeKustHelmCase(t, r, dir, c)
		// The chart is not in the folder: only in the repository.
		kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "charts")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "vendor")); err != nil {
			t.Fatal(err)
		}
		version := chartVersion(t, c)
		k := strings.Replace(string(kust), "  releaseName: rel\n", "  releaseName: rel\n  repo: "+srv.URL+"\n  version: "+version+"\n", 1)
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Run(c.Name, func(t *testing.T) {
			got, err := deliverKustomize(t, &rd, root, corpus.Kustomization{Name: c.Name, Path: "."})
			out, kerr := cliOutput(t, dir, kustomize, "build", "--enable-helm", "--helm-command", helm, ".")
			tally.compare(t, out, kerr, got, err)
		})
	}
}

// bufferedFiles are a chart's files as helm's loader takes them.
func bufferedFiles(files map[string]string) []*loader.BufferedFile {
	var out []*loader.BufferedFile
	for name, data := range files {
		out = append(out, &loader.BufferedFile{Name: name, Data: []byte(data)})
	}
	return out
}

// chartVersion is the version in a corpus chart's Chart.yaml.
func chartVersion(t *testing.T, c corpus.Chart) string {
	t.Helper()
	var meta struct{ Version string }
	if err := sigsyaml.Unmarshal([]byte(c.Files["Chart.yaml"]), &meta); err != nil {
		t.Fatal(err)
	}
	return meta.Version
}

// TestKustomizeHelmChartsSkipTestsAsCLI: skipTests leaves out every hook
// helm counts as a test (test, Helm 2's test-success, in any case and
// among other events), and keeps the others, as `kustomize build
// --enable-helm` with the helm binary does.
func TestKustomizeHelmChartsSkipTestsAsCLI(t *testing.T) {
	kustomize, helm := testbin(t, "kustomize"), testbin(t, "helm")
	root := t.TempDir()
	files := map[string]string{
		"k/kustomization.yaml":   "helmCharts:\n- {name: c, releaseName: rel, skipTests: true}\n",
		"k/charts/c/Chart.yaml":  "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"k/charts/c/values.yaml": "{}\n",
	}
	for i, events := range []string{"test", "test-success", " Test ", "pre-install,test", "post-install", "pre-upgrade, post-upgrade"} {
		files[fmt.Sprintf("k/charts/c/templates/h%d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h%d\n  annotations: {helm.sh/hook: %q}\n", i, events)
	}
	if err := corpus.WriteTree(root, files); err != nil {
		t.Fatal(err)
	}
	out, err := cliOutput(t, filepath.Join(root, "k"), kustomize, "build", "--enable-helm", "--helm-command", helm, ".")
	if err != nil {
		t.Fatal(err)
	}
	want, err := kubectlDecode(string(out))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	var r Renderer
	got, err := deliverKustomize(t, &r, root, corpus.Kustomization{Name: ".", Path: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want kustomize +got deliver):\n%s", diff)
	}
	if len(got) != 2 {
		t.Errorf("%d objects, want the two hooks that are not tests", len(got))
	}
}
