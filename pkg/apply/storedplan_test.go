package apply_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
)

// storedPlan reads app's stored plan, failing the test when it cannot.
func storedPlan(t *testing.T, m *apply.Manager, app string) *apply.StoredPlan {
	t.Helper()
	_, sp, err := m.ReadInventoryPlan(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestStoredPlan: against the real API server, a run that changes the
// app stores its plan in the inventory Secret (diffs masked and redacted
// with the manager's Redact, revision, time, result, counts); a second,
// bigger change replaces it; a run that changes nothing keeps it; the
// inventory reads as before; and storing it costs no request beyond the
// inventory writes the run makes anyway (counted at the transport).
func TestStoredPlan(t *testing.T) {
	ctx := context.Background()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	const canary = "canary-d41d8cd98f00b204"
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	// Every write to the inventory namespace's Secrets is counted.
	var writes atomic.Int32
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet && strings.Contains(req.URL.Path, "/namespaces/"+invNS+"/secrets") {
				writes.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	m, err := apply.New(cfg, apply.Options{InventoryNamespace: invNS, Timeout: time.Minute, Redact: func(s string) string { return strings.ReplaceAll(s, canary, "[redacted]") }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { apply.StopIdleWatches(m) })
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: NS}\nstringData: {password: VALUE}\n"

	// A first run: two ConfigMaps (one quoting the canary) and a Secret.
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=one", "b="+canary)+"\n---\n"+strings.Replace(secret, "VALUE", "hunter2-"+canary, 1)), apply.PlanOptions{App: ns, Revision: "r1"}); err != nil {
		t.Fatal(err)
	}
	sp := storedPlan(t, m, ns)
	if sp == nil {
		t.Fatal("no plan stored after a run that created three objects")
	}
	if sp.Revision != "r1" || sp.Result != apply.ResultSucceeded || sp.Create != 3 || sp.Update != 0 || len(sp.Diffs) != 3 || sp.Omitted != 0 || sp.Time.IsZero() {
		t.Errorf("stored plan: revision %q, result %q, %d created, %d changed, %d diffs, %d omitted, at %s", sp.Revision, sp.Result, sp.Create, sp.Update, len(sp.Diffs), sp.Omitted, sp.Time)
	}
	if sp.Summary != "3 to create, 0 to change, 0 to delete, 0 unchanged" {
		t.Errorf("summary %q", sp.Summary)
	}
	all := fmt.Sprintf("%+v", sp)
	if strings.Contains(all, canary) || strings.Contains(all, "hunter2") {
		t.Errorf("the stored plan holds a secret value:\n%s", all)
	}
	if !strings.Contains(all, "[redacted]") || !strings.Contains(all, "Secret/"+ns+"/creds") {
		t.Errorf("the stored plan does not show the redacted ConfigMap and the masked Secret: the check proves nothing:\n%s", all)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil || len(inv.Entries) != 3 || inv.Revision != "r1" {
		t.Fatalf("inventory beside the plan: %+v, %v", inv, err)
	}
	first := sp.Time

	// A second, bigger change replaces it, in the two writes a run
	// that creates objects makes anyway (before and after).
	writes.Store(0)
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=two", "b="+canary, "c=3", "d=4")+"\n---\n"+strings.Replace(secret, "VALUE", "rotated-"+canary, 1)), apply.PlanOptions{App: ns, Revision: "r2"}); err != nil {
		t.Fatal(err)
	}
	sp = storedPlan(t, m, ns)
	if sp == nil || sp.Revision != "r2" || sp.Create != 2 || sp.Update != 2 || sp.Unchanged != 1 || len(sp.Diffs) != 4 || !sp.Time.After(first) {
		t.Fatalf("stored plan after a second change: %+v", sp)
	}
	if n := writes.Load(); n != 2 {
		t.Errorf("a run that creates objects wrote the inventory Secret %d times, want 2", n)
	}
	for _, d := range sp.Diffs {
		if d.ID.Name == "creds" && (!strings.Contains(d.Text, "*** (after)") || d.Type != apply.ChangeUpdate) {
			t.Errorf("the Secret's stored diff does not show its value masked as changed:\n%s", d.Text)
		}
	}
	if strings.Contains(fmt.Sprintf("%+v", sp), "rotated") {
		t.Errorf("the stored plan holds the rotated value")
	}

	// A run that changes nothing leaves the last change's plan.
	rep, err := m.Apply(ctx, objects(t, ns, cms("a=two", "b="+canary, "c=3", "d=4")+"\n---\n"+strings.Replace(secret, "VALUE", "rotated-"+canary, 1)), apply.PlanOptions{App: ns, Revision: "r3"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Plan.HasChanges() {
		t.Fatalf("the third run changes something: %s", rep.Plan.Summary())
	}
	if sp = storedPlan(t, m, ns); sp == nil || sp.Revision != "r2" {
		t.Errorf("after a run that changed nothing, the stored plan is %+v; want r2's", sp)
	}
	if inv, err := m.ReadInventory(ctx, ns); err != nil || inv.Revision != "r3" {
		t.Errorf("inventory after the third run: %+v, %v", inv, err)
	}

	// A run that only updates writes the inventory once, at its end, and
	// the plan with it.
	writes.Store(0)
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=four", "b="+canary, "c=3", "d=4")+"\n---\n"+strings.Replace(secret, "VALUE", "rotated-"+canary, 1)), apply.PlanOptions{App: ns, Revision: "r4"}); err != nil {
		t.Fatal(err)
	}
	if sp = storedPlan(t, m, ns); sp == nil || sp.Revision != "r4" || sp.Update != 1 || len(sp.Diffs) != 1 || !strings.Contains(sp.Diffs[0].Text, "+  k: four") {
		t.Errorf("after an update of one object, the stored plan is %+v", sp)
	}
	if n := writes.Load(); n != 1 {
		t.Errorf("a run that only updates wrote the inventory Secret %d times, want 1", n)
	}
}

// TestStoredPlanBounded: a plan whose diffs are far more than 64 KiB is
// stored cut, with the count of objects left out, and the inventory
// Secret stays valid and readable with every object in its inventory.
func TestStoredPlanBounded(t *testing.T) {
	ctx := context.Background()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: invNS})
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("big%02d=%s", i, strings.Repeat(fmt.Sprintf("%02d", i), 2000))) // 4 KB each
	}
	if _, err := m.Apply(ctx, objects(t, ns, cms(names...)), apply.PlanOptions{App: ns, Revision: "r1"}); err != nil {
		t.Fatal(err)
	}
	inv, sp, err := m.ReadInventoryPlan(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Entries) != 60 {
		t.Errorf("inventory of %d objects, want 60", len(inv.Entries))
	}
	if sp == nil || sp.Create != 60 {
		t.Fatalf("stored plan %+v", sp)
	}
	total := 0
	for _, d := range sp.Diffs {
		total += len(d.Text)
	}
	if total > apply.MaxPlanDiffBytes || len(sp.Diffs) < 10 {
		t.Errorf("stored %d diffs of %d bytes in all; want some, within %d", len(sp.Diffs), total, apply.MaxPlanDiffBytes)
	}
	if len(sp.Diffs)+sp.Omitted != 60 || sp.Omitted == 0 {
		t.Errorf("%d diffs kept and %d left out, of 60", len(sp.Diffs), sp.Omitted)
	}
	if note := sp.Note(); !strings.Contains(note, fmt.Sprintf("%d more objects changed", sp.Omitted)) {
		t.Errorf("note %q", note)
	}
	s, err := env.Client().CoreV1().Secrets(invNS).Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, v := range s.Data {
		size += len(v)
	}
	if size > 200<<10 || len(s.Data["plan.json.gz"]) == 0 {
		t.Errorf("inventory Secret holds %d bytes (plan %d): the plan is not bounded", size, len(s.Data["plan.json.gz"]))
	}
}

