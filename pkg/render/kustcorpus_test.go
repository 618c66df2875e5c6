package render

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The kustomize corpus: kustomizations generated here in the shapes public
// repositories use (bases and overlays, components, generators of every
// source, strategic-merge, JSON 6902 and inline patches, name prefixes,
// labels, images, replicas, replacements, block scalars at the ends of
// files without a final line break), built by deliver and by kustomize,
// and compared as kubectl would read kustomize's output.

// kustCase is one kustomization tree: files relative to the repository,
// and the folder to build.
type kustCase struct {
	name  string
	path  string
	files map[string]string
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
func kustShapes() []kustCase {
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
	return []kustCase{
		{name: "base", path: "base", files: base},
		{name: "overlay", path: "overlays/prod", files: with(map[string]string{
			"overlays/prod/kustomization.yaml": "resources:\n- ../../base\nnamespace: prod\nnamePrefix: prod-\nnameSuffix: -v1\nlabels:\n- pairs: {env: prod}\n  includeSelectors: true\ncommonAnnotations:\n  note: |\n    multi\n    line\nimages:\n- name: nginx\n  newTag: \"1.25\"\nreplicas:\n- name: web\n  count: 3\nconfigMapGenerator:\n- name: settings\n  behavior: merge\n  literals:\n  - MODE=prod\npatches:\n- path: patch.yaml\n- target: {kind: Deployment, name: web}\n  patch: |-\n    - op: add\n      path: /spec/template/metadata/annotations\n      value: {rolled: \"yes\"}\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: static\n    data:\n      extra: |\n        added\n",
			"overlays/prod/patch.yaml":         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        args:\n        - |\n          run\n          --fast",
		})},
		{name: "components", path: "overlays/comp", files: with(map[string]string{
			"overlays/comp/kustomization.yaml":         "resources:\n- ../../base\ncomponents:\n- ../../components/monitoring\n- ../../components/tls\n",
			"components/monitoring/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- monitor.yaml\npatches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n      annotations:\n        prometheus.io/scrape: \"true\"\n",
			"components/monitoring/monitor.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scrape\ndata:\n  prometheus.yml: |+\n    scrape_configs: []\n\n",
			"components/tls/kustomization.yaml":        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nsecretGenerator:\n- name: tls\n  type: kubernetes.io/tls\n  files:\n  - tls.crt\n  - tls.key\n  options:\n    disableNameSuffixHash: true\n    labels: {tls: \"yes\"}\n",
			"components/tls/tls.crt":                   "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
			"components/tls/tls.key":                   "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
		})},
		{name: "replacements", path: "overlays/repl", files: with(map[string]string{
			"overlays/repl/kustomization.yaml": "resources:\n- ../../base\n- source.yaml\nreplacements:\n- source: {kind: ConfigMap, name: source, fieldPath: data.image}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=web].image\n",
			"overlays/repl/source.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: source\n  annotations:\n    config.kubernetes.io/local-config: \"true\"\ndata:\n  image: registry.example.org/web:2.0\n",
		})},
		{name: "multidoc", path: "multi", files: map[string]string{
			"multi/kustomization.yaml": "resources:\n- all.yaml\n- list.yaml\n",
			"multi/all.yaml":           "---\n# leading comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: >-\n    folded\n    text\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: |-\n    stripped\n...\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: c\nstringData:\n  k: |\n    kept",
			"multi/list.yaml":          "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: from-list\n  data:\n    n: \"1\"\n    yes: yes\n",
		}},
	}
}

// randomKustomizations writes n kustomizations of random resources whose
// data end in every block style, with generators of random literals and
// files, some built as overlays of others.
func randomKustomizations(seed uint64, n int) []kustCase {
	r := rand.New(rand.NewPCG(seed, 2))
	var out []kustCase
	for i := range n {
		dir := fmt.Sprintf("r%d", i)
		files := map[string]string{}
		var resources []string
		for d := range 1 + r.IntN(4) {
			ind := blockIndicators[r.IntN(len(blockIndicators))]
			body := blockBodies[r.IntN(len(blockBodies))]
			if strings.HasPrefix(body, " ") && !strings.ContainsAny(ind, "0123456789") {
				body = "x" + body
			}
			name := fmt.Sprintf("res%d.yaml", d)
			doc := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\ndata:\n  k: %s\n%s", d, ind, indent(4, body))
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
			body := blockBodies[r.IntN(len(blockBodies))]
			files[dir+"/gen.txt"] = body
			fmt.Fprintf(&k, "configMapGenerator:\n- name: gen\n  files:\n  - gen.txt\n  literals:\n  - L=%d\n", r.IntN(100))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&k, "namePrefix: p%d-\nnamespace: ns%d\n", i, i)
		}
		files[dir+"/kustomization.yaml"] = k.String()
		out = append(out, kustCase{name: dir, path: dir, files: files})
	}
	return out
}

// kustCorpus writes every case into its own repository folder.
func kustCorpus(t *testing.T) (string, []kustCase) {
	t.Helper()
	cases := slices.Concat(kustShapes(), randomKustomizations(23, 60))
	root := t.TempDir()
	for _, c := range cases {
		for name, content := range c.files {
			p := filepath.Join(root, c.name, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root, cases
}

// deliverKustomize returns deliver's objects of a case as canonical JSON.
func deliverKustomize(t *testing.T, r *Renderer, root string, c kustCase) ([]string, error) {
	t.Helper()
	set, err := r.Kustomize(context.Background(), KustomizeOptions{Root: filepath.Join(root, c.name), Path: c.path, App: "corpus"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range append(set.Objects, set.Hooks...) {
		out = append(out, canonicalJSON(t, o.Object))
	}
	slices.Sort(out)
	return out, nil
}

// TestKustomizeCorpusLibrary compares deliver's objects with kustomize's
// own YAML output (the krusty build the CLI runs, AsYaml) read by
// kubectl's decoder.
func TestKustomizeCorpusLibrary(t *testing.T) {
	root, cases := kustCorpus(t)
	var r Renderer
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
			m, kerr := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, c.name, c.path))
			got, err := deliverKustomize(t, &r, root, c)
			if kerr != nil || err != nil {
				t.Fatalf("kustomize: %v\ndeliver: %v", kerr, err)
			}
			y, err := m.AsYaml()
			if err != nil {
				t.Fatal(err)
			}
			want, err := kubectlDecode(string(y))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("objects (-want kustomize +got deliver):\n%s", diff)
			}
		})
	}
}

// TestKustomizeCorpusCLI compares deliver's objects with the output of
// `kustomize build`, read by kubectl's decoder.
func TestKustomizeCorpusCLI(t *testing.T) {
	kustomize := testbin(t, "kustomize")
	root, cases := kustCorpus(t)
	var r Renderer
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := runCLI(t, filepath.Join(root, c.name), kustomize, "build", c.path)
			want, err := kubectlDecode(string(out))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			got, err := deliverKustomize(t, &r, root, c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("objects (-want kustomize build +got deliver):\n%s", diff)
			}
		})
	}
}
