package render

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/corpus"
	"github.com/deliverhq/deliver/pkg/object"
)

// postRendererCases are post-renderers written as the kustomization
// fields a user writes (patches, images, commonLabels), one kustomization
// per post-renderer, run in order.
var postRendererCases = []struct {
	name string
	kust []string
}{
	{"smp with target", []string{`
patches:
- target: {kind: ConfigMap}
  patch: |
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: any
      annotations:
        patched: smp
    data:
      added: "yes"
`}},
	{"smp naming its object", []string{`
patches:
- patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: rel-app
      namespace: ns
    spec:
      replicas: 7
      template:
        spec:
          containers:
          - name: web
            resources: {limits: {memory: 64Mi}}
`}},
	{"json6902 with kind and name selectors", []string{`
patches:
- target: {group: apps, version: v1, kind: Deployment, name: "rel-.*"}
  patch: |
    - op: replace
      path: /spec/replicas
      value: 5
    - op: add
      path: /spec/template/metadata/annotations
      value: {rolled: "1"}
- target: {kind: ConfigMap, name: "d[0-9]"}
  patch: |
    [{"op": "add", "path": "/metadata/labels", "value": {"json": "6902"}}]
`}},
	{"images", []string{`
images:
- name: nginx
  newName: registry.example/nginx
  newTag: "1.29"
- name: busybox
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
`}},
	{"commonLabels", []string{`
commonLabels:
  team: payments
  app.kubernetes.io/part-of: shop
`}},
	{"labelSelector and annotationSelector after commonLabels, in sequence", []string{`
commonLabels: {tier: web}
`, `
patches:
- target: {kind: ConfigMap, labelSelector: "tier=web,!never"}
  patch: |
    - op: add
      path: /metadata/annotations
      value: {selected: label}
- target: {annotationSelector: "selected=label"}
  patch: |
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: any
      labels: {second: pass}
`, `
images:
- name: nginx
  tagSuffix: -alpine
`}},
	{"delete and CRDs", []string{`
patches:
- target: {kind: CustomResourceDefinition}
  patch: |
    - op: add
      path: /metadata/annotations
      value: {crd: patched}
- target: {kind: ConfigMap, name: "each-.*"}
  patch: |
    $patch: delete
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: any
`}},
}

// parsePostRenderers reads the kustomization fields of each post-renderer.
func parsePostRenderers(t testing.TB, kusts []string) []PostRenderer {
	t.Helper()
	var out []PostRenderer
	for _, k := range kusts {
		var kust types.Kustomization
		if err := yaml.UnmarshalStrict([]byte(k), &kust); err != nil {
			t.Fatal(err)
		}
		out = append(out, PostRenderer{Patches: kust.Patches, Images: kust.Images, CommonLabels: kust.CommonLabels})
	}
	return out
}

