package corpus

import (
	"fmt"
	"maps"
)

// dependencyCharts are the ways public charts compose subcharts: aliases
// (one chart twice), import-values in both forms, tags and conditions
// (nested, missing, overridden by the parent), globals set by the parent
// and overridden by a subchart, a grandchild, a library chart used by a
// subchart, a subchart disabled while its values are given, and a
// Chart.yaml of apiVersion v1 with requirements.yaml.
func dependencyCharts() []Chart {
	child := func(name string) map[string]string {
		return map[string]string{
			"charts/" + name + "/Chart.yaml":  "apiVersion: v2\nname: " + name + "\nversion: 1.0.0\n",
			"charts/" + name + "/values.yaml": "color: blue\nport: 80\nexports:\n  data:\n    exported: from-" + name + "\nshared:\n  size: 1\n",
			"charts/" + name + "/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-{{ .Chart.Name }}\n  labels:\n    chart: {{ .Chart.Name }}-{{ .Chart.Version }}\n" +
				"data:\n  color: {{ .Values.color | quote }}\n  port: {{ .Values.port | quote }}\n  global: {{ .Values.global | toJson | quote }}\n  size: {{ .Values.shared.size | quote }}\n",
		}
	}
	with := func(base map[string]string, more ...map[string]string) map[string]string {
		out := maps.Clone(base)
		for _, m := range more {
			maps.Copy(out, m)
		}
		return out
	}
	parentCM := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-parent\ndata:\n  values: {{ omit .Values \"global\" | toJson | quote }}\n  global: {{ .Values.global | toJson | quote }}\n"

	return []Chart{
		{Name: "dep-alias", Files: with(child("web"), map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: dep-alias\nversion: 0.1.0\ndependencies:\n" +
				"- {name: web, version: 1.0.0, alias: front}\n- {name: web, version: 1.0.0, alias: back, condition: back.enabled}\n- {name: web, version: 1.0.0, alias: off, condition: off.enabled}\n",
			"values.yaml":           "front: {color: red}\nback: {enabled: true, port: 8080}\noff: {enabled: false}\n",
			"templates/parent.yaml": parentCM,
		})},
		{Name: "dep-import", Files: with(child("db"), child("cache"), map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: dep-import\nversion: 0.1.0\ndependencies:\n" +
				"- name: db\n  version: 1.0.0\n  import-values: [data]\n" +
				"- name: cache\n  version: 1.0.0\n  import-values:\n  - child: shared\n    parent: fromCache\n  - child: color\n    parent: cacheColor\n",
			"values.yaml":           "exported: parent-default\nfromCache: {size: 9, kept: yes}\n",
			"templates/parent.yaml": parentCM,
		})},
		{Name: "dep-tags", Files: with(child("a"), child("b"), child("c"), map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: dep-tags\nversion: 0.1.0\ndependencies:\n" +
				"- {name: a, version: 1.0.0, tags: [front]}\n- {name: b, version: 1.0.0, tags: [back], condition: b.on}\n- {name: c, version: 1.0.0, tags: [front, back], condition: 'missing.path,c.enabled'}\n",
			"values.yaml":           "tags: {front: false, back: true}\nb: {on: false}\nc: {enabled: true}\n",
			"templates/parent.yaml": parentCM,
		})},
		{Name: "dep-globals", Files: with(child("web"), map[string]string{
			"Chart.yaml":                   "apiVersion: v2\nname: dep-globals\nversion: 0.1.0\ndependencies:\n- {name: web, version: 1.0.0}\n",
			"values.yaml":                  "global:\n  domain: example.org\n  replicas: 2\n  list: [a, b]\nweb:\n  color: green\n  global:\n    replicas: 5\n  shared: null\n",
			"charts/web/values.yaml":       "color: blue\nport: 80\nglobal:\n  fromChild: yes\nshared:\n  size: 1\n",
			"templates/parent.yaml":        parentCM,
			"charts/web/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-web\ndata:\n  all: {{ .Values | toJson | quote }}\n",
		})},
		{Name: "dep-grandchild", Files: with(map[string]string{
			"Chart.yaml":                               "apiVersion: v2\nname: dep-grandchild\nversion: 0.1.0\ndependencies:\n- {name: mid, version: 0.2.0}\n",
			"values.yaml":                              "mid:\n  leaf:\n    color: purple\n  note: from-top\n",
			"charts/mid/Chart.yaml":                    "apiVersion: v2\nname: mid\nversion: 0.2.0\ndependencies:\n- {name: leaf, version: 0.3.0}\n- {name: lib, version: 0.1.0}\n",
			"charts/mid/values.yaml":                   "note: mid-default\nleaf:\n  color: orange\n  size: 3\n",
			"charts/mid/templates/cm.yaml":             "{{ include \"lib.cm\" (dict \"name\" (printf \"%s-mid\" .Release.Name) \"data\" (dict \"note\" .Values.note)) }}\n",
			"charts/mid/charts/leaf/Chart.yaml":        "apiVersion: v2\nname: leaf\nversion: 0.3.0\n",
			"charts/mid/charts/leaf/values.yaml":       "color: white\nsize: 1\n",
			"charts/mid/charts/leaf/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-leaf\ndata:\n  color: {{ .Values.color }}\n  size: {{ .Values.size | quote }}\n  template: {{ .Template.Name }}\n  base: {{ .Template.BasePath }}\n",
			"charts/mid/charts/lib/Chart.yaml":         "apiVersion: v2\nname: lib\nversion: 0.1.0\ntype: library\n",
			"charts/mid/charts/lib/templates/_cm.tpl":  "{{- define \"lib.cm\" -}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .name }}\ndata:\n{{- range $k, $v := .data }}\n  {{ $k }}: {{ $v | quote }}\n{{- end }}\n{{- end -}}\n",
		})},
		{Name: "dep-v1", Files: with(child("old"), map[string]string{
			"Chart.yaml":            "apiVersion: v1\nname: dep-v1\nversion: 0.1.0\n",
			"requirements.yaml":     "dependencies:\n- name: old\n  version: 1.0.0\n  condition: old.enabled\n",
			"values.yaml":           "old:\n  enabled: true\n  color: sepia\n",
			"templates/parent.yaml": parentCM,
		})},
		{Name: "dep-disabled-values", Files: with(child("web"), map[string]string{
			"Chart.yaml":            "apiVersion: v2\nname: dep-disabled-values\nversion: 0.1.0\ndependencies:\n- {name: web, version: 1.0.0, condition: web.enabled}\n",
			"values.yaml":           "web:\n  enabled: false\n  color: never\n",
			"templates/parent.yaml": parentCM,
		})},
	}
}

