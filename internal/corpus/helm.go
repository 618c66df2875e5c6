// Package corpus generates Helm charts, kustomizations and manifests in the
// shapes public repositories use, for the differential tests that compare
// deliver with helm, kustomize and kubectl (pkg/render) and with the API
// server's decoding (pkg/apply). Everything is generated from fixed seeds:
// a failure names a case that the next run generates again.
package corpus

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Chart is one generated chart.
type Chart struct {
	// Name is the chart's name and folder.
	Name string
	// Files are the chart's files, by slash-separated path relative to
	// the chart.
	Files map[string]string
	// Refused says helm refuses the chart (a values schema it breaks, a
	// kubeVersion, fail or required, ...): a test checks that it does,
	// and that deliver refuses it too.
	Refused bool
}

// BlockIndicators are the block scalar headers a document can end with.
var BlockIndicators = []string{"|", "|-", "|+", ">", ">-", ">+", "|2", "|-2", "|+2", ">2-"}

// BlockBodies are block scalar contents, written at two spaces more than
// the key; "\n" separated lines, some with trailing blanks.
var BlockBodies = []string{
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

// Indent prefixes every non-empty line of s with n spaces.
func Indent(n int, s string) string {
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
func blockScalarCharts() []Chart {
	var charts []Chart
	for ci, ind := range BlockIndicators {
		files := map[string]string{
			"Chart.yaml": fmt.Sprintf("apiVersion: v2\nname: block%d\nversion: 0.1.0\n", ci),
		}
		for bi, body := range BlockBodies {
			if strings.HasPrefix(body, " ") && !strings.ContainsAny(ind, "0123456789") {
				continue // a more indented first line needs an explicit indentation
			}
			scalar := Indent(4, body)
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
				"apiVersion: v1\nkind: Pod\nmetadata:\n  name: list-%d\nspec:\n  containers:\n  - name: c\n    image: busybox\n    args:\n    - %s\n%s", bi, ind, Indent(6, body))
		}
		charts = append(charts, Chart{Name: fmt.Sprintf("block%d", ci), Files: files})
	}
	return charts
}

// scalarEndCharts ends documents in the other scalar styles: quoted, flow,
// plain multi-line, and numbers or booleans Helm leaves as YAML 1.1 reads
// them.
func scalarEndCharts() []Chart {
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
	return []Chart{{Name: "scalars", Files: files}}
}

// shapeCharts are the template features public charts use around the
// documents' text: helpers, library charts, tpl, lookup, subcharts with
// globals, toYaml and Files, whitespace chomping, empty and comment-only
// output, CRDs, test hooks, CRLF line ends.
func shapeCharts() []Chart {
	return []Chart{
		{Name: "library", Files: map[string]string{
			"Chart.yaml":                        "apiVersion: v2\nname: library\nversion: 0.1.0\ndependencies:\n- name: common\n  version: 1.0.0\n  repository: file://charts/common\n",
			"values.yaml":                       "config: |\n  server {\n    listen 80;\n  }\n",
			"templates/cm.yaml":                 `{{ include "common.configmap" (dict "name" "lib" "data" .Values.config) }}`,
			"templates/cm2.yaml":                "{{- include \"common.configmap\" (dict \"name\" \"lib2\" \"data\" \"x\\ny\\n\\n\") -}}\n",
			"charts/common/Chart.yaml":          "apiVersion: v2\nname: common\ntype: library\nversion: 1.0.0\n",
			"charts/common/templates/_cm.tpl":   "{{- define \"common.configmap\" -}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .name }}\ndata:\n  conf: |\n{{ .data | indent 4 }}\n{{- end -}}\n",
			"charts/common/templates/_more.tpl": "{{- define \"common.unused\" -}}\nkind: Nothing\n{{- end -}}\n",
		}},
		{Name: "tpl", Files: map[string]string{
			"Chart.yaml":        "apiVersion: v2\nname: tpl\nversion: 0.1.0\n",
			"values.yaml":       "name: from-values\nextra: |\n  name: {{ .Values.name }}\n  release: {{ .Release.Name }}\nannotations:\n  note: \"{{ .Chart.Name }}-{{ .Release.Namespace }}\"\n",
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tpl\n  annotations:\n{{ tpl (toYaml .Values.annotations) . | indent 4 }}\ndata:\n  extra: |\n{{ tpl .Values.extra . | indent 4 }}\n",
		}},
		{Name: "lookup", Files: map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: lookup\nversion: 0.1.0\n",
			"templates/secret.yaml": "{{- $old := lookup \"v1\" \"Secret\" .Release.Namespace \"kept\" -}}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: kept\nstringData:\n" +
				"{{- if $old }}\n  value: {{ index $old.data \"value\" | b64dec | quote }}\n{{- else }}\n  value: |\n    generated\n{{- end }}\n",
			"templates/ns.yaml": "{{- $ns := lookup \"v1\" \"Namespace\" \"\" \"kube-system\" }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lookup-ns\ndata:\n  found: {{ empty $ns | ternary \"no\" \"yes\" | quote }}\n",
		}},
		{Name: "subcharts", Files: map[string]string{
			"Chart.yaml":                     "apiVersion: v2\nname: subcharts\nversion: 0.1.0\ndependencies:\n- name: child\n  version: 0.2.0\n  condition: child.enabled\n- name: off\n  version: 0.1.0\n  condition: off.enabled\n",
			"values.yaml":                    "global:\n  domain: example.org\n  script: |\n    echo global\nchild:\n  enabled: true\n  motd: |+\n    welcome\n\noff:\n  enabled: false\n",
			"templates/parent.yaml":          "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: parent\ndata:\n  domain: {{ .Values.global.domain }}\n  script: |\n{{ .Values.global.script | indent 4 }}",
			"charts/child/Chart.yaml":        "apiVersion: v2\nname: child\nversion: 0.2.0\n",
			"charts/child/values.yaml":       "motd: default\n",
			"charts/child/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child-{{ .Release.Name }}\ndata:\n  motd: {{ toYaml .Values.motd | indent 4 | trim }}\n  global: |\n{{ .Values.global.script | indent 4 }}\n",
			"charts/off/Chart.yaml":          "apiVersion: v2\nname: off\nversion: 0.1.0\n",
			"charts/off/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: must-not-render\n",
		}},
		{Name: "toyaml", Files: map[string]string{
			"Chart.yaml":          "apiVersion: v2\nname: toyaml\nversion: 0.1.0\n",
			"values.yaml":         "config:\n  alertmanager.yml: |\n    global: {}\n    route:\n      receiver: x\n  rules: |\n    {}\n  empty: \"\"\n  keep: |+\n    kept\n\n  strip: |-\n    stripped\nlabels:\n  app: web\n  tier: \"1\"\n",
			"templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: toyaml\n  labels:\n    {{- toYaml .Values.labels | nindent 4 }}\ndata:\n  {{- toYaml .Values.config | nindent 2 }}\n",
			"templates/each.yaml": "{{- range $k, $v := .Values.config }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: each-{{ $k | replace \".\" \"-\" }}\ndata:\n  v: {{ toYaml $v | nindent 4 }}\n{{- end }}\n",
		}},
		{Name: "files", Files: map[string]string{
			"Chart.yaml":            "apiVersion: v2\nname: files\nversion: 0.1.0\n",
			"files/nginx.conf":      "server {\n  listen 80;\n}\n",
			"files/no-newline.sh":   "#!/bin/sh\necho done",
			"files/json.json":       "{\"a\": [1, 2]}\n",
			"templates/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  nginx.conf: |\n{{ .Files.Get \"files/nginx.conf\" | indent 4 }}\n  run.sh: |-\n{{ .Files.Get \"files/no-newline.sh\" | indent 4 }}",
			"templates/glob.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: glob\ndata:\n{{ (.Files.Glob \"files/*\").AsConfig | indent 2 }}\n",
			"templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: files\ndata:\n{{ (.Files.Glob \"files/*.sh\").AsSecrets | indent 2 }}\n",
		}},
		{Name: "chomp", Files: map[string]string{
			"Chart.yaml":             "apiVersion: v2\nname: chomp\nversion: 0.1.0\n",
			"values.yaml":            "items: [a, b, c]\non: true\n",
			"templates/range.yaml":   "{{- range .Values.items }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: r-{{ . }}\ndata:\n  v: |\n    {{ . }}\n  {{- if eq . \"b\" }}\n  extra: |\n    b only\n  {{- end }}\n{{ end }}\n\n\n",
			"templates/empty.yaml":   "{{- if not .Values.on }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n{{- end }}\n",
			"templates/comment.yaml": "# only a comment\n---\n# and another\n",
			"templates/spaces.yaml":  "\n\n   \napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: spaces\ndata:\n  k: |\n    v   \n   \n\t\n",
			"templates/NOTES.txt":    "not a manifest: |\n  x\n",
			"templates/_h.tpl":       "{{- define \"x\" }}y{{ end }}",
		}},
		{Name: "crds", Files: map[string]string{
			"Chart.yaml":         "apiVersion: v2\nname: crds\nversion: 0.1.0\n",
			"crds/one.yaml":      "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ones.example.org\nspec:\n  group: example.org\n  names: {kind: One, plural: ones}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: |\n          One is\n          a test.\n",
			"crds/two.yaml":      "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: twos.example.org\nspec:\n  group: example.org\n  names: {kind: Two, plural: twos}\n  scope: Cluster\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: >-\n          Two\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: threes.example.org\nspec:\n  group: example.org\n  names: {kind: Three, plural: threes}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        description: |\n          no final newline",
			"templates/one.yaml": "apiVersion: example.org/v1\nkind: One\nmetadata:\n  name: a-one\nspec:\n  text: |\n    hello\n",
		}},
		{Name: "hooks", Files: map[string]string{
			"Chart.yaml":          "apiVersion: v2\nname: hooks\nversion: 0.1.0\n",
			"templates/job.yaml":  "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-upgrade,pre-install\n    helm.sh/hook-weight: \"-5\"\n    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: busybox\n        command: [sh, -c]\n        args:\n        - |\n          echo migrate\n          exit 0\n",
			"templates/test.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers:\n  - name: t\n    image: busybox\n    args: [\"true\"]\n",
			"templates/post.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: post\n  annotations:\n    helm.sh/hook: post-install\ndata:\n  done: >\n    folded\n    text\n\n",
			"templates/argo.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argo-presync\n  annotations:\n    argocd.argoproj.io/hook: PreSync\ndata:\n  k: |-\n    v\n",
		}},
		{Name: "crlf", Files: map[string]string{
			"Chart.yaml":        "apiVersion: v2\nname: crlf\nversion: 0.1.0\n",
			"templates/cm.yaml": "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: crlf\r\ndata:\r\n  k: |\r\n    line\r\n    two\r\n",
		}},
	}
}

