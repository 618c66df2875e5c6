package apply_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/render"
)

// webApp is a web Deployment whose Pod template carries LABELS, and an
// on-failure hook that notifies.
func webApp(image, labels string) string {
	return strings.NewReplacer("IMAGE", image, "LABELS", labels).Replace(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web LABELS}
    spec:
      containers:
      - name: web
        image: IMAGE
---
apiVersion: batch/v1
kind: Job
metadata: {name: notify, namespace: NS, annotations: {deliver.dev/hook: on-failure}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: notify, image: curl}]
`)
}

func TestRollbackOnFailedRollout(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{Timeout: 10 * time.Second})
	opts := apply.PlanOptions{App: ns, Revision: "v1", Wait: true, RollbackOnFailure: true}
	if _, err := m.Apply(ctx, withHooks(objects(t, ns, webApp("app:1", ""))), opts); err != nil {
		t.Fatal(err)
	}

	opts.Revision = "v2"
	p, err := m.Plan(ctx, withHooks(objects(t, ns, webApp("app:2", ", "+testenv.NeverReadyLabel+": \"true\""))), opts)
	if err != nil {
		t.Fatal(err)
	}
	webID := object.ID{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "web"}
	if diff := cmp.Diff([]object.ID{webID}, p.Rollback); diff != "" {
		t.Errorf("rollback plan (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	_ = p.WriteDiff(&out, apply.DiffOptions{})
	if want := "Deployment/" + ns + "/web will be rolled back to the last successful run if its rollout fails"; !strings.Contains(out.String(), want) {
		t.Errorf("diff lacks %q:\n%s", want, out.String())
	}
	rep, err := m.Execute(ctx, p)
	for _, want := range []string{"not ready after 10s", "Deployment/" + ns + "/web", "rolled back Deployment/" + ns + "/web to revision v1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to contain %q", err, want)
		}
	}
	var got []string
	for _, r := range rep.Results {
		got = append(got, string(r.Action)+" "+r.ID.Kind+"/"+r.ID.Name)
	}
	if diff := cmp.Diff([]string{"configured Deployment/web", "rolled-back Deployment/web", "hook-ran Job/notify"}, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	cs := env.Client()
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := dep.Spec.Template
	if tmpl.Spec.Containers[0].Image != "app:1" || tmpl.Labels[testenv.NeverReadyLabel] != "" || dep.Status.AvailableReplicas != 2 || dep.Status.UpdatedReplicas != 2 {
		t.Errorf("not rolled back: image %s, labels %v, available %d, updated %d",
			tmpl.Spec.Containers[0].Image, tmpl.Labels, dep.Status.AvailableReplicas, dep.Status.UpdatedReplicas)
	}
	if n, err := cs.BatchV1().Jobs(ns).Get(ctx, "notify", metav1.GetOptions{}); err != nil || n.Status.Succeeded != 1 {
		t.Errorf("on-failure hook did not run: %v", err)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Result != apply.ResultFailed || len(inv.Workloads) != 1 || inv.Workloads[0].Revision != "v1" {
		t.Errorf("inventory: result %s, workloads %+v; want failed with the v1 workload kept", inv.Result, inv.Workloads)
	}

	// The cluster is at v1 again: git reverted to v1 is in sync, without a
	// dry run, and v2 is a change again.
	opts.Revision = "v1"
	p, err = m.Plan(ctx, withHooks(objects(t, ns, webApp("app:1", ""))), opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || p.DryRuns != 0 {
		t.Errorf("after the rollback, v1 plans %s with %d dry runs; want no change", p.Summary(), p.DryRuns)
	}
	p, err = m.Plan(ctx, withHooks(objects(t, ns, webApp("app:2", ""))), opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]apply.ChangeType{webID.String(): apply.ChangeUpdate}, changes(p)); diff != "" {
		t.Errorf("v2 after the rollback (-want +got):\n%s", diff)
	}
}

// TestRollbackNeedsWait is refused before the plan reads anything, so it
// needs no control plane: the manager points at an address nothing
// listens on.
func TestRollbackNeedsWait(t *testing.T) {
	m, err := apply.New(&rest.Config{Host: "https://127.0.0.1:1"}, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Plan(context.Background(), &object.Set{}, apply.PlanOptions{App: "x", RollbackOnFailure: true})
	if err == nil || !strings.Contains(err.Error(), "needs wait") {
		t.Errorf("error = %v, want rollback without wait refused", err)
	}
}

// TestHelmChartHooks renders a chart whose migration is a helm.sh/hook Job
// and applies it as deliver does.
func TestHelmChartHooks(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	var r render.Renderer
	renderChart := func(image string) *object.Set {
		t.Helper()
		set, err := r.Render(ctx, render.Options{Root: "testdata", App: ns, Namespace: ns, Sources: []render.Source{{
			Helm: &render.HelmOptions{Chart: "charts/migrate", Values: map[string]any{"image": image}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	opts := apply.PlanOptions{App: ns, Wait: true}
	rep, err := m.Apply(ctx, renderChart("app:1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range rep.Results {
		order = append(order, string(r.Action)+" "+r.ID.Kind+"/"+r.ID.Name)
	}
	want := []string{"created ConfigMap/" + ns + "-config", "hook-ran Job/" + ns + "-migrate", "created Deployment/" + ns + "-web", "hook-ran Job/" + ns + "-smoke"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("report order (-want +got):\n%s", diff)
	}
	cs := env.Client()
	job, err := cs.BatchV1().Jobs(ns).Get(ctx, ns+"-migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, ns+"-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status.Succeeded != 1 || job.Status.CompletionTime == nil || dep.CreationTimestamp.Before(job.Status.CompletionTime) {
		t.Errorf("the migration did not end before the Deployment was created: job done %v, deployment %v", job.Status.CompletionTime, dep.CreationTimestamp)
	}
	// hook-succeeded deletes the smoke test; a helm test hook is never applied.
	if _, err := cs.BatchV1().Jobs(ns).Get(ctx, ns+"-smoke", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("smoke Job not deleted after success: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, ns+"-test", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("helm test Pod applied: %v", err)
	}

	// The same chart again: nothing runs.
	rep, err = m.Apply(ctx, renderChart("app:1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.Count(apply.HookRan); n != 0 {
		t.Errorf("%d hooks ran on an unchanged chart: %+v", n, rep.Results)
	}
	again, err := cs.BatchV1().Jobs(ns).Get(ctx, ns+"-migrate", metav1.GetOptions{})
	if err != nil || again.UID != job.UID {
		t.Errorf("migration Job replaced on an unchanged chart: %v", err)
	}

	// A new image is an upgrade: the migration runs again, before the rollout.
	p, err := m.Plan(ctx, renderChart("app:2"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{ns + "-migrate": "spec or referenced config changed", ns + "-smoke": "unchanged since its last successful run"}, hookRuns(p)); diff != "" {
		t.Errorf("hook plan (-want +got):\n%s", diff)
	}
	if _, err := m.Execute(ctx, p); err != nil {
		t.Fatal(err)
	}
	again, err = cs.BatchV1().Jobs(ns).Get(ctx, ns+"-migrate", metav1.GetOptions{})
	if err != nil || again.UID == job.UID || again.Spec.Template.Spec.Containers[0].Image != "app:2" {
		t.Errorf("migration Job not re-run for app:2: %v", err)
	}
}

// workers is two Deployments, web and worker, the worker annotated with
// ANN, and a migration hook; all three run IMAGE.
func workers(image, ann string) string {
	var docs []string
	for _, name := range []string{"web", "worker"} {
		a := "{}"
		if name == "worker" {
			a = ann
		}
		docs = append(docs, strings.NewReplacer("NAME", name, "IMAGE", image, "ANN", a).Replace(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME, namespace: NS, annotations: ANN}
spec:
  replicas: 2
  selector:
    matchLabels: {app: NAME}
  template:
    metadata:
      labels: {app: NAME}
    spec:
      containers:
      - name: NAME
        image: IMAGE
`))
	}
	docs = append(docs, strings.ReplaceAll(`
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: NS, annotations: {deliver.dev/hook: pre-apply}}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: migrate}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: IMAGE, command: [rake, db:migrate]}]
`, "IMAGE", image))
	return strings.Join(docs, "\n---\n")
}

