package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// The workload is the same mix at every size, so that the rows of two sizes
// can be compared: per 20 objects, 7 ConfigMaps, 4 Secrets, 4 headless
// Services, 4 Deployments and 1 custom resource (35/20/20/20/5 %). Every
// tenth Deployment has one replica, so the controllers and kwok do real work
// as in a live cluster; the others have none, so that the rows measure the
// tools and the API server, not Pod churn.
const (
	crdGroup = "bench.deliver.dev"
	crdName  = "widgets." + crdGroup
)

type kind struct {
	name     string // Kind
	prefix   string // object names are prefix-%05d of the per-kind index
	resource schema.GroupVersionResource
}

var (
	kindConfigMap  = kind{"ConfigMap", "cm", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}}
	kindSecret     = kind{"Secret", "secret", schema.GroupVersionResource{Version: "v1", Resource: "secrets"}}
	kindService    = kind{"Service", "svc", schema.GroupVersionResource{Version: "v1", Resource: "services"}}
	kindDeployment = kind{"Deployment", "deploy", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}}
	kindWidget     = kind{"Widget", "widget", schema.GroupVersionResource{Group: crdGroup, Version: "v1", Resource: "widgets"}}
	kinds          = []kind{kindConfigMap, kindSecret, kindService, kindDeployment, kindWidget}
)

// kindOf maps the i-th object of a workload to its kind.
func kindOf(i int) kind {
	switch r := i % 20; {
	case r < 7:
		return kindConfigMap
	case r < 11:
		return kindSecret
	case r < 15:
		return kindService
	case r < 19:
		return kindDeployment
	default:
		return kindWidget
	}
}

// item is one object of a workload: its kind and per-kind index.
type item struct {
	kind  kind
	index int
}

func (it item) name() string { return fmt.Sprintf("%s-%05d", it.kind.prefix, it.index) }

// items lists the n objects of a workload in a stable order.
func items(n int) []item {
	count := map[string]int{}
	out := make([]item, n)
	for i := range out {
		k := kindOf(i)
		out[i] = item{kind: k, index: count[k.name]}
		count[k.name]++
	}
	return out
}

// countOf returns how many objects of kind k a workload of n holds.
func countOf(n int, k kind) int {
	c := 0
	for _, it := range items(n) {
		if it.kind == k {
			c++
		}
	}
	return c
}

// payload makes the objects the size of real config (a few hundred bytes),
// not of a toy.
var payload = strings.Repeat("x", 200)

// manifest returns the YAML of one object in namespace ns; gen is the
// generation of a ConfigMap's data, bumped by the small-change rows.
func manifest(it item, ns string, gen int) string {
	name := it.name()
	labels := fmt.Sprintf("{app.kubernetes.io/name: %s, app.kubernetes.io/part-of: bench}", name)
	switch it.kind {
	case kindConfigMap:
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\ndata:\n  index: \"%d\"\n  generation: \"%d\"\n  payload: %s\n", name, ns, labels, it.index, gen, payload)
	case kindSecret:
		return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\ntype: Opaque\nstringData:\n  password: pw-%05d-bench\n", name, ns, labels, it.index)
	case kindService:
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  clusterIP: None\n  selector: {app: %s}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n", name, ns, labels, name)
	case kindDeployment:
		return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  replicas: %d\n  selector:\n    matchLabels: {app: %s}\n  template:\n    metadata:\n      labels: {app: %s}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/bench/app:1.0.0\n        ports: [{containerPort: 8080}]\n        env: [{name: INDEX, value: \"%d\"}]\n        resources: {requests: {cpu: 10m, memory: 16Mi}}\n", name, ns, labels, replicas(it.index), name, name, it.index)
	case kindWidget:
		return fmt.Sprintf("apiVersion: %s/v1\nkind: Widget\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  size: %d\n  color: blue\n", crdGroup, name, ns, labels, it.index)
	}
	panic("unknown kind " + it.kind.name)
}

func replicas(index int) int {
	if index%10 == 0 {
		return 1
	}
	return 0
}

