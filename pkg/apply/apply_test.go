package apply_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

var env *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.Run(m, &env, testenv.Options{})) }

// objects decodes a YAML stream written by a test, with ns filled in.
func objects(t *testing.T, ns, manifest string) *object.Set {
	t.Helper()
	set := &object.Set{}
	for i, doc := range strings.Split(strings.ReplaceAll(manifest, "NS", ns), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		if m == nil {
			continue
		}
		set.Objects = append(set.Objects, &object.Object{
			Unstructured: &unstructured.Unstructured{Object: m},
			Origin:       object.Origin{File: "test.yaml", Doc: i},
		})
	}
	return set
}

func newManager(t *testing.T, opts apply.Options) *apply.Manager {
	t.Helper()
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	m, err := apply.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The watches of the test's last waits would outlive its namespace
	// and kinds for their grace period.
	t.Cleanup(func() { apply.StopIdleWatches(m) })
	return m
}

func actions(rep *apply.Report) map[string]apply.Action {
	out := map[string]apply.Action{}
	for _, r := range rep.Results {
		out[r.ID.String()] = r.Action
	}
	return out
}

const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
`

func TestApplyDeploymentBecomesAvailable(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	set := objects(t, ns, deployment)
	rep, err := m.Apply(ctx, set, apply.PlanOptions{App: ns})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]apply.Action{"Deployment/" + ns + "/web": apply.Created}, actions(rep)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if err := m.Wait(ctx, set.Objects); err != nil {
		t.Fatal(err)
	}
	d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	available := false
	for _, c := range d.Status.Conditions {
		if c.Type == "Available" && c.Status == "True" {
			available = true
		}
	}
	if !available || d.Status.ReadyReplicas != 2 {
		t.Errorf("deployment not available with 2 ready replicas: %+v", d.Status)
	}
	if got := d.ManagedFields[0].Manager; got != apply.DefaultFieldManager {
		t.Errorf("field manager = %q, want %q", got, apply.DefaultFieldManager)
	}
}

func TestApplyActions(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	cm := `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: NS}
data: {key: VALUE}
`
	id := "ConfigMap/" + ns + "/cfg"
	for _, step := range []struct {
		value string
		want  apply.Action
	}{
		{"one", apply.Created},
		{"one", apply.Unchanged},
		{"two", apply.Configured},
	} {
		rep, err := m.Apply(ctx, objects(t, ns, strings.ReplaceAll(cm, "VALUE", step.value)), apply.PlanOptions{App: ns})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]apply.Action{id: step.want}, actions(rep)); diff != "" {
			t.Errorf("value %s: actions (-want +got):\n%s", step.value, diff)
		}
	}
}

const job = `
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: NS}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: LABELS
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: registry.example/app:1.0
        command: [rake, db:migrate]