// TestStoredPlanOlderInventory: an inventory written before plans were
// stored (no plan key) reads with no plan and no error, and the next run
// that changes the app adds one beside it.
func TestStoredPlanOlderInventory(t *testing.T) {
	ctx := context.Background()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: invNS})
	if _, err := m.Apply(ctx, objects(t, ns, cms("a")), apply.PlanOptions{App: ns, Revision: "r1"}); err != nil {
		t.Fatal(err)
	}
	// As an older deliver left it: the plan key removed.
	s, err := env.Client().CoreV1().Secrets(invNS).Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Data["plan.json.gz"]; !ok {
		t.Fatalf("no plan key after a run: keys %v", keys(s.Data))
	}
	delete(s.Data, "plan.json.gz")
	if _, err := env.Client().CoreV1().Secrets(invNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	inv, sp, err := m.ReadInventoryPlan(ctx, ns)
	if err != nil || sp != nil || inv.Revision != "r1" || len(inv.Entries) != 1 {
		t.Fatalf("older inventory: %+v, plan %+v, %v", inv, sp, err)
	}
	if _, sp, err := m.ReadInventoryPlan(ctx, "no-such-app"); err != nil || sp != nil {
		t.Errorf("an app without inventory: plan %+v, %v", sp, err)
	}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a", "b")), apply.PlanOptions{App: ns, Revision: "r2"}); err != nil {
		t.Fatal(err)
	}
	if sp := storedPlan(t, m, ns); sp == nil || sp.Revision != "r2" || sp.Create != 1 {
		t.Errorf("plan after the next run: %+v", sp)
	}
}
