package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
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

// corpusChart is one generated chart: its files, relative to the chart.
type corpusChart struct {
	name  string
	files map[string]string
}

// blockIndicators are the block scalar headers a document can end with.
var blockIndicators = []string{"|", "|-", "|+", ">", ">-", ">+", "|2", "|-2", "|+2", ">2-"}

// blockBodies are block scalar contents, written at two spaces more than
// the key; "\n" separated lines, some with trailing blanks.
var blockBodies = []string{
	"{}",
	"line one\nline two",
	"a: 1\nb:\n  - c",
	"first\n\nafter a blank",
	"trailing spaces   ",
	"ends in blank lines\n\n\n",
	"  more indented\nback",
	"#!/bin/sh\nset -e\nexec \"$@\"",
	"[global]\nkey = value\n",
}

// indent prefixes every non-empty line of s with n spaces.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// blockScalarCharts writes, for every block indicator, a chart whose
// documents end in such a scalar in each position a chart can put one:
// at the end of a template, before a "---" inside a template, in a hook,
// in a Secret's stringData, inside a list, and followed by trailing blank
// lines or a comment.
func blockScalarCharts() []corpusChart {
	var charts []corpusChart
	for ci, ind := range blockIndicators {
		files := map[string]string{
			"Chart.yaml": fmt.Sprintf("apiVersion: v2\nname: block%d\nversion: 0.1.0\n", ci),
		}
		for bi, body := range blockBodies {
			if strings.HasPrefix(body, " ") && !strings.ContainsAny(ind, "0123456789") {
				continue // a more indented first line needs an explicit indentation
			}
			scalar := indent(4, body)
			// At the end of the template, so at the end of the stream of
			// its documents.
			files[fmt.Sprintf("templates/end-%d.yaml", bi)] = fmt.Sprintf(
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: end-%d\ndata:\n  k: %s\n%s", bi, ind, scalar)
			// Before a separator, then another document.
			files[fmt.Sprintf("templates/mid-%d.yaml", bi)] = fmt.Sprintf(
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mid-%d-a\ndata:\n  k: %s\n%s\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mid-%d-b\ndata:\n  k: %s\n%s\n\n", bi, ind, scalar, bi, ind, scalar)
			// In a hook, at the end.
			files[fmt.Sprintf("templates/hook-%d.yaml", bi)] = fmt.Sprintf(
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook-%d\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"%d\"\ndata:\n  k: %s\n%s\n", bi, bi-3, ind, scalar)
			// A Secret's stringData, followed by blank lines and a comment.
			files[fmt.Sprintf("templates/secret-%d.yaml", bi)] = fmt.Sprintf(
				"apiVersion: v1\nkind: Secret\nmetadata:\n  name: secret-%d\ntype: Opaque\nstringData:\n  k: %s\n%s\n\n# a comment after the scalar\n\n", bi, ind, scalar)
			// Inside a list item, the last thing of the document.
			files[fmt.Sprintf("templates/list-%d.yaml", bi)] = fmt.Sprintf(
				"apiVersion: v1\nkind: Pod\nmetadata:\n  name: list-%d\nspec:\n  containers:\n  - name: c\n    image: busybox\n    args:\n    - %s\n%s", bi, ind, indent(6, body))
		}
		charts = append(charts, corpusChart{name: fmt.Sprintf("block%d", ci), files: files})
	}
	return charts
}

// scalarEndCharts ends documents in the other scalar styles: quoted, flow,
// plain multi-line, and numbers or booleans Helm leaves as YAML 1.1 reads
// them.
func scalarEndCharts() []corpusChart {
	ends := []string{
		`"double quoted\n"`,
		`'single quoted'`,
		`"multi
    line double"`,
		`'multi

    line single'`,
		`{a: 1, b: [x, y]}`,
		`[1, "2", three]`,
		"plain multi\n    line",
		"0x1F", "012", "1e3", "yes", "off", "~", "2024-01-02", "+12", "0o17", "1_000",
	}
	files := map[string]string{"Chart.yaml": "apiVersion: v2\nname: scalars\nversion: 0.1.0\n"}
	for i, e := range ends {
		files[fmt.Sprintf("templates/s-%02d.yaml", i)] = fmt.Sprintf(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s-%02d\ndata:\n  k: %s", i, e)
	}
	return []corpusChart{{name: "scalars", files: files}}
}

// shapeCharts are the template features public charts use around the
// documents' text: helpers, library charts, tpl, lookup, subcharts with
// globals, toYaml and Files, whitespace chomping, empty and comment-only
// output, CRDs, test hooks, CRLF line ends.
func shapeCharts() []corpusChart {
	return []corpusChart{
		{name: "library", files: map[string]string{
			"Chart.yaml":                        "apiVersion: v2\nname: library\nversion: 0.1.0\ndependencies:\n- name: common\n  version: 1.0.0\n  repository: file://charts/common\n",
			"values.yaml":                       "config: |\n  server {\n    listen 80;\n  }\n",
			"templates/cm.yaml":                 `{{ include "common.configmap" (dict "name" "lib" "data" .Values.config) }}`,
			"templates/cm2.yaml":                "{{- include \"common.configmap\" (dict \"name\" \"lib2\" \"data\" \"x\\ny\\n\\n\") -}}\n",
			"charts/common/Chart.yaml":          "apiVersion: v2\nname: common\ntype: library\nversion: 1.0.0\n",
			"charts/common/templates/_cm.tpl":   "{{- define \"common.configmap\" -}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .name }}\ndata:\n  conf: |\n{{ .data | indent 4 }}\n{{- end -}}\n",
			"charts/common/templates/_more.tpl": "{{- define \"common.unused\" -}}\nkind: Nothing\n{{- end -}}\n",
		}},
		{name: "tpl", files: map[string]string{
			"Chart.yaml":        "apiVersion: v2\nname: tpl\nversion: 0.1.0\n",
			"values.yaml":       "name: from-values\nextra: |\n  name: {{ .Values.name }}\n  release: {{ .Release.Name }}\nannotations:\n  note: \"{{ .Chart.Name }}-{{ .Release.Namespace }}\"\n",
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tpl\n  annotations:\n{{ tpl (toYaml .Values.annotations) . | indent 4 }}\ndata:\n  extra: |\n{{ tpl .Values.extra . | indent 4 }}\n",
		}},
		{name: "lookup", files: map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: lookup\nversion: 0.1.0\n",
			"templates/secret.yaml": "{{- $old := lookup \"v1\" \"Secret\" .Release.Namespace \"kept\" -}}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: kept\nstringData:\n" +
				"{{- if $old }}\n  value: {{ index $old.data \"value\" | b64dec | quote }}\n{{- else }}\n  value: |\n    generated\n{{- end }}\n",
			"templates/ns.yaml": "{{- $ns := lookup \"v1\" \"Namespace\" \"\" \"kube-system\" }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lookup-ns\ndata:\n  found: {{ empty $ns | ternary \"no\" \"yes\" | quote }}\n",
		}},
		{name: "subcharts", files: map[string]string{
			"Chart.yaml":                     "apiVersion: v2\nname: subcharts\nversion: 0.1.0\ndependencies:\n- name: child\n  version: 0.2.0\n  condition: child.enabled\n- name: off\n  version: 0.1.0\n  condition: off.enabled\n",
			"values.yaml":                    "global:\n  domain: example.org\n  script: |\n    echo global\nchild:\n  enabled: true\n  motd: |+\n    welcome\n\noff:\n  enabled: false\n",
			"templates/parent.yaml":          "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: parent\ndata:\n  domain: {{ .Values.global.domain }}\n  script: |\n{{ .Values.global.script | indent 4 }}",
			"charts/child/Chart.yaml":        "apiVersion: v2\nname: child\nversion: 0.2.0\n",
			"charts/child/values.yaml":       "motd: default\n",
			"charts/child/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child-{{ .Release.Name }}\ndata:\n  motd: {{ toYaml .Values.motd | indent 4 | trim }}\n  global: |\n{{ .Values.global.script | indent 4 }}\n",
			"charts/off/Chart.yaml":          "apiVersion: v2\nname: off\nversion: 0.1.0\n",
			"charts/off/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: must-not-render\n",
		}},
		{name: "toyaml", files: map[string]string{
			"Chart.yaml":          "apiVersion: v2\nname: toyaml\nversion: 0.1.0\n",
			"values.yaml":         "config:\n  alertmanager.yml: |\n    global: {}\n    route:\n      receiver: x\n  rules: |\n    {}\n  empty: \"\"\n  keep: |+\n    kept\n\n  strip: |-\n    stripped\nlabels:\n  app: web\n  tier: \"1\"\n",
			"templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: toyaml\n  labels:\n    {{- toYaml .Values.labels | nindent 4 }}\ndata:\n  {{- toYaml .Values.config | nindent 2 }}\n",
			"templates/each.yaml": "{{- range $k, $v := .Values.config }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: each-{{ $k | replace \".\" \"-\" }}\ndata:\n  v: {{ toYaml $v | nindent 4 }}\n{{- end }}\n",
		}},
		{name: "files", files: map[string]string{
			"Chart.yaml":            "apiVersion: v2\nname: files\nversion: 0.1.0\n",
			"files/nginx.conf":      "server {\n  listen 80;\n}\n",
			"files/no-newline.sh":   "#!/bin/sh\necho done",
			"files/json.json":       "{\"a\": [1, 2]}\n",
			"templates/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  nginx.conf: |\n{{ .Files.Get \"files/nginx.conf\" | indent 4 }}\n  run.sh: |-\n{{ .Files.Get \"files/no-newline.sh\" | indent 4 }}",
			"templates/glob.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: glob\ndata:\n{{ (.Files.Glob \"files/*\").AsConfig | indent 2 }}\n",
			"templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: files\ndata:\n{{ (.Files.Glob \"files/*.sh\").AsSecrets | indent 2 }}\n",
		}},
		{name: "chomp", files: map[string]string{
			"Chart.yaml":             "apiVersion: v2\nname: chomp\nversion: 0.1.0\n",
			"values.yaml":            "items: [a, b, c]\non: true\n",
			"templates/range.yaml":   "{{- range .Values.items }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: r-{{ . }}\ndata:\n  v: |\n    {{ . }}\n  {{- if eq . \"b\" }}\n  extra: |\n    b only\n  {{- end }}\n{{ end }}\n\n\n",
			"templates/empty.yaml":   "{{- if not .Values.on }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n{{- end }}\n",
			"templates/comment.yaml": "# only a comment\n---\n# and another\n",
			"templates/spaces.yaml":  "\n\n   \napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: spaces\ndata:\n  k: |\n    v   \n   \n\t\n",
			"templates/NOTES.txt":    "not a manifest: |\n  x\n",
			"templates/_h.tpl":       "{{- define \"x\" }}y{{ end }}",
		}},
		{name: "crds", files: map[string]string{
			"Chart.yaml":         "apiVersion: v2\nname: crds\nversion: 0.1.0\n",
			"crds/one.yaml":      "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ones.example.org\nspec:\n  group: example.org\n  names: {kind: One, plural: ones}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: |\n          One is\n          a test.\n",
			"crds/two.yaml":      "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: twos.example.org\nspec:\n  group: example.org\n  names: {kind: Two, plural: twos}\n  scope: Cluster\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: >-\n          Two\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: threes.example.org\nspec:\n  group: example.org\n  names: {kind: Three, plural: threes}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: |\n          no final newline",
			"templates/one.yaml": "apiVersion: example.org/v1\nkind: One\nmetadata:\n  name: a-one\nspec:\n  text: |\n    hello\n",
		}},
		{name: "hooks", files: map[string]string{
			"Chart.yaml":          "apiVersion: v2\nname: hooks\nversion: 0.1.0\n",
			"templates/job.yaml":  "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-upgrade,pre-install\n    helm.sh/hook-weight: \"-5\"\n    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: busybox\n        command: [sh, -c]\n        args:\n        - |\n          echo migrate\n          exit 0\n",
			"templates/test.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers:\n  - name: t\n    image: busybox\n    args: [\"true\"]\n",
			"templates/post.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: post\n  annotations:\n    helm.sh/hook: post-install\ndata:\n  done: >\n    folded\n    text\n\n",
			"templates/argo.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argo-presync\n  annotations:\n    argocd.argoproj.io/hook: PreSync\ndata:\n  k: |-\n    v\n",
		}},
		{name: "crlf", files: map[string]string{
			"Chart.yaml":        "apiVersion: v2\nname: crlf\nversion: 0.1.0\n",
			"templates/cm.yaml": "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: crlf\r\ndata:\r\n  k: |\r\n    line\r\n    two\r\n",
		}},
	}
}

// randomCharts writes n charts of random documents: ConfigMaps, Secrets,
// Deployments and hooks whose values are multi-line strings, numbers and
// YAML 1.1 words, written by toYaml or by hand in block, quoted and plain
// styles, with random trailing blank lines and chomping.
func randomCharts(seed uint64, n int) []corpusChart {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"a", "b: c", "- x", "#x", "yes", "no", "1.0", "0777", "null", "~", "true", "{}", "[]", "'q'", "\"d\"", "key: |", "x y", "", " lead", "trail "}
	value := func() string {
		k := 1 + r.IntN(4)
		parts := make([]string, k)
		for i := range parts {
			parts[i] = words[r.IntN(len(words))]
		}
		if strings.HasPrefix(parts[0], " ") {
			parts[0] = "x" + parts[0] // a block scalar's first line sets its indentation
		}
		s := strings.Join(parts, "\n")
		if r.IntN(2) == 0 {
			s += strings.Repeat("\n", r.IntN(3))
		}
		return s
	}
	var charts []corpusChart
	for c := range n {
		vals := map[string]any{}
		files := map[string]string{"Chart.yaml": fmt.Sprintf("apiVersion: v2\nname: random%d\nversion: 0.1.%d\n", c, c)}
		docs := 2 + r.IntN(6)
		for d := range docs {
			key := fmt.Sprintf("v%d", d)
			vals[key] = value()
			var tmpl strings.Builder
			kind := []string{"ConfigMap", "Secret", "hook"}[r.IntN(3)]
			switch kind {
			case "hook":
				fmt.Fprintf(&tmpl, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d%d\n  annotations:\n    helm.sh/hook: post-install\n    helm.sh/hook-weight: %q\ndata:\n", d, fmt.Sprint(r.IntN(5)-2))
			case "Secret":
				fmt.Fprintf(&tmpl, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: d%d\nstringData:\n", d)
			default:
				fmt.Fprintf(&tmpl, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d%d\ndata:\n", d)
			}
			entries := 1 + r.IntN(3)
			for e := range entries {
				switch r.IntN(4) {
				case 0:
					fmt.Fprintf(&tmpl, "  e%d: {{ toYaml .Values.%s | nindent 4 }}", e, key)
				case 1:
					fmt.Fprintf(&tmpl, "  e%d: %s\n{{ .Values.%s | indent 4 }}", e, blockIndicators[r.IntN(len(blockIndicators)-3)], key)
				case 2:
					fmt.Fprintf(&tmpl, "  e%d: {{ .Values.%s | quote }}", e, key)
				default:
					fmt.Fprintf(&tmpl, "  e%d: {{ .Values.%s | replace \"\\n\" \" \" | squote }}", e, key)
				}
				if e < entries-1 || r.IntN(2) == 0 {
					tmpl.WriteString("\n")
				}
			}
			tmpl.WriteString(strings.Repeat("\n", r.IntN(3)))
			files[fmt.Sprintf("templates/d%d.yaml", d)] = tmpl.String()
		}
		v, err := json.Marshal(vals)
		if err != nil {
			panic(err)
		}
		files["values.yaml"] = string(v)
		charts = append(charts, corpusChart{name: fmt.Sprintf("random%d", c), files: files})
	}
	return charts
}

// writeChart writes a generated chart under root/charts/name.
func writeChart(t *testing.T, root string, c corpusChart) {
	t.Helper()
	for name, content := range c.files {
		p := filepath.Join(root, "charts", c.name, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// helmInstallObjects returns the objects `helm install` would create for
// a chart: Helm's own install in client-only dry run (as `helm template`
// runs it), its release manifest and hook manifests read by the
// YAML-or-JSON decoder Helm's kube client and kubectl build objects with.
// Each object is its canonical JSON.
func helmInstallObjects(chartDir, release, namespace string) ([]string, error) {
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
func corpusRoot(t *testing.T) (string, []corpusChart) {
	t.Helper()
	charts := slices.Concat(blockScalarCharts(), scalarEndCharts(), shapeCharts(), randomCharts(17, 200))
	root := t.TempDir()
	for _, c := range charts {
		writeChart(t, root, c)
	}
	return root, charts
}

func corpusOptions(root string, c corpusChart) HelmOptions {
	return HelmOptions{Root: root, App: "corpus", Chart: "charts/" + c.name, ReleaseName: "rel", Namespace: "ns", IncludeCRDs: true}
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
		if compared.Load() < int64(len(charts))*8/10 {
			t.Errorf("only %d of %d charts rendered", compared.Load(), len(charts))
		}
	})
	for _, c := range charts {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want, herr := helmInstallObjects(filepath.Join(root, "charts", c.name), "rel", "ns")
			set, err := Helm(context.Background(), corpusOptions(root, c))
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
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(helm, "template", "rel", "charts/"+c.name, "--namespace", "ns", "--include-crds")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "HOME="+root, "HELM_CONFIG_HOME="+root, "HELM_CACHE_HOME="+root, "HELM_DATA_HOME="+root)
			want, herr := cmd.Output()
			got, err := helmTemplate(context.Background(), corpusOptions(root, c))
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
	writeChart(t, root, corpusChart{name: "c", files: map[string]string{
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
	for _, c := range charts {
		for name, content := range c.files {
			if strings.HasPrefix(name, "templates/") && strings.HasSuffix(name, ".yaml") && !strings.Contains(content, "{{") {
				inputs = append(inputs, input{c.name + "/" + name, content})
			}
		}
		ch, err := loader.Load(filepath.Join(root, "charts", c.name))
		if err != nil {
			t.Fatal(err)
		}
		inst := action.NewInstall(&action.Configuration{
			Releases: storage.Init(driver.NewMemory()), KubeClient: &kubefake.PrintingKubeClient{Out: io.Discard},
			Capabilities: chartutil.DefaultCapabilities, Log: func(string, ...any) {},
		})
		inst.DryRun, inst.ClientOnly, inst.Replace, inst.ReleaseName, inst.IncludeCRDs = true, true, true, "rel", true
		if rel, err := inst.RunWithContext(context.Background(), ch, map[string]any{}); err == nil {
			inputs = append(inputs, input{c.name + "/manifest", rel.Manifest})
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