`

func TestJobRunsToComplete(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	set := objects(t, ns, strings.ReplaceAll(job, "LABELS", "{app: migrate}"))
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx, set.Objects); err != nil {
		t.Fatal(err)
	}
	j, err := env.Client().BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status.Succeeded != 1 {
		t.Errorf("job succeeded = %d, want 1: %+v", j.Status.Succeeded, j.Status)
	}
}

func TestJobWithFailingPodFails(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	set := objects(t, ns, strings.ReplaceAll(job, "LABELS", "{app: migrate, "+testenv.FailLabel+": \"true\"}"))
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	err := m.Wait(ctx, set.Objects)
	if err == nil || !strings.Contains(err.Error(), "Job/"+ns+"/migrate: wait: failed") {
		t.Fatalf("Wait error = %v, want the Job named as failed", err)
	}
	pods, err := env.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 || pods.Items[0].Status.Phase != "Failed" {
		t.Fatalf("want a Failed pod, got %+v", pods.Items)
	}
}

func TestWaitTimeoutNamesObject(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{Timeout: 3 * time.Second})
	manifest := strings.Replace(deployment, "labels: {app: web}\n    spec:", "labels: {app: web, "+testenv.NeverReadyLabel+": \"true\"}\n    spec:", 1)
	set := objects(t, ns, manifest)
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	err := m.Wait(ctx, set.Objects)
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web: InProgress") {
		t.Fatalf("Wait error = %v, want the Deployment named as in progress", err)
	}
}

func TestCRDAndCustomResourceInOneSet(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	group := strings.ReplaceAll(ns, "-", "") + ".example.com"
	manifest := `
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: NS}
spec: {size: 3}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`
	// A group of its own per test keeps parallel runs from sharing the CRD.
	manifest = strings.ReplaceAll(manifest, "example.com", group)
	rep, err := m.Apply(ctx, objects(t, ns, manifest), apply.PlanOptions{App: ns})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]apply.Action{
		"CustomResourceDefinition/widgets." + group: apply.Created,
		"Widget/" + ns + "/w1":                      apply.Created,
	}
	if diff := cmp.Diff(want, actions(rep)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if rep.Results[0].ID.Kind != "CustomResourceDefinition" {
		t.Errorf("first applied = %s, want the CRD", rep.Results[0].ID)
	}
}

func TestApplyUnknownKindNamesObject(t *testing.T) {
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{})
	_, err := m.Apply(context.Background(), objects(t, ns, `
apiVersion: nothere.example.com/v1
kind: Gadget
metadata: {name: g, namespace: NS}
`), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "Gadget/"+ns+"/g (test.yaml#0): unknown kind Gadget in nothere.example.com/v1") {
		t.Fatalf("error = %v, want the object and the unknown kind named", err)
	}
}

func TestStageOrder(t *testing.T) {
	mk := func(apiVersion, kind, name string) *object.Object {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetName(name)
		return &object.Object{Unstructured: u}
	}
	in := []*object.Object{
		mk("apps/v1", "Deployment", "b"),
		mk("v1", "ConfigMap", "c"),
		mk("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "v"),
		mk("apps/v1", "Deployment", "a"),
		mk("example.com/v1", "Widget", "w"),
		mk("v1", "Namespace", "n"),
		mk("rbac.authorization.k8s.io/v1", "ClusterRole", "r"),
		mk("apiextensions.k8s.io/v1", "CustomResourceDefinition", "crd"),
	}
	var got [][]string
	for _, stage := range apply.Stages(in) {
		var names []string
		for _, o := range stage {
			names = append(names, o.GetKind()+"/"+o.GetName())
		}
		got = append(got, names)
	}
	want := [][]string{
		{"Namespace/n", "CustomResourceDefinition/crd"}, // by group, then kind
		{"ClusterRole/r"},
		{"ConfigMap/c"},
		{"Deployment/a", "Deployment/b"},
		{"Widget/w"},
		{"ValidatingWebhookConfiguration/v"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

// TestUnknownFieldRejected checks that a field the schema does not know fails
// the object, both when it is created (sent without a dry run first) and when
// it is updated (dry-run first), although deliver sends its applies with
// fieldValidation=Ignore: the apply itself rejects unknown fields. So does
// it for a custom resource whose CRD has a structural schema, where a
// create or an update with fieldValidation=Ignore would prune the field.
func TestUnknownFieldRejected(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	const valid = `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: NS}
data: {key: one}
`
	if _, err := m.Apply(ctx, objects(t, ns, valid), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	// A custom resource whose CRD has a structural schema without
	// x-kubernetes-preserve-unknown-fields: the API server would prune an
	// unknown field from a create or update, but rejects it in an apply. A
	// group of its own keeps parallel runs from sharing the CRD; an app of
	// its own keeps the ConfigMap's app from pruning it.
	group := strings.ReplaceAll(ns, "-", "") + ".example.com"
	crd := strings.ReplaceAll(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
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
`, "example.com", group)
	widget := strings.ReplaceAll("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: NS}\nspec: {size: 3}\n", "example.com", group)
	crApp := ns + "-cr"
	if _, err := m.Apply(ctx, objects(t, ns, crd+"---\n"+widget), apply.PlanOptions{App: crApp}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, app, manifest, want string
	}{
		{
			name:     "create",
			manifest: valid + "---\n" + strings.Replace(deployment, "replicas: 2", "replica: 2", 1),
			want:     "Deployment/" + ns + "/web (test.yaml#1): ",
		},
		{
			name:     "update",
			manifest: strings.Replace(valid, "data: {key: one}", "data: {key: two}\ndta: {key: two}", 1),
			want:     "ConfigMap/" + ns + "/cfg (test.yaml#0): ",
		},
		{
			name:     "custom resource create",
			app:      crApp,
			manifest: crd + "---\n" + widget + "---\n" + strings.NewReplacer("w1", "w2", "size: 3", "size: 3, colour: red").Replace(widget),
			want:     "Widget/" + ns + "/w2 (test.yaml#2): ",
		},
		{
			name:     "custom resource update",
			app:      crApp,
			manifest: crd + "---\n" + strings.Replace(widget, "size: 3", "size: 4, colour: red", 1),
			want:     "Widget/" + ns + "/w1 (test.yaml#1): ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := ns
			if tc.app != "" {
				app = tc.app
			}
			_, err := m.Apply(ctx, objects(t, ns, tc.manifest), apply.PlanOptions{App: app})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "field not declared in schema") {
				t.Fatalf("error = %v, want the object %q and the unknown field named", err, tc.want)
			}
		})
	}
	// Nothing of the failed applies reached the cluster.
	got, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["key"] != "one" {
		t.Errorf("ConfigMap data = %v, want the first apply's", got.Data)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err == nil {
		t.Error("Deployment web was created from an invalid manifest")
	}
	widgets := dynamic.NewForConfigOrDie(env.Config).Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}).Namespace(ns)
	w1, err := widgets.Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if spec, _, _ := unstructured.NestedMap(w1.Object, "spec"); len(spec) != 1 || spec["size"] != int64(3) {
		t.Errorf("Widget w1 spec = %v, want the first apply's", spec)
	}
	if _, err := widgets.Get(ctx, "w2", metav1.GetOptions{}); err == nil {
		t.Error("Widget w2 was created from an invalid manifest")
	}
}

