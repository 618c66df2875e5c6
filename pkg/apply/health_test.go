package apply_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// widgetWithCRD is testenv.StatusWidgetCRD and the Widget w of spec.size size.
func widgetWithCRD(group, size string) string {
	return "\n" + testenv.StatusWidgetCRD(group) + `---
apiVersion: ` + group + `/v1
kind: Widget
metadata: {name: w, namespace: NS}
spec: {size: ` + size + `}`
}

// widgetRules are the health checks of the tests: a phase written by the
// "operator" (the test) says Progressing, Failed or Ready.
func widgetRules(t *testing.T, group string) *health.Rules {
	t.Helper()
	phase := "has(self.status) && has(self.status.phase) && self.status.phase == "
	rules, err := health.Compile("healthChecks", []health.Check{{
		APIVersion: group + "/v1", Kind: "Widget",
		InProgress: phase + "'Progressing'",
		Failed:     phase + "'Failed'",
		Current:    phase + "'Ready'",
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// healthGroup is a CRD group of the test's own.
func healthGroup(ns string) string { return strings.ReplaceAll(ns, "-", "") + ".example.com" }

// setPhase writes the Widget's status.phase as its operator would, once
// the Widget exists at generation gen.
func setPhase(t *testing.T, group, ns, name string, gen int64, phase string) {
	t.Helper()
	env.SetStatus(t, schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}, ns, name, gen, map[string]any{"phase": phase})
}

// verdicts collects a wait's health check verdicts.
type verdicts struct {
	mu   sync.Mutex
	seen []health.Verdict
	ch   chan struct{}
}

func newVerdicts() *verdicts { return &verdicts{ch: make(chan struct{}, 1)} }

func (v *verdicts) add(_ object.ID, hv health.Verdict) {
	v.mu.Lock()
	v.seen = append(v.seen, hv)
	v.mu.Unlock()
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

// await returns once the wait reached a verdict that ok accepts.
func (v *verdicts) await(t *testing.T, what string, ok func(health.Verdict) bool) health.Verdict {
	t.Helper()
	timeout := time.After(time.Minute)
	for i := 0; ; {
		v.mu.Lock()
		for ; i < len(v.seen); i++ {
			if ok(v.seen[i]) {
				hv := v.seen[i]
				v.mu.Unlock()
				return hv
			}
		}
		v.mu.Unlock()
		select {
		case <-v.ch:
		case <-timeout:
			t.Fatalf("the wait never reached a verdict %s; saw %+v", what, v.seen)
		}
	}
}

// TestHealthCheckWaitFollowsExpressions: the wait judges a custom resource
// by its rule as the test moves its status from none to Progressing to
// Ready, and finishes only at Ready; a ConfigMap in the same wait, of a
// kind without a rule, is judged by kstatus (Current at once).
func TestHealthCheckWaitFollowsExpressions(t *testing.T) {
	ns := env.Namespace(t)
	group := healthGroup(ns)
	ctx := context.Background()
	m := newManager(t, apply.Options{Health: widgetRules(t, group), Timeout: 2 * time.Minute})
	set := objects(t, ns, widgetWithCRD(group, "1")+`
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: NS}
data: {a: b}
`)
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	vs := newVerdicts()
	done := make(chan error, 1)
	go func() { done <- apply.WaitVerdicts(ctx, m, set.Objects[1:], vs.add) }()

	first := vs.await(t, "on the widget without status", func(health.Verdict) bool { return true })
	if first.Status != status.InProgressStatus || first.Field != "" || !strings.Contains(first.Message, "no expression is true") {
		t.Errorf("first verdict = %+v, want in progress with no expression true", first)
	}
	setPhase(t, group, ns, "w", 1, "Progressing")
	vs.await(t, "by inProgress", func(v health.Verdict) bool {
		return v.Status == status.InProgressStatus && v.Field == health.FieldInProgress
	})
	select {
	case err := <-done:
		t.Fatalf("the wait ended (%v) while the widget was progressing", err)
	default:
	}
	setPhase(t, group, ns, "w", 1, "Ready")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the wait did not end once the widget was ready")
	}
	last := vs.await(t, "by current", func(v health.Verdict) bool { return v.Status == status.CurrentStatus })
	if last.Field != health.FieldCurrent || !strings.Contains(last.Message, "current `") {
		t.Errorf("last verdict = %+v, want current decided by the current expression", last)
	}
}

// TestHealthCheckFailedStopsRun: revision v2 of an app changes a Widget,
// a Deployment and drops a ConfigMap; the operator (the test) reports the
// Widget Failed. The run stops at once (not at the timeout) with the
// object and the expression in its error; the post-apply hook does not
// run, nothing is pruned, the Deployment is rolled back to v1
// (rollbackOnFailure), and the inventory keeps v1's workloads as the last
// success.
func TestHealthCheckFailedStopsRun(t *testing.T) {
	ns := env.Namespace(t)
	group := healthGroup(ns)
	ctx := context.Background()
	const timeout = 3 * time.Minute
	m := newManager(t, apply.Options{Health: widgetRules(t, group), Timeout: timeout})
	manifest := func(size, image, extra string) *object.Set {
		return withHooks(objects(t, ns, widgetWithCRD(group, size)+strings.ReplaceAll(`
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: IMAGE}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: smoke, namespace: NS, annotations: {deliver.dev/hook: post-apply}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: smoke, image: IMAGE}] # the version under test: it runs again for v2
`+extra, "IMAGE", image)))
	}
	opts := apply.PlanOptions{App: ns, Revision: "v1", Wait: true, RollbackOnFailure: true}
	v1done := make(chan error, 1)
	go func() {
		_, err := m.Apply(ctx, manifest("1", "app:1", "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: old, namespace: NS}\n"), opts)
		v1done <- err
	}()
	setPhase(t, group, ns, "w", 1, "Ready")
	if err := <-v1done; err != nil {
		t.Fatalf("v1: %v", err)
	}

	opts.Revision = "v2"
	p, err := m.Plan(ctx, manifest("2", "app:2", ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Hooks) != 1 || !p.Hooks[0].Run {
		t.Fatalf("v2 plans hooks %+v, want the smoke test to run", p.Hooks)
	}
	type outcome struct {
		rep *apply.Report
		err error
	}
	v2done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		rep, err := m.Execute(ctx, p)
		v2done <- outcome{rep, err}
	}()
	// The Widget's Ready status is of generation 1: stale for v2's spec.
	setPhase(t, group, ns, "w", 2, "Failed")
	// The rollback re-applies v1's Widget (generation 3), which its
	// operator finds ready again.
	setPhase(t, group, ns, "w", 3, "Ready")
	out := <-v2done
	elapsed := time.Since(start)
	failed := "has(self.status) && has(self.status.phase) && self.status.phase == 'Failed'"
	for _, want := range []string{"Widget/" + ns + "/w: wait: failed: health check failed `" + failed + "` is true",
		"rolled back ", "Deployment/" + ns + "/web", "Widget/" + ns + "/w to revision v1"} {
		if out.err == nil || !strings.Contains(out.err.Error(), want) {
			t.Errorf("v2 error = %v, want %q in it", out.err, want)
		}
	}
	if elapsed > timeout/2 {
		t.Errorf("the failed Widget stopped the run after %s (timeout %s): not at once", elapsed, timeout)
	}
	var health []string
	for _, h := range out.rep.Health {
		health = append(health, h.ID.String()+" "+string(h.Status)+" "+string(h.Field))
	}
	if want := "Widget/" + ns + "/w Failed failed"; len(health) == 0 || health[0] != want {
		t.Errorf("report health = %q, want %q first", health, want)
	}
	for _, r := range out.rep.Results {
		if r.Hook != "" && r.Action == apply.HookRan {
			t.Errorf("hook %s ran after the failed wait", r.ID)
		}
		if r.Action == apply.Deleted {
			t.Errorf("%s pruned after the failed wait", r.ID)
		}
	}
	cs := env.Client()
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "old", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap old, which left git in v2: %v; want it kept (no prune after a failure)", err)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "app:1" {
		t.Errorf("Deployment web runs %s, want app:1 back", img)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}).Namespace(ns).Get(ctx, "w", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 1 {
		t.Errorf("Widget w has size %d, want v1's 1 back: a custom resource a health check failed goes back like a Deployment", size)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for _, w := range inv.Workloads {
		kept[w.Kind] = w.Revision
	}
	if inv.Result != apply.ResultFailed || !strings.Contains(inv.Message, "health check failed `") ||
		len(inv.Workloads) != 2 || kept["Deployment"] != "v1" || kept["Widget"] != "v1" {
		t.Errorf("inventory: result %s (%s), kept %v; want failed naming the expression, with v1's Deployment and Widget kept", inv.Result, inv.Message, kept)
	}
}

// TestHealthCheckTimeoutNamesExpression: at the timeout, a Widget whose
// expression cannot evaluate (a field read without has()) is reported
// with the expression and the evaluation error, and a Deployment in the
// same wait, of a kind without a rule, with kstatus' message.
func TestHealthCheckTimeoutNamesExpression(t *testing.T) {
	ns := env.Namespace(t)
	group := healthGroup(ns)
	ctx := context.Background()
	rules, err := health.Compile("healthChecks", []health.Check{{APIVersion: group + "/v1", Kind: "Widget", Current: "self.status.phase == 'Ready'"}})
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, apply.Options{Health: rules, Timeout: 5 * time.Second})
	manifest := strings.Replace(deployment, "labels: {app: web}\n    spec:", "labels: {app: web, "+testenv.NeverReadyLabel+": \"true\"}\n    spec:", 1)
	set := objects(t, ns, widgetWithCRD(group, "1")+"\n---\n"+manifest)
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	err = m.Wait(ctx, set.Objects[1:])
	for _, want := range []string{
		"not ready after 5s",
		"Widget/" + ns + "/w: InProgress: health check current `self.status.phase == 'Ready'` did not evaluate: no such key: status",
		"Deployment/" + ns + "/web: InProgress: ",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("wait error = %v, want %q in it", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "Deployment/"+ns+"/web: InProgress: health check") {
		t.Errorf("the Deployment was judged by a health check: %v", err)
	}
}
