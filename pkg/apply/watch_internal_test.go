package apply

import (
	"context"
	"math/rand/v2"
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
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/health"
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
	a, err := w.watch([]*object.Object{widget("ns1", "a", true), widget("ns2", "a", true)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.watch([]*object.Object{widget("ns1", "b", true), widget("ns1", "c", false)}, nil, nil)
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
	c, err := w.watch([]*object.Object{widget("ns2", "z", true)}, nil, nil)
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
	d, err := w.watch([]*object.Object{widget("ns3", "d", true)}, nil, nil)
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
	}}}}, nil, nil); err == nil || w.count() != 0 {
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

// TestSlimSameVerdict is a differential test of slim against kstatus (and
// deliver's Job and hook Pod rules): over a corpus generated from the
// fields status.Compute and the controllers write, of every kind kstatus
// has a rule for and of a custom kind, the verdict and message on the
// slim object are those on the whole one. And slim does cut: no pod
// template, no data, no annotations are left.
func TestSlimSameVerdict(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	pick := func(vs ...any) any { return vs[rng.IntN(len(vs))] }
	// set puts v at path unless v is nil (the field left out).
	set := func(obj map[string]any, v any, path ...string) {
		if v == nil {
			return
		}
		_ = unstructured.SetNestedField(obj, runtime.DeepCopyJSONValue(v), path...)
	}
	count := func() any { return pick(nil, int64(0), int64(1), int64(2), int64(3)) }
	conditions := func(types ...[3]string) any {
		var out []any
		for _, c := range types {
			if rng.IntN(2) == 0 {
				out = append(out, map[string]any{"type": c[0], "status": c[1], "reason": c[2], "message": c[0] + " is " + c[1]})
			}
		}
		if out == nil {
			return nil
		}
		return out
	}
	generic := [][3]string{{"Ready", "True", "Done"}, {"Ready", "False", "Waiting"}, {"Reconciling", "True", "Working"}, {"Stalled", "True", "Stuck"}}
	template := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "web", "image": "registry.example/web:1.0", "env": []any{map[string]any{"name": "A", "value": "b"}}}}}}
	kinds := []struct {
		apiVersion, kind string
		fill             func(obj map[string]any)
	}{
		{"apps/v1", "Deployment", func(o map[string]any) {
			set(o, count(), "spec", "replicas")
			set(o, pick(nil, int64(600)), "spec", "progressDeadlineSeconds")
			set(o, pick(nil, true), "spec", "paused")
			set(o, template, "spec", "template")
			set(o, pick(nil, map[string]any{"type": "Recreate"}), "spec", "strategy")
			for _, f := range []string{"replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"} {
				set(o, count(), "status", f)
			}
			set(o, conditions([3]string{"Progressing", "True", "NewReplicaSetAvailable"}, [3]string{"Progressing", "False", "ProgressDeadlineExceeded"},
				[3]string{"Available", "True", "MinimumReplicasAvailable"}, [3]string{"Available", "False", "MinimumReplicasUnavailable"}, generic[2]), "status", "conditions")
		}},
		{"apps/v1", "StatefulSet", func(o map[string]any) {
			set(o, count(), "spec", "replicas")
			set(o, pick(nil, map[string]any{"type": "OnDelete"}, map[string]any{"type": "RollingUpdate"},
				map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"partition": pick(int64(0), int64(1), int64(2))}}), "spec", "updateStrategy")
			set(o, template, "spec", "template")
			set(o, pick(nil, []any{map[string]any{"metadata": map[string]any{"name": "data"}}}), "spec", "volumeClaimTemplates")
			for _, f := range []string{"replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"} {
				set(o, count(), "status", f)
			}
			set(o, pick(nil, "web-a", "web-b"), "status", "currentRevision")
			set(o, pick(nil, "web-a", "web-b"), "status", "updateRevision")
		}},
		{"apps/v1", "DaemonSet", func(o map[string]any) {
			set(o, template, "spec", "template")
			for _, f := range []string{"desiredNumberScheduled", "currentNumberScheduled", "updatedNumberScheduled", "numberAvailable", "numberReady", "numberMisscheduled"} {
				set(o, count(), "status", f)
			}
		}},
		{"apps/v1", "ReplicaSet", func(o map[string]any) {
			set(o, count(), "spec", "replicas")
			set(o, template, "spec", "template")
			for _, f := range []string{"replicas", "readyReplicas", "availableReplicas", "fullyLabeledReplicas"} {
				set(o, count(), "status", f)
			}
			set(o, conditions([3]string{"ReplicaFailure", "True", "FailedCreate"}), "status", "conditions")
		}},
		{"batch/v1", "Job", func(o map[string]any) {
			set(o, count(), "spec", "parallelism")
			set(o, count(), "spec", "completions")
			set(o, template, "spec", "template")
			for _, f := range []string{"active", "succeeded", "failed"} {
				set(o, count(), "status", f)
			}
			set(o, pick(nil, "2026-12-06T10:00:00Z"), "status", "startTime")
			set(o, conditions([3]string{"Complete", "True", "Completed"}, [3]string{"Failed", "True", "BackoffLimitExceeded"}, [3]string{"Suspended", "True", "Suspended"}), "status", "conditions")
		}},
		{"v1", "Pod", func(o map[string]any) {
			set(o, template["spec"], "spec")
			set(o, pick(nil, "Never", "OnFailure", "Always"), "spec", "restartPolicy")
			set(o, pick(nil, "Pending", "Running", "Succeeded", "Failed", "Unknown"), "status", "phase")
			set(o, conditions([3]string{"Ready", "True", ""}, [3]string{"Ready", "False", "ContainersNotReady"}, [3]string{"PodScheduled", "False", "Unschedulable"}), "status", "conditions")
			set(o, pick(nil, []any{map[string]any{"name": "web", "state": map[string]any{"waiting": map[string]any{"reason": "CrashLoopBackOff"}}}},
				[]any{map[string]any{"name": "web", "state": map[string]any{"running": map[string]any{}}, "ready": true}}), "status", "containerStatuses")
		}},
		{"v1", "Service", func(o map[string]any) {
			set(o, pick(nil, "ClusterIP", "LoadBalancer", "NodePort", "ExternalName"), "spec", "type")
			set(o, pick(nil, "", "10.0.0.1", "None"), "spec", "clusterIP")
			set(o, []any{map[string]any{"port": int64(80)}}, "spec", "ports")
			set(o, pick(nil, []any{map[string]any{"ip": "192.0.2.1"}}), "status", "loadBalancer", "ingress")
		}},
		{"v1", "PersistentVolumeClaim", func(o map[string]any) {
			set(o, map[string]any{"requests": map[string]any{"storage": "1Gi"}}, "spec", "resources")
			set(o, pick(nil, "Pending", "Bound", "Lost"), "status", "phase")
		}},
		{"policy/v1", "PodDisruptionBudget", func(o map[string]any) {
			set(o, pick(nil, int64(1), "50%"), "spec", "minAvailable")
			for _, f := range []string{"currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed"} {
				set(o, count(), "status", f)
			}
			set(o, conditions([3]string{"DisruptionAllowed", "True", "SufficientPods"}), "status", "conditions")
		}},
		{"apiextensions.k8s.io/v1", "CustomResourceDefinition", func(o map[string]any) {
			set(o, map[string]any{"kind": "Widget", "plural": "widgets"}, "spec", "names")
			set(o, conditions([3]string{"Established", "True", "InitialNamesAccepted"}, [3]string{"Established", "False", "Installing"},
				[3]string{"NamesAccepted", "False", "MultipleNameConflict"}), "status", "conditions")
		}},
		{"batch/v1", "CronJob", func(o map[string]any) { set(o, "*/5 * * * *", "spec", "schedule") }},
		{"v1", "ConfigMap", func(o map[string]any) { set(o, map[string]any{"a": "b"}, "data") }},
		{"v1", "Secret", func(o map[string]any) { set(o, map[string]any{"token": "c2VjcmV0"}, "data") }},
		{"example.com/v1", "Widget", func(o map[string]any) {
			set(o, map[string]any{"size": int64(3), "replicas": int64(2)}, "spec")
			set(o, pick(nil, "Ready", "Progressing"), "status", "phase")
			set(o, conditions(generic...), "status", "conditions")
		}},
	}
	cut := map[string]bool{}
	for i := range 4000 {
		k := kinds[i%len(kinds)]
		obj := map[string]any{"apiVersion": k.apiVersion, "kind": k.kind, "metadata": map[string]any{
			"name": "o", "namespace": "ns", "uid": "u", "resourceVersion": "7",
			"labels":        map[string]any{LabelApp: "shop", "tier": "web"},
			"annotations":   map[string]any{"note": "x"},
			"managedFields": []any{map[string]any{"manager": "deliver", "operation": "Apply"}},
		}}
		set(obj, pick(nil, int64(1), int64(2), int64(3)), "metadata", "generation")
		set(obj, pick(nil, nil, nil, "2026-12-06T10:00:00Z"), "metadata", "deletionTimestamp")
		set(obj, pick(nil, int64(1), int64(2), int64(3)), "status", "observedGeneration")
		k.fill(obj)
		whole := &unstructured.Unstructured{Object: obj}
		slimmed := whole.DeepCopy()
		slim(slimmed)
		for _, finish := range []bool{false, true} {
			ws, wm, werr := liveStatus(whole.DeepCopy(), finish)
			ss, sm, serr := liveStatus(slimmed.DeepCopy(), finish)
			if ws != ss || wm != sm || (werr == nil) != (serr == nil) {
				t.Fatalf("%s (finish %v): whole %s %q %v, slim %s %q %v\nwhole: %v\nslim: %v", k.kind, finish, ws, wm, werr, ss, sm, serr, obj, slimmed.Object)
			}
		}
		if _, ok, _ := unstructured.NestedFieldNoCopy(slimmed.Object, "spec", "template"); ok {
			t.Fatalf("%s: slim kept the pod template", k.kind)
		}
		if _, ok := slimmed.Object["data"]; ok {
			t.Fatalf("%s: slim kept the data", k.kind)
		}
		if slimmed.GetAnnotations() != nil || slimmed.GetManagedFields() != nil || slimmed.GetLabels()[LabelApp] != "shop" || slimmed.GetLabels()["tier"] != "" {
			t.Fatalf("%s: slim metadata %v", k.kind, slimmed.Object["metadata"])
		}
		st, _, _ := liveStatus(whole, false)
		cut[string(st)] = true
	}
	// The corpus reaches every verdict kstatus gives.
	for _, st := range []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus, status.TerminatingStatus} {
		if !cut[string(st)] {
			t.Errorf("no object of the corpus is %s", st)
		}
	}
}