// crdManifest is the one CRD of the workload. It is installed once per
// cluster before the apply rows (as users install an operator's CRDs), and
// rendered with every render row.
const crdManifest = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + crdName + `
spec:
  group: ` + crdGroup + `
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
`

// manifestDir is a folder of plain manifests, one file per object, for one
// namespace: what kubectl apply -f and deliver -f read.
type manifestDir struct {
	Dir, Namespace string
	items          []item
	gen            map[int]int // per item: generation of its ConfigMap data
}

func writeManifestDir(dir, ns string, n int) (*manifestDir, error) {
	md := &manifestDir{Dir: dir, Namespace: ns, items: items(n), gen: map[int]int{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i := range md.items {
		if err := md.write(i); err != nil {
			return nil, err
		}
	}
	return md, gitCommit(dir)
}

// gitCommit makes dir a git repository of its own with everything
// committed. deliver reads a local path as a git working tree (revision and
// dirty state): the workload must be the repository, as it is for users, not
// a folder inside the deliver repository, whose status would be timed.
func gitCommit(dir string) error {
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "--no-gpg-sign", "-m", "workload"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
		}
	}
	return nil
}

func (md *manifestDir) write(i int) error {
	file := filepath.Join(md.Dir, fmt.Sprintf("%05d.yaml", i))
	if err := os.WriteFile(file, []byte(manifest(md.items[i], md.Namespace, md.gen[i])), 0o644); err != nil {
		return fmt.Errorf("write workload: %w", err)
	}
	return nil
}

// change bumps the data of 1% of the objects (at least one), all
// ConfigMaps spread over the workload, commits them and returns how many
// changed.
func (md *manifestDir) change() (int, error) {
	var cms []int
	for i, it := range md.items {
		if it.kind == kindConfigMap {
			cms = append(cms, i)
		}
	}
	want := max(1, len(md.items)/100)
	step := max(1, len(cms)/want)
	changed := 0
	for j := 0; j < len(cms) && changed < want; j += step {
		i := cms[j]
		md.gen[i]++
		if err := md.write(i); err != nil {
			return changed, err
		}
		changed++
	}
	// Committed, so that a reconciler following the repository sees what
	// deliver --path applied.
	cmd := exec.Command("git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "-a", "--no-gpg-sign", "-m", "change")
	cmd.Dir = md.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return changed, fmt.Errorf("git commit in %s: %w\n%s", md.Dir, err, out)
	}
	return changed, nil
}

// objects returns the workload as unstructured objects, for the raw client.
func (md *manifestDir) objects() ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, len(md.items))
	for i, it := range md.items {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(manifest(it, md.Namespace, md.gen[i])), &m); err != nil {
			return nil, fmt.Errorf("workload object %s: %w", it.name(), err)
		}
		out[i] = &unstructured.Unstructured{Object: m}
	}
	return out, nil
}

// renderInputs are the two repositories of the render rows: a Helm chart
// whose templates range over per-kind counts (how charts generate many
// similar objects), and a kustomize overlay over a base of plain files. Each
// has a deliver.yaml naming it, so that deliver renders the same input.
type renderInputs struct {
	HelmRepo, Chart        string // deliver --path HelmRepo; helm template Chart
	KustomizeRepo, Overlay string // deliver --path KustomizeRepo; kustomize build Overlay
}

const renderNamespace = "bench"

