package corpus

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
)

// Kustomization is one kustomization tree.
type Kustomization struct {
	// Name is the case's name and repository folder.
	Name string
	// Path is the folder to build, relative to the repository.
	Path string
	// Files are the repository's files, by slash-separated path.
	Files map[string]string
}

const kustDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.0
        envFrom:
        - configMapRef: {name: settings}
        - secretRef: {name: creds}
        volumeMounts:
        - {name: conf, mountPath: /etc/conf}
      volumes:
      - name: conf
        configMap: {name: files}
`

// kustShapes are the hand-picked kustomizations.
func kustShapes() []Kustomization {
	base := map[string]string{
		"base/kustomization.yaml": "resources:\n- deployment.yaml\n- cm.yaml\nconfigMapGenerator:\n- name: settings\n  literals:\n  - MODE=base\n  - EMPTY=\n  - QUOTED=\"a b\"\n- name: files\n  files:\n  - app.conf\n  - raw=no-newline.txt\nsecretGenerator:\n- name: creds\n  literals:\n  - user=admin\n  envs:\n  - creds.env\n",
		"base/deployment.yaml":    kustDeployment,
		"base/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: static\ndata:\n  rules: |\n    {}",
		"base/app.conf":           "[main]\nkey = value\n",
		"base/no-newline.txt":     "no final newline",
		"base/creds.env":          "TOKEN=abc\n# comment\nEMPTY=\n",
	}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(base)
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []Kustomization{
		{Name: "base", Path: "base", Files: base},
		{Name: "overlay", Path: "overlays/prod", Files: with(map[string]string{
			"overlays/prod/kustomization.yaml": "resources:\n- ../../base\nnamespace: prod\nnamePrefix: prod-\nnameSuffix: -v1\nlabels:\n- pairs: {env: prod}\n  includeSelectors: true\ncommonAnnotations:\n  note: |\n    multi\n    line\nimages:\n- name: nginx\n  newTag: \"1.25\"\nreplicas:\n- name: web\n  count: 3\nconfigMapGenerator:\n- name: settings\n  behavior: merge\n  literals:\n  - MODE=prod\npatches:\n- path: patch.yaml\n- target: {kind: Deployment, name: web}\n  patch: |-\n    - op: add\n      path: /spec/template/metadata/annotations\n      value: {rolled: \"yes\"}\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: static\n    data:\n      extra: |\n        added\n",
			"overlays/prod/patch.yaml":         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        args:\n        - |\n          run\n          --fast",
		})},
		{Name: "components", Path: "overlays/comp", Files: with(map[string]string{
			"overlays/comp/kustomization.yaml":         "resources:\n- ../../base\ncomponents:\n- ../../components/monitoring\n- ../../components/tls\n",
			"components/monitoring/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- monitor.yaml\npatches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n      annotations:\n        prometheus.io/scrape: \"true\"\n",
			"components/monitoring/monitor.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scrape\ndata:\n  prometheus.yml: |+\n    scrape_configs: []\n\n",
			"components/tls/kustomization.yaml":        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nsecretGenerator:\n- name: tls\n  type: kubernetes.io/tls\n  files:\n  - tls.crt\n  - tls.key\n  options:\n    disableNameSuffixHash: true\n    labels: {tls: \"yes\"}\n",
			"components/tls/tls.crt":                   "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
			"components/tls/tls.key":                   "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
		})},
		{Name: "replacements", Path: "overlays/repl", Files: with(map[string]string{
			"overlays/repl/kustomization.yaml": "resources:\n- ../../base\n- source.yaml\nreplacements:\n- source: {kind: ConfigMap, name: source, fieldPath: data.image}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=web].image\n",
			"overlays/repl/source.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: source\n  annotations:\n    config.kubernetes.io/local-config: \"true\"\ndata:\n  image: registry.example.org/web:2.0\n",
		})},
		{Name: "multidoc", Path: "multi", Files: map[string]string{
			"multi/kustomization.yaml": "resources:\n- all.yaml\n- list.yaml\n",
			"multi/all.yaml":           "---\n# leading comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: >-\n    folded\n    text\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: |-\n    stripped\n...\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: c\nstringData:\n  k: |\n    kept",
			"multi/list.yaml":          "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: from-list\n  data:\n    n: \"1\"\n    yes: yes\n",
		}},
	}
}

// randomKustomizations writes n kustomizations of random resources whose
// data end in every block style, with generators of random literals and
// files, some built as overlays of others.
func randomKustomizations(seed uint64, n int) []Kustomization {
	r := rand.New(rand.NewPCG(seed, 2))
	var out []Kustomization
	for i := range n {
		dir := fmt.Sprintf("r%d", i)
		files := map[string]string{}
		var resources []string
		for d := range 1 + r.IntN(4) {
			ind := BlockIndicators[r.IntN(len(BlockIndicators))]
			body := BlockBodies[r.IntN(len(BlockBodies))]
			if strings.HasPrefix(body, " ") && !strings.ContainsAny(ind, "0123456789") {
				body = "x" + body
			}
			name := fmt.Sprintf("res%d.yaml", d)
			doc := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\ndata:\n  k: %s\n%s", d, ind, Indent(4, body))
			if r.IntN(2) == 0 {
				doc += strings.Repeat("\n", r.IntN(3))
			}
			files[dir+"/"+name] = doc
			resources = append(resources, name)
		}
		var k strings.Builder
		fmt.Fprintf(&k, "resources:\n")
		for _, res := range resources {
			fmt.Fprintf(&k, "- %s\n", res)
		}
		if r.IntN(2) == 0 {
			body := BlockBodies[r.IntN(len(BlockBodies))]
			files[dir+"/gen.txt"] = body
			fmt.Fprintf(&k, "configMapGenerator:\n- name: gen\n  files:\n  - gen.txt\n  literals:\n  - L=%d\n", r.IntN(100))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&k, "namePrefix: p%d-\nnamespace: ns%d\n", i, i)
		}
		files[dir+"/kustomization.yaml"] = k.String()
		out = append(out, Kustomization{Name: dir, Path: dir, Files: files})
	}
	return out
}

// valueKustomizations are n kustomizations of one custom resource whose
// spec is a generated values file (ValuesFiles: YAML 1.1 words, every
// number notation, dates, tags, anchors, block scalars), some in an
// overlay that patches it or only renames it, and a ConfigMap of the
// same text as data where it is one of strings.
func valueKustomizations(seed uint64, n int) []Kustomization {
	var out []Kustomization
	for i, text := range ValuesFiles(seed, n) {
		dir := fmt.Sprintf("v%d", i)
		files := map[string]string{
			dir + "/base/kustomization.yaml": "resources:\n- thing.yaml\n",
			dir + "/base/thing.yaml":         "apiVersion: example.org/v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n" + Nested(2, text),
		}
		path := dir + "/base"
		switch i % 3 {
		case 1:
			path = dir + "/overlay"
			files[path+"/kustomization.yaml"] = "resources:\n- ../base\nnamePrefix: o-\ncommonLabels: {tier: \"1\"}\n"
		case 2:
			path = dir + "/overlay"
			files[path+"/kustomization.yaml"] = "resources:\n- ../base\npatches:\n- patch: |\n    apiVersion: example.org/v1\n    kind: Thing\n    metadata: {name: t}\n    spec:\n      added: yes\n      n: 0755\n"
		}
		out = append(out, Kustomization{Name: dir, Path: path, Files: files})
	}
	return out
}

// Kustomizations is the whole kustomize corpus: the hand-picked shapes,
// 60 random kustomizations and 60 of generated values.
func Kustomizations() []Kustomization {
	return slices.Concat(kustShapes(), randomKustomizations(23, 60), valueKustomizations(29, 60))
}
