package apply

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/object"
)

// TestStatusWatcherRefCount checks the bookkeeping of the shared watches
// without a cluster (the tests in watch_test.go do it against one): waits
// on one (resource, namespace) share a watch, objects labelled with
// LabelApp and not get separate ones, an event reaches only the waiters
// of its object, a watch outlives its last waiter for the grace period
// and is reused within it, and stops after it.
func TestStatusWatcherRefCount(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(gvk, meta.RESTScopeNamespace)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "WidgetList"})
	w := newStatusWatcher(dyn, mapper)
	w.grace = time.Hour

	widget := func(ns, name string, labelled bool) *object.Object {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		u.SetNamespace(ns)
		u.SetName(name)
		if labelled {
			u.SetLabels(map[string]string{LabelApp: "a"})
		}
		return &object.Object{Unstructured: u}
	}
	a, err := w.watch([]*object.Object{widget("ns1", "a", true), widget("ns2", "a", true)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.watch([]*object.Object{widget("ns1", "b", true), widget("ns1", "c", false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// ns1 labelled (a and b), ns2 labelled (a), ns1 unlabelled (b).
	if n, refs := w.count(), w.refs(); n != 3 || refs != 4 {
		t.Fatalf("watches = %d, refs = %d; want 3 and 4", n, refs)
	}
	for _, wt := range []*waiter{a, b} {
		if got := len(wt.takeDirty()); got != 2 {
			t.Fatalf("a new waiter has %d objects to look at, want all 2", got)
		}
	}

	created := widget("ns1", "b", true)
	if _, err := dyn.Resource(gvr).Namespace("ns1").Create(context.Background(), created.Unstructured, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.changed:
	case <-time.After(time.Minute):
		t.Fatal("the waiter of ns1/b was not woken by its creation")
	}
	id := created.ID()
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		st, _, _, _, err := b.status(context.Background(), id, false, nil)
		return st == status.CurrentStatus, err
	})
	if err != nil {
		t.Fatalf("ns1/b without status is not Current: %v", err)
	}
	if dirty := a.takeDirty(); len(dirty) != 0 {
		t.Errorf("the waiter of ns1/a and ns2/a was told of %v", dirty)
	}

	a.stop()
	if n, refs := w.count(), w.refs(); n != 3 || refs != 2 {
		t.Fatalf("after one waiter left: watches = %d, refs = %d; want 3 (ns2 idle) and 2", n, refs)
	}
	reused := w.watches[watchKey{gvr: gvr, namespace: "ns2", labelled: true}]
	c, err := w.watch([]*object.Object{widget("ns2", "z", true)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.subs[0].sw != reused {
		t.Error("a wait within the grace period started a new watch instead of reusing the idle one")
	}
	c.stop()
	b.stop()
	w.mu.Lock()
	w.grace = time.Millisecond
	w.mu.Unlock()
	// The hour-long timers armed before are still running: stopIdle ends
	// those; a watch released with the short grace ends by itself.
	w.stopIdle()
	if n := w.count(); n != 0 {
		t.Fatalf("stopIdle left %d watches", n)
	}
	d, err := w.watch([]*object.Object{widget("ns3", "d", true)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.stop()
	err = wait.PollUntilContextTimeout(context.Background(), time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return w.count() == 0, nil
	})
	if err != nil {
		t.Fatalf("the watch did not stop after its grace period: %d left", w.count())
	}
	if _, err := w.watch([]*object.Object{{Unstructured: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": map[string]any{"name": "g", "namespace": "ns1"},
	}}}}, nil); err == nil || w.count() != 0 {
		t.Errorf("a kind the mapper does not know: err = %v, watches = %d; want an error and none", err, w.count())
	}
}

// TestAtFloor covers when a wait that knows the resourceVersion of its own
// write may judge a watch's cached object without listing it: a cache
// older than the write is stale (a reused watch may still hold the
// Deployment ready with the old template), an absent object counts as
// deleted only once the synced watch has seen past the write.
func TestAtFloor(t *testing.T) {
	obj := func(rv string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetResourceVersion(rv)
		return u
	}
	for _, tc := range []struct {
		name     string
		cached   *unstructured.Unstructured
		floor    string
		synced   bool
		lastSync string
		want     bool
	}{
		{"cached at the floor", obj("7"), "7", true, "7", true},
		{"cached newer", obj("9"), "7", false, "", true},
		{"cached older, watch behind", obj("5"), "7", true, "6", false},
		{"cached older, watch not synced", obj("5"), "7", false, "", false},
		{"absent, watch not synced", nil, "7", false, "", false},
		{"absent, watch behind", nil, "7", true, "6", false},
		{"absent, watch past the floor: deleted", nil, "7", true, "8", true},
		// The reflector's last version runs ahead of the store: the
		// store may not hold the write yet (TestStrategyAnnotationPerWorkload
		// once saw a recreated Deployment judged ready at its scaled-down
		// version).
		{"cached older, watch past the floor: store behind", obj("5"), "7", true, "8", false},
		{"versions not integers: trusted", obj("a"), "b", false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := atFloor(tc.cached, tc.floor, tc.synced, tc.lastSync); got != tc.want {
				t.Errorf("atFloor = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSettled: the objects whose wait needs no watch: of the kinds whose
// readiness no controller decides, and known not to be deleted (kstatus
// says Terminating) by the run's write, else the plan's read.
func TestSettled(t *testing.T) {
	now := metav1.Now()
	alive, deleting := &metav1.PartialObjectMetadata{}, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}
	liveDeleting := &unstructured.Unstructured{Object: map[string]any{}}
	liveDeleting.SetDeletionTimestamp(&now)
	cm := schema.GroupKind{Kind: "ConfigMap"}
	tests := []struct {
		name    string
		gk      schema.GroupKind
		written metav1.Object
		live    *unstructured.Unstructured
		listed  bool
		want    bool
	}{
		{name: "ConfigMap written", gk: cm, written: alive, want: true},
		{name: "Secret written", gk: schema.GroupKind{Kind: "Secret"}, written: alive, want: true},
		{name: "ServiceAccount written", gk: schema.GroupKind{Kind: "ServiceAccount"}, written: alive, want: true},
		{name: "Service written", gk: schema.GroupKind{Kind: "Service"}, written: alive, want: true},
		{name: "ClusterRoleBinding written", gk: schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}, written: alive, want: true},
		{name: "Ingress written", gk: schema.GroupKind{Group: "networking.k8s.io", Kind: "Ingress"}, written: alive, want: true},
		{name: "written while being deleted", gk: cm, written: deleting, listed: true, want: false},
		{name: "unchanged, read whole", gk: cm, live: &unstructured.Unstructured{Object: map[string]any{}}, want: true},
		{name: "unchanged, read whole while being deleted", gk: cm, live: liveDeleting, listed: true, want: false},
		{name: "unchanged, listed", gk: cm, listed: true, want: true},
		{name: "neither written nor listed", gk: cm, want: false},
		{name: "Deployment", gk: schema.GroupKind{Group: "apps", Kind: "Deployment"}, written: alive, want: false},
		{name: "Job", gk: schema.GroupKind{Group: "batch", Kind: "Job"}, written: alive, want: false},
		{name: "PersistentVolumeClaim", gk: schema.GroupKind{Kind: "PersistentVolumeClaim"}, written: alive, want: false},
		{name: "Pod", gk: schema.GroupKind{Kind: "Pod"}, written: alive, want: false},
		{name: "PodDisruptionBudget", gk: schema.GroupKind{Group: "policy", Kind: "PodDisruptionBudget"}, written: alive, want: false},
		{name: "HorizontalPodAutoscaler", gk: schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}, written: alive, want: false},
		{name: "CustomResourceDefinition", gk: schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}, written: alive, want: false},
		// A custom kind named like a built-in one is not that kind.
		{name: "custom ConfigMap", gk: schema.GroupKind{Group: "example.com", Kind: "ConfigMap"}, written: alive, want: false},
	}
	for _, tt := range tests {
		c := &Change{ID: object.ID{Group: tt.gk.Group, Kind: tt.gk.Kind, Name: "x"}, Live: tt.live, listed: tt.listed}
		if got := settled(c, tt.written); got != tt.want {
			t.Errorf("%s: settled = %v, want %v", tt.name, got, tt.want)
		}
	}
}