func writeRenderInputs(dir string, n int) (*renderInputs, error) {
	in := &renderInputs{
		HelmRepo:      filepath.Join(dir, "helm"),
		KustomizeRepo: filepath.Join(dir, "kustomize"),
	}
	in.Chart = filepath.Join(in.HelmRepo, "chart")
	in.Overlay = filepath.Join(in.KustomizeRepo, "overlay")

	labels := `
    app.kubernetes.io/name: {{ $name }}
    app.kubernetes.io/part-of: bench
    app.kubernetes.io/instance: {{ $.Release.Name }}`
	loop := func(k kind, countKey, body string) string {
		return fmt.Sprintf("{{- range $i := until (int .Values.%s) }}\n{{- $name := printf \"%s-%%05d\" $i }}\n---\n%s\n{{- end }}\n", countKey, k.prefix, body)
	}
	files := map[string]string{
		"helm/deliver.yaml":     "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: bench\n  namespace: " + renderNamespace + "\n  helm: {chart: chart}\n",
		"helm/chart/Chart.yaml": "apiVersion: v2\nname: bench\nversion: 0.1.0\n",
		"helm/chart/values.yaml": fmt.Sprintf("configMaps: %d\nsecrets: %d\nservices: %d\ndeployments: %d\nwidgets: %d\npayload: %s\nimage: registry.example/bench/app:1.0.0\n",
			countOf(n, kindConfigMap), countOf(n, kindSecret), countOf(n, kindService), countOf(n, kindDeployment), countOf(n, kindWidget), payload),
		"helm/chart/templates/crd.yaml": crdManifest,
		"helm/chart/templates/configmaps.yaml": loop(kindConfigMap, "configMaps", `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:`+labels+`
data:
  index: "{{ $i }}"
  generation: "0"
  payload: {{ $.Values.payload }}`),
		"helm/chart/templates/secrets.yaml": loop(kindSecret, "secrets", `apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:`+labels+`
type: Opaque
stringData:
  password: {{ printf "pw-%05d-bench" $i }}`),
		"helm/chart/templates/services.yaml": loop(kindService, "services", `apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:`+labels+`
spec:
  clusterIP: None
  selector: {app: {{ $name }}}
  ports:
  - {name: http, port: 80, targetPort: 8080}`),
		"helm/chart/templates/deployments.yaml": loop(kindDeployment, "deployments", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:`+labels+`
spec:
  replicas: {{ if eq (mod $i 10) 0 }}1{{ else }}0{{ end }}
  selector:
    matchLabels: {app: {{ $name }}}
  template:
    metadata:
      labels: {app: {{ $name }}}
    spec:
      containers:
      - name: app
        image: {{ $.Values.image }}
        ports: [{containerPort: 8080}]
        env: [{name: INDEX, value: "{{ $i }}"}]
        resources: {requests: {cpu: 10m, memory: 16Mi}}`),
		"helm/chart/templates/widgets.yaml": loop(kindWidget, "widgets", `apiVersion: `+crdGroup+`/v1
kind: Widget
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:`+labels+`
spec:
  size: {{ $i }}
  color: blue`),

		"kustomize/deliver.yaml":               "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: bench\n  namespace: " + renderNamespace + "\n  kustomize: {path: overlay}\n",
		"kustomize/base/crd.yaml":              crdManifest,
		"kustomize/overlay/kustomization.yaml": "namespace: " + renderNamespace + "\nlabels:\n- pairs: {env: bench}\nresources: [../base]\npatches:\n- target: {kind: Deployment}\n  patch: |-\n    - op: add\n      path: /metadata/annotations\n      value: {bench.deliver.dev/patched: \"true\"}\n",
	}
	// The base holds one multi-document file per kind, without namespaces:
	// the overlay sets them.
	var base strings.Builder
	base.WriteString("resources: [crd.yaml")
	docs := map[string]*strings.Builder{}
	for _, it := range items(n) {
		b := docs[it.kind.prefix]
		if b == nil {
			b = &strings.Builder{}
			docs[it.kind.prefix] = b
			fmt.Fprintf(&base, ", %s.yaml", it.kind.prefix)
		}
		b.WriteString("---\n")
		b.WriteString(strings.Replace(manifest(it, "", 0), "  namespace: \n", "", 1))
	}
	base.WriteString("]\n")
	files["kustomize/base/kustomization.yaml"] = base.String()
	for prefix, b := range docs {
		files["kustomize/base/"+prefix+".yaml"] = b.String()
	}

	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("render inputs: %w", err)
		}
	}
	for _, repo := range []string{in.HelmRepo, in.KustomizeRepo} {
		if err := gitCommit(repo); err != nil {
			return nil, err
		}
	}
	return in, nil
}