// TestStrategyAnnotationPerWorkload rolls the app but recreates the worker
// annotated so: while the migration runs, no worker Pod exists and the old
// web Pods still serve.
func TestStrategyAnnotationPerWorkload(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Wait: true, Strategy: apply.Rolling}
	recreate := `{deliver.dev/strategy: recreate}`
	if _, err := m.Apply(ctx, withHooks(objects(t, ns, workers("app:1", recreate))), opts); err != nil {
		t.Fatal(err)
	}
	var (
		during = map[string]int{} // the fewest Pods of each app seen while the migration ran
		sawMig bool
	)
	stop := watchPods(t, ns, func(n map[string]int) {
		if n["migrate"] == 0 {
			return
		}
		if !sawMig {
			sawMig = true
			during["web"], during["worker"] = n["web"], n["worker"]
		}
		// The worker must stay gone, the web may not.
		during["web"] = min(during["web"], n["web"])
		during["worker"] = max(during["worker"], n["worker"])
	})
	p, err := m.Plan(ctx, withHooks(objects(t, ns, workers("app:2", recreate))), opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]object.ID{{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "worker"}}, p.ScaleDown); diff != "" {
		t.Errorf("scale-down plan (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	_ = p.WriteDiff(&out, apply.DiffOptions{})
	order := "order: scale to 0 and wait for the Pods to stop: Deployment/" + ns + "/worker, then run pre-apply hooks Job/" + ns + "/migrate (weight 0), then apply 2 objects (workloads and the rest), then wait until ready\n"
	if !strings.Contains(out.String(), order) {
		t.Errorf("diff lacks %q:\n%s", order, out.String())
	}
	rep, err := m.Execute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if !sawMig || during["worker"] != 0 || during["web"] != 2 {
		t.Errorf("while the migration ran: saw it %v, at most %d worker Pods (want 0), at least %d web Pods (want 2)", sawMig, during["worker"], during["web"])
	}
	var got []string
	for _, r := range rep.Results {
		got = append(got, string(r.Action)+" "+r.ID.Name)
	}
	if diff := cmp.Diff([]string{"scaled-down worker", "hook-ran migrate", "configured web", "configured worker"}, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{"web": "RollingUpdate", "worker": "Recreate"} {
		dep, err := env.Client().AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(dep.Spec.Strategy.Type); got != want || dep.Status.AvailableReplicas != 2 || dep.Spec.Template.Spec.Containers[0].Image != "app:2" {
			t.Errorf("%s: strategy %s (want %s), available %d, image %s", name, got, want, dep.Status.AvailableReplicas, dep.Spec.Template.Spec.Containers[0].Image)
		}
	}
}

func TestStrategyAnnotationInvalid(t *testing.T) {
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{})
	for ann, want := range map[string]string{
		`{deliver.dev/strategy: recreat}`: `Deployment/` + ns + `/worker (test.yaml#1): deliver.dev/strategy: unknown strategy "recreat"`,
		`{deliver.dev/strategy: ""}`:      `unknown strategy ""`,
	} {
		_, err := m.Plan(context.Background(), withHooks(objects(t, ns, workers("app:1", ann))), apply.PlanOptions{App: ns})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error = %v, want %q", ann, err, want)
		}
	}
	ds := `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: NS, annotations: {deliver.dev/strategy: recreate}}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1}]}
`
	if _, err := m.Plan(context.Background(), objects(t, ns, ds), apply.PlanOptions{App: ns}); err == nil || !strings.Contains(err.Error(), "recreate is not supported for a DaemonSet") {
		t.Errorf("DaemonSet annotated recreate: error = %v", err)
	}
	if _, err := m.Plan(context.Background(), &object.Set{}, apply.PlanOptions{App: ns, Strategy: "blue-green"}); err == nil || !strings.Contains(err.Error(), `unknown strategy "blue-green"`) {
		t.Errorf("app strategy blue-green: error = %v", err)
	}
}
