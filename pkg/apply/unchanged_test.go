package apply_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestPlanUnchanged: a successful run records its inputs in the inventory;
// PlanUnchanged then plans the app from the inventory and one LIST per
// kind, every object unchanged and no dry run, as long as the inputs are
// the same and the objects are as the run left them. A different digest,
// an object edited or deleted in the cluster, a last run that failed, or a
// full dry run give no plan (the caller renders).
func TestPlanUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	invNS := env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: invNS})
	in := &apply.Inputs{Digest: "sha256:one", Paths: []string{"f:app/cm.yaml"}}
	same := func(got *apply.Inputs) bool { return got.Digest == in.Digest }
	other := func(*apply.Inputs) bool { return false }
	po := apply.PlanOptions{App: ns, Revision: "r1", Inputs: in}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "b=2")), po); err != nil {
		t.Fatal(err)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Inputs == nil || inv.Inputs.Digest != in.Digest || len(inv.Inputs.Paths) != 1 {
		t.Fatalf("inventory inputs = %+v, want %+v", inv.Inputs, in)
	}

	check := func(what string, opts apply.PlanOptions, s func(*apply.Inputs) bool, want bool) {
		t.Helper()
		p, err := m.PlanUnchanged(ctx, opts, s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch {
		case !want && p != nil:
			t.Errorf("%s: a plan %s, want none", what, p.Summary())
		case want && p == nil:
			t.Errorf("%s: no plan, want one", what)
		case want && (p.HasChanges() || p.DryRuns != 0 || len(p.Changes) != 2):
			t.Errorf("%s: plan %s with %d dry runs, want 2 unchanged and none", what, p.Summary(), p.DryRuns)
		}
	}
	check("same inputs", apply.PlanOptions{App: ns}, same, true)
	check("other inputs", apply.PlanOptions{App: ns}, other, false)
	check("full dry run", apply.PlanOptions{App: ns, FullDryRun: true}, same, false)

	// An edit in the cluster.
	_, err = env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "a", types.MergePatchType, []byte(`{"data":{"k":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	check("object edited", apply.PlanOptions{App: ns}, same, false)
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "b=2")), po); err != nil {
		t.Fatal(err)
	}
	check("edit reverted", apply.PlanOptions{App: ns}, same, true)

	// A deleted object.
	if err := env.Client().CoreV1().ConfigMaps(ns).Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("object deleted", apply.PlanOptions{App: ns}, same, false)

	// A run that fails after writing (a Pod that never becomes ready,
	// waited for) records no inputs.
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "b=2")), po); err != nil {
		t.Fatal(err)
	}
	check("object restored", apply.PlanOptions{App: ns}, same, true)
	short := newManager(t, apply.Options{InventoryNamespace: invNS, Timeout: 2 * time.Second})
	waited := po
	waited.Wait = true
	never := cms("a=1", "b=2") + "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: NS, labels: {" + testenv.NeverReadyLabel + ": \"true\"}}\nspec: {containers: [{name: c, image: app}]}\n"
	if _, err := short.Apply(ctx, objects(t, ns, never), waited); err == nil {
		t.Fatal("apply waiting for a Pod that is never ready succeeded")
	}
	if inv, err = m.ReadInventory(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if inv.Result != apply.ResultFailed || inv.Inputs != nil {
		t.Errorf("inventory of a failed run: result %s, inputs %+v; want failed, none", inv.Result, inv.Inputs)
	}
	check("last run failed", apply.PlanOptions{App: ns}, same, false)
}