// refusedCharts are charts `helm template` refuses, each for one reason:
// deliver must refuse them too. (Two of the reasons, a library chart and
// a missing dependency, are checked by the CLI, not by action.Install.)
func refusedCharts() []Chart {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  v: {{ .Values.v | quote }}\n"
	chart := func(name, extra string) string {
		return "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\n" + extra
	}
	out := []Chart{
		{Name: "no-schema-match", Files: map[string]string{
			"Chart.yaml":         chart("no-schema-match", ""),
			"values.yaml":        "v: not-a-number\n",
			"values.schema.json": `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"v": {"type": "integer"}}, "required": ["v"]}`,
			"templates/cm.yaml":  cm,
		}},
		{Name: "sub-schema", Files: map[string]string{
			"Chart.yaml":                  chart("sub-schema", "dependencies:\n- {name: s, version: 1.0.0}\n"),
			"values.yaml":                 "s:\n  replicas: many\n",
			"charts/s/Chart.yaml":         "apiVersion: v2\nname: s\nversion: 1.0.0\n",
			"charts/s/values.schema.json": `{"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}}`,
			"charts/s/templates/cm.yaml":  cm,
		}},
		{Name: "kube-version", Files: map[string]string{
			"Chart.yaml":        chart("kube-version", "kubeVersion: \">= 9.0.0-0\"\n"),
			"templates/cm.yaml": cm,
		}},
		{Name: "required", Files: map[string]string{
			"Chart.yaml":        chart("required", ""),
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required \"name is required\" .Values.name }}\n",
		}},
		{Name: "fail", Files: map[string]string{
			"Chart.yaml":        chart("fail", ""),
			"values.yaml":       "mode: bad\n",
			"templates/cm.yaml": "{{- if eq .Values.mode \"bad\" }}{{ fail \"mode bad is not supported\" }}{{ end }}\n",
		}},
		{Name: "library-top", Files: map[string]string{
			"Chart.yaml":       chart("library-top", "type: library\n"),
			"templates/_x.tpl": "{{ define \"x\" }}x{{ end }}",
		}},
		{Name: "missing-dependency", Files: map[string]string{
			"Chart.yaml":        chart("missing-dependency", "dependencies:\n- {name: gone, version: 1.0.0, repository: https://charts.example.org}\n"),
			"templates/cm.yaml": cm,
		}},
		{Name: "bad-template", Files: map[string]string{
			"Chart.yaml":        chart("bad-template", ""),
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name\n",
		}},
		{Name: "bad-yaml-out", Files: map[string]string{
			"Chart.yaml":        chart("bad-yaml-out", ""),
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: b\n   c: d\n",
		}},
	}
	for i := range out {
		out[i].Refused = true
	}
	return out
}

// checkUnique panics on two charts of one name: each is a folder.
func checkUnique(charts []Chart) []Chart {
	seen := map[string]bool{}
	for _, c := range charts {
		if seen[c.Name] {
			panic(fmt.Sprintf("corpus: two charts named %s", c.Name))
		}
		seen[c.Name] = true
	}
	return charts
}