// randomCharts writes n charts of random documents: ConfigMaps, Secrets,
// Deployments and hooks whose values are multi-line strings, numbers and
// YAML 1.1 words, written by toYaml or by hand in block, quoted and plain
// styles, with random trailing blank lines and chomping.
func randomCharts(seed uint64, n int) []Chart {
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
	var charts []Chart
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
					fmt.Fprintf(&tmpl, "  e%d: %s\n{{ .Values.%s | indent 4 }}", e, BlockIndicators[r.IntN(len(BlockIndicators)-3)], key)
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
		charts = append(charts, Chart{Name: fmt.Sprintf("random%d", c), Files: files})
	}
	return charts
}

// Charts is the whole Helm corpus: the block scalar, scalar end, shape,
// dependency and refused charts, and 200 random ones.
func Charts() []Chart {
	return checkUnique(slices.Concat(blockScalarCharts(), scalarEndCharts(), shapeCharts(), dependencyCharts(), refusedCharts(), randomCharts(17, 200)))
}

// Document is one plain YAML file of the corpus.
type Document struct {
	// Name says where it comes from: chart and template.
	Name string
	// Data is the file as written.
	Data string
}

// PlainDocuments are the corpus's templates that hold no template action:
// plain YAML, many without a final line break.
func PlainDocuments() []Document {
	var out []Document
	for _, c := range Charts() {
		for name, content := range c.Files {
			if strings.HasPrefix(name, "templates/") && strings.HasSuffix(name, ".yaml") && !strings.Contains(content, "{{") {
				out = append(out, Document{Name: c.Name + "/" + name, Data: content})
			}
		}
	}
	slices.SortFunc(out, func(a, b Document) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// WriteTree writes files (slash-separated paths) under dir.
func WriteTree(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