// postRendererScript writes, for kustomizations kusts, a post-renderer
// for `helm template --post-renderer`: it saves Helm's output as the
// resource of the first kustomization and pipes each build into the next,
// as `kustomize build | kustomize build`, with the real kustomize CLI.
func postRendererScript(t *testing.T, kustomize string, kusts []string) string {
	t.Helper()
	dir := t.TempDir()
	var dirs []string
	for i, k := range kusts {
		d := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [in.yaml]\n" + k
		if err := os.WriteFile(filepath.Join(d, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "#!/bin/sh\nset -e\ncat > %q\n", filepath.Join(dirs[0], "in.yaml"))
	for i := 1; i < len(dirs); i++ {
		fmt.Fprintf(&s, "%q build %q > %q\n", kustomize, dirs[i-1], filepath.Join(dirs[i], "in.yaml"))
	}
	fmt.Fprintf(&s, "exec %q build %q\n", kustomize, dirs[len(dirs)-1])
	script := filepath.Join(dir, "post-render.sh")
	if err := os.WriteFile(script, []byte(s.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// postRenderCharts are the charts of the differential test: the corpus's
// shapes (hooks, CRDs, subcharts, library charts, toYaml, Files...), a
// Deployment with a Service and a hook Job, a chart of hooks only, and a
// random chart.
func postRenderCharts() []corpus.Chart {
	charts := []corpus.Chart{{Name: "app", Files: map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"values.yaml": "image: nginx:1.27\n",
		"templates/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-app\n  namespace: {{ .Release.Namespace }}\n  labels: {app: web}\nspec:\n  replicas: 1\n" +
			"  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: {{ .Values.image }}\n      - name: side\n        image: busybox\n" +
			"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-app\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
		"templates/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-app\n  labels: {app: web}\ndata:\n  k: v\n",
		"templates/job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: nginx:1.27\n",
	}}, {Name: "onlyhooks", Files: map[string]string{
		// Nothing but a hook: the post-renderer gets an empty manifest.
		"Chart.yaml":        "apiVersion: v2\nname: onlyhooks\nversion: 0.1.0\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations: {helm.sh/hook: pre-install}\n",
	}}}
	for _, c := range corpus.Charts() {
		switch c.Name {
		case "library", "subcharts", "toyaml", "crds", "hooks", "crlf", "random0":
			charts = append(charts, c)
		}
	}
	return charts
}

// TestPostRenderOracle is the differential test of post-renderers: for
// every chart and every table of post-renderers, `helm template
// --post-renderer` running `kustomize build` (chained for several
// post-renderers) gives the same objects, parsed and sorted, as deliver's
// render. The hooks are in both, not post-rendered (Helm 3).
func TestPostRenderOracle(t *testing.T) {
	helm := testbin(t, "helm")
	kustomize := testbin(t, "kustomize")
	root := t.TempDir()
	charts := postRenderCharts()
	for _, c := range charts {
		writeChart(t, root, c)
	}
	for _, tc := range postRendererCases {
		t.Run(tc.name, func(t *testing.T) {
			script := postRendererScript(t, kustomize, tc.kust)
			prs := parsePostRenderers(t, tc.kust)
			for _, c := range charts {
				t.Run(c.Name, func(t *testing.T) {
					comparePostRender(t, helm, root, c.Name, script, prs)
				})
			}
		})
	}
}

// comparePostRender compares helm's post-rendered output of a chart with
// deliver's, or checks that both refuse it.
func comparePostRender(t *testing.T, helm, root, chart, script string, prs []PostRenderer) {
	t.Helper()
	want, herr := helmOutput(root, helm, "template", "rel", "charts/"+chart, "--namespace", "ns", "--include-crds", "--post-renderer", script)
	var r Renderer
	opts := HelmOptions{Chart: "charts/" + chart, ReleaseName: "rel", IncludeCRDs: true, PostRenderers: prs}
	set, err := r.Render(context.Background(), Options{Root: root, App: "corpus", Namespace: "ns", Sources: []Source{{Helm: &opts}}})
	if herr != nil || err != nil {
		if (herr == nil) != (err == nil) {
			t.Fatalf("helm template: %v\ndeliver: %v", herr, err)
		}
		return
	}
	sameObjects(t, want, marshalAll(t, set))
}

// helmOutput runs the helm CLI in dir like runCLI, returning its error
// instead of failing.
func helmOutput(dir, bin string, args ...string) ([]byte, error) {
	home, err := os.MkdirTemp("", "helm-home")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG="+filepath.Join(home, "none"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, nil
}

// TestPostRenderOracleRandom compares random post-renderers on the random
// charts of the corpus: annotations, labels and data added by strategic
// merge and JSON 6902 patches selected by kind, name pattern and label,
// images and common labels, one to three post-renderers in sequence.
func TestPostRenderOracleRandom(t *testing.T) {
	helm := testbin(t, "helm")
	kustomize := testbin(t, "kustomize")
	root := t.TempDir()
	var charts []corpus.Chart
	for _, c := range corpus.Charts() {
		if strings.HasPrefix(c.Name, "random") && len(charts) < 4 {
			charts = append(charts, c)
			writeChart(t, root, c)
		}
	}
	r := rand.New(rand.NewPCG(19, 3))
	word := func() string { return []string{"a", "b", "yes", "1", "x-y", "007"}[r.IntN(6)] }
	onePatch := func() string {
		target := []string{"{kind: ConfigMap}", "{kind: Secret}", "{name: \"d[0-2]\"}", "{labelSelector: \"l" + word() + "\"}", "{version: v1}"}[r.IntN(5)]
		switch r.IntN(3) {
		case 0:
			return fmt.Sprintf("- target: %s\n  patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: any\n      annotations: {a%s: %q}\n", target, word(), word())
		case 1:
			return fmt.Sprintf("- target: %s\n  patch: |\n    - op: add\n      path: /metadata/labels\n      value: {l%s: %q}\n", target, word(), word())
		}
		return fmt.Sprintf("- target: %s\n  patch: |\n    [{\"op\": \"add\", \"path\": \"/metadata/annotations\", \"value\": {\"j\": %q}}]\n", target, word())
	}
	for i := range 6 {
		var kusts []string
		for range 1 + r.IntN(3) {
			var k strings.Builder
			if n := r.IntN(3); n > 0 {
				k.WriteString("patches:\n")
				for range n {
					k.WriteString(onePatch())
				}
			}
			if r.IntN(3) == 0 {
				fmt.Fprintf(&k, "commonLabels: {c%s: %q}\n", word(), word())
			}
			if r.IntN(4) == 0 {
				k.WriteString("images: [{name: busybox, newTag: \"1.36\"}]\n")
			}
			kusts = append(kusts, k.String())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Logf("post-renderers:\n%s", strings.Join(kusts, "---\n"))
			script := postRendererScript(t, kustomize, kusts)
			prs := parsePostRenderers(t, kusts)
			for _, c := range charts {
				comparePostRender(t, helm, root, c.Name, script, prs)
			}
		})
	}
}

// TestPostRenderOrigins checks that post-rendered objects keep the
// template and document they were rendered from, hooks are left as the
// chart rendered them, and a patch renaming an object keeps its origin.
func TestPostRenderOrigins(t *testing.T) {
	root := t.TempDir()
	writeChart(t, root, postRenderCharts()[0])
	prs := parsePostRenderers(t, []string{`
patches:
- target: {kind: Service}
  patch: |
    - op: replace
      path: /metadata/name
      value: renamed
images:
- name: nginx
  newTag: "9"
`})
	var r Renderer
	set, err := r.Render(context.Background(), Options{Root: root, App: "web", Namespace: "ns", Sources: []Source{{Helm: &HelmOptions{Chart: "charts/app", PostRenderers: prs}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range append(set.Objects, set.Hooks...) {
		got[o.ID().String()] = originString(o.Origin)
	}
	// Documents count in the order helm prints them (Service before
	// Deployment). kustomize records no earlier identity for a name a
	// JSON 6902 patch replaced: the renamed Service is known by its place
	// in the post-renderers' output.
	want := map[string]string{
		"Deployment/ns/web-app": "web: app/templates/deploy.yaml#1",
		"Service/renamed":       "web: postRenderers[0] output#1",
		"ConfigMap/web-app":     "web: app/templates/cm.yaml#0",
		"Job/migrate":           "web: app/templates/job.yaml#0",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("origins:\n got %v\nwant %v", got, want)
	}
	if len(set.Hooks) != 1 {
		t.Fatalf("hooks: %d, want 1", len(set.Hooks))
	}
	if img := set.Hooks[0].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "nginx:1.27" {
		t.Errorf("hook image = %v, want nginx:1.27 (hooks are not post-rendered, as in Helm 3)", img)
	}
	var dep *object.Object
	for _, o := range set.Objects {
		if o.GetKind() == "Deployment" {
			dep = o
		}
	}
	if img := dep.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "nginx:9" {
		t.Errorf("deployment image = %v, want nginx:9", img)
	}
}

// TestPostRenderErrors checks that a failing post-renderer is named with
// the app, its index and the index of the failing patch.
func TestPostRenderErrors(t *testing.T) {
	root := t.TempDir()
	writeChart(t, root, postRenderCharts()[0])
	ok := "- target: {kind: ConfigMap}\n  patch: |\n    - {op: add, path: /metadata/annotations, value: {a: b}}\n"
	tests := []struct {
		name string
		kust []string
		want []string
	}{
		{"json6902 op on a missing path", []string{"patches:\n" + ok + "- target: {kind: Service}\n  patch: |\n    - {op: replace, path: /spec/nothing/here, value: 1}\n"},
			[]string{"app web: postRenderers[0].kustomize.patches[1]: "}},
		{"bad yaml in the second post-renderer", []string{"commonLabels: {a: b}\n", "patches:\n" + ok + ok + "- target: {kind: Service}\n  patch: \"apiVersion: v1\\nkind: [\"\n"},
			[]string{"app web: postRenderers[1].kustomize.patches[2]: "}},
		{"smp naming no object", []string{"patches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: missing}\n    data: {a: b}\n"},
			[]string{"app web: postRenderers[0].kustomize.patches[0]: ", "missing"}},
		{"json6902 without a target", []string{"patches:\n- patch: |\n    - {op: add, path: /a, value: 1}\n"},
			[]string{"app web: postRenderers[0].kustomize.patches[0]: "}},
		{"a patch on a hook only: it is not post-rendered", []string{"patches:\n- patch: |\n    apiVersion: batch/v1\n    kind: Job\n    metadata: {name: migrate}\n    spec: {backoffLimit: 1}\n"},
			[]string{"app web: postRenderers[0].kustomize.patches[0]: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Renderer
			_, err := r.Render(context.Background(), Options{Root: root, App: "web", Namespace: "ns", Sources: []Source{{Helm: &HelmOptions{Chart: "charts/app", PostRenderers: parsePostRenderers(t, tt.kust)}}}})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestPostRenderConfined checks that a patch given by path is refused and
// that post-renderers need a Renderer.
func TestPostRenderConfined(t *testing.T) {
	root := t.TempDir()
	writeChart(t, root, postRenderCharts()[0])
	if err := os.WriteFile(filepath.Join(root, "p.yaml"), []byte("- {op: add, path: /metadata/annotations, value: {a: b}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := HelmOptions{Root: root, App: "web", Chart: "charts/app", PostRenderers: []PostRenderer{{Patches: []types.Patch{{Path: "../p.yaml", Target: &types.Selector{}}}}}}
	var r Renderer
	_, err := r.Render(context.Background(), Options{Sources: []Source{{Helm: &opts}}})
	if err == nil || !strings.Contains(err.Error(), "postRenderers[0].kustomize.patches[0]: path is not allowed") {
		t.Errorf("error = %v, want path refused", err)
	}
	if _, err := Helm(context.Background(), opts); err == nil {
		t.Error("Helm ran post-renderers without a Renderer")
	}
}

// TestPostRenderTargetMatchingNothing: a patch whose target selects no
// object changes nothing and is no error, as in kustomize.
func TestPostRenderTargetMatchingNothing(t *testing.T) {
	root := t.TempDir()
	writeChart(t, root, postRenderCharts()[0])
	prs := parsePostRenderers(t, []string{"patches:\n- target: {kind: Ingress}\n  patch: |\n    - {op: replace, path: /spec/nothing, value: 1}\n"})
	var r Renderer
	set, err := r.Render(context.Background(), Options{Root: root, App: "web", Namespace: "ns", Sources: []Source{{Helm: &HelmOptions{Chart: "charts/app", PostRenderers: prs}}}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Helm(context.Background(), HelmOptions{Root: root, App: "web", Namespace: "ns", Chart: "charts/app"})
	if err != nil {
		t.Fatal(err)
	}
	sameObjectsSets(t, plain, set)
}

// sameObjectsSets checks that two sets hold the same objects and hooks.
func sameObjectsSets(t *testing.T, want, got *object.Set) {
	t.Helper()
	w, g := marshalAll(t, want), marshalAll(t, got)
	sortBytes(w)
	sortBytes(g)
	if fmt.Sprintf("%s", w) != fmt.Sprintf("%s", g) {
		t.Errorf("objects differ:\nwant %s\n got %s", w, g)
	}
}