// TestApplyRequestForm checks the form of deliver's applies that the first
// apply's speed depends on: JSON bodies and fieldValidation=Ignore, for the
// dry runs and the writes alike.
func TestApplyRequestForm(t *testing.T) {
	ns := env.Namespace(t)
	var (
		mu    sync.Mutex
		seen  []string
		bodyN int
	)
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPatch && strings.Contains(req.URL.Path, "/namespaces/"+ns+"/") && req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				var b strings.Builder
				_, _ = io.Copy(&b, body)
				mu.Lock()
				bodyN++
				seen = append(seen, fmt.Sprintf("%s %s fieldValidation=%s dryRun=%s json=%t",
					req.Header.Get("Content-Type"), req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:],
					req.URL.Query().Get("fieldValidation"), req.URL.Query().Get("dryRun"),
					strings.HasPrefix(b.String(), "{") && json.Valid([]byte(b.String()))))
				mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	}
	m, err := apply.New(cfg, apply.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: form, namespace: NS}\ndata: {k: VALUE}\n"
	for _, v := range []string{"one", "two"} {
		if _, err := m.Apply(context.Background(), objects(t, ns, strings.Replace(cm, "VALUE", v, 1)), apply.PlanOptions{App: ns}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		// The first revision is written without a dry run; the second is
		// dry-run, then written.
		"application/apply-patch+yaml form fieldValidation=Ignore dryRun= json=true",
		"application/apply-patch+yaml form fieldValidation=Ignore dryRun=All json=true",
		"application/apply-patch+yaml form fieldValidation=Ignore dryRun= json=true",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("applies (-want +got):\n%s", diff)
	}
}