// TestStatusWatcherWholeForRules: a wait on a kind a health rule covers
// gets a watch of its own that caches whole objects, for the rule's
// expressions; the other waits' watch of the same kind caches slim ones.
func TestStatusWatcherWholeForRules(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(gvk, meta.RESTScopeNamespace)
	live := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w", "namespace": "ns1", "labels": map[string]any{LabelApp: "a"}, "annotations": map[string]any{"note": "x"}},
		"spec":     map[string]any{"size": int64(3)},
		"status":   map[string]any{"phase": "Ready"},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "WidgetList"}, live)
	w := newStatusWatcher(dyn, mapper)
	t.Cleanup(w.stopIdle)
	rules, err := health.Compile("healthChecks", []health.Check{{APIVersion: "example.com/v1", Kind: "Widget", Current: "self.spec.size == 3"}})
	if err != nil {
		t.Fatal(err)
	}
	obj := &object.Object{Unstructured: live.DeepCopy()}
	cachedBy := func(rules *health.Rules) *unstructured.Unstructured {
		t.Helper()
		wt, err := w.watch([]*object.Object{obj}, nil, rules)
		if err != nil {
			t.Fatal(err)
		}
		defer wt.stop()
		var cached *unstructured.Unstructured
		err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			cached, _ = wt.live(obj.ID())
			return cached != nil, nil
		})
		if err != nil {
			t.Fatal("the watch never held the widget")
		}
		return cached
	}
	slimmed, whole := cachedBy(nil), cachedBy(rules)
	if w.count() != 2 {
		t.Errorf("%d watches, want 2: the rule's whole one and the slim one", w.count())
	}
	if _, ok := slimmed.Object["spec"].(map[string]any)["size"]; ok || slimmed.GetAnnotations() != nil {
		t.Errorf("the slim watch cached %v", slimmed.Object)
	}
	if size, _, _ := unstructured.NestedInt64(whole.Object, "spec", "size"); size != 3 || whole.GetAnnotations()["note"] != "x" {
		t.Errorf("the rule's watch cached %v, want the whole widget", whole.Object)
	}
	if v, ok := rules.Evaluate(context.Background(), whole); !ok || v.Status != status.CurrentStatus {
		t.Errorf("the rule on the cached widget: %+v, want Current", v)
	}
}

