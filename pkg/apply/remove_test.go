package apply_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestRemoveWaitForTermination: under WaitForTermination a removal ends
// only once its objects are gone. An object a finalizer holds fails the
// removal after the timeout, naming it, and keeps the inventory listing
// it; once the finalizer is released the next removal finds it gone and
// deletes the inventory.
func TestRemoveWaitForTermination(t *testing.T) {
	ctx := context.Background()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: invNS, Timeout: 2 * time.Second})
	opts := apply.PlanOptions{App: ns, DeletionPolicy: apply.DeletionWaitForTermination}
	if _, err := m.Apply(ctx, objects(t, ns, cms("held", "free")), opts); err != nil {
		t.Fatal(err)
	}
	cms := env.Client().CoreV1().ConfigMaps(ns)
	patch := func(finalizers string) {
		t.Helper()
		if _, err := cms.Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":`+finalizers+`}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`["test.deliver.dev/hold"]`)
	t.Cleanup(func() {
		// Released whatever happened, so the namespace can go.
		cms.Patch(context.Background(), "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})

	_, err := m.Remove(ctx, apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap/"+ns+"/held: wait for termination") {
		t.Fatalf("remove with a finalizer held: %v, want the wait for ConfigMap %s/held to fail", err, ns)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Entries) != 1 || inv.Entries[0].Name != "held" || inv.DeletionPolicy != apply.DeletionWaitForTermination {
		t.Fatalf("inventory after the failed removal: %+v, want only held, policy kept", inv.Entries)
	}
	if _, err := cms.Get(ctx, "free", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("free after the removal: %v, want gone", err)
	}

	patch(`null`)
	if _, err := m.Remove(ctx, apply.PlanOptions{App: ns}); err != nil {
		t.Fatalf("remove once released: %v", err)
	}
	if _, err := cms.Get(ctx, "held", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("held after the removal: %v, want gone", err)
	}
	if _, err := m.Remove(ctx, apply.PlanOptions{App: ns}); err == nil || !strings.Contains(err.Error(), "no inventory") {
		t.Errorf("a second removal: %v, want no inventory", err)
	}
}

// TestParseDeletionPolicy: MirrorPrune (and unset) follow prune, the
// others stand, anything else is an error.
func TestParseDeletionPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		prune bool
		want  apply.DeletionPolicy
	}{
		{"", true, apply.DeletionDelete},
		{"", false, apply.DeletionOrphan},
		{"MirrorPrune", true, apply.DeletionDelete},
		{"MirrorPrune", false, apply.DeletionOrphan},
		{"Delete", false, apply.DeletionDelete},
		{"WaitForTermination", false, apply.DeletionWaitForTermination},
		{"Orphan", true, apply.DeletionOrphan},
	} {
		if got, err := apply.ParseDeletionPolicy(tc.in, tc.prune); err != nil || got != tc.want {
			t.Errorf("ParseDeletionPolicy(%q, %v) = %q, %v; want %q", tc.in, tc.prune, got, err, tc.want)
		}
	}
	if _, err := apply.ParseDeletionPolicy("orphan", true); err == nil || !strings.Contains(err.Error(), `unknown deletionPolicy "orphan"`) {
		t.Errorf("lower-case orphan: %v, want an error", err)
	}
	for in, ok := range map[string]bool{"": true, "Delete": true, "WaitForTermination": true, "Orphan": true, "MirrorPrune": false, "delete": false} {
		got, err := apply.ParseRemovePolicy(in)
		if (err == nil) != ok || ok && string(got) != in {
			t.Errorf("ParseRemovePolicy(%q) = %q, %v; want ok %v", in, got, err, ok)
		}
	}
}