// TestSettledKindsAreCurrent: for every kind settledKind names, kstatus
// itself calls the object Current in the shapes a write leaves it in
// (new, at a later generation, with the status the kind's controllers
// write), and Terminating once it is being deleted, which settled checks
// apart: what settledKind predicts is kstatus' verdict.
func TestSettledKindsAreCurrent(t *testing.T) {
	t.Parallel()
	objs := map[string]string{
		"ConfigMap":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: n, generation: 3}\ndata: {k: v}\n",
		"Secret":         "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: n}\ntype: Opaque\n",
		"ServiceAccount": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x, namespace: n}\n",
		"Service":        "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: n}\nspec: {type: ClusterIP, clusterIP: 10.0.0.1, ports: [{port: 80}]}\n",
		"Service, LoadBalancer with its cluster IP": "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: n}\nspec: {type: LoadBalancer, clusterIP: 10.0.0.1, ports: [{port: 80}]}\nstatus: {loadBalancer: {}}\n",
		"Service, headless":                         "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: n}\nspec: {clusterIP: None, ports: [{port: 80}]}\n",
		"Role":                                      "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: x, namespace: n}\nrules: []\n",
		"RoleBinding":                               "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x, namespace: n}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: x}\n",
		"ClusterRole":                               "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x, generation: 2}\nrules: []\n",
		"ClusterRoleBinding":                        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: x}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: x}\n",
		"Ingress":                                   "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x, namespace: n, generation: 4}\nspec: {rules: [{host: a.example}]}\n",
		"Ingress, load balancer assigned":           "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x, namespace: n, generation: 4}\nspec: {rules: [{host: a.example}]}\nstatus: {loadBalancer: {ingress: [{ip: 10.0.0.2}]}}\n",
		"NetworkPolicy":                             "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: n, generation: 2}\nspec: {podSelector: {}}\n",
	}
	for name, doc := range objs {
		data, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !settledKind(u.GroupVersionKind().GroupKind()) {
			t.Errorf("%s: settledKind says no; this test lists it as settled", name)
			continue
		}
		res, err := status.Compute(u)
		if err != nil || res.Status != status.CurrentStatus {
			t.Errorf("%s: kstatus says %v (%v), settledKind predicts Current", name, res, err)
		}
		now := metav1.Now()
		u.SetDeletionTimestamp(&now)
		if res, err := status.Compute(u); err != nil || res.Status != status.TerminatingStatus {
			t.Errorf("%s, being deleted: kstatus says %v (%v), settled predicts not settled (Terminating)", name, res, err)
		}
	}
}
