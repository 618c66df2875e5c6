package apply_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// watchKinds creates two namespaced custom resource kinds, Widget and
// Gadget, with a status subresource, in a group of the test's own, and
// returns their resources once the API server serves them.
func watchKinds(t *testing.T, group string) (widgets, gadgets schema.GroupVersionResource) {
	t.Helper()
	ctx := context.Background()
	client, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, kind := range []string{"Widget", "Gadget"} {
		plural := strings.ToLower(kind) + "s"
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": plural + "." + group},
			"spec": map[string]any{
				"group": group,
				"scope": "Namespaced",
				"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
				"versions": []any{map[string]any{
					"name": "v1", "served": true, "storage": true,
					"subresources": map[string]any{"status": map[string]any{}},
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type":                                 "object",
						"x-kubernetes-preserve-unknown-fields": true,
					}},
				}},
			},
		}}
		if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = client.Resource(crdGVR).Delete(context.Background(), crd.GetName(), metav1.DeleteOptions{})
		})
		gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := client.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{Limit: 1})
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("%s not served: %v", plural, err)
		}
		if kind == "Widget" {
			widgets = gvr
		} else {
			gadgets = gvr
		}
	}
	return widgets, gadgets
}

// requestCount counts the requests a Manager sends for some resources:
// lists and watches of the collection, and GETs of single objects.
type requestCount struct {
	resources []string
	mu        sync.Mutex
	list      int
	watch     int
	get       int
}

func (c *requestCount) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		for _, res := range c.resources {
			c.mu.Lock()
			switch {
			case r.Method != http.MethodGet:
			case parts[len(parts)-1] == res && r.URL.Query().Get("watch") == "true":
				c.watch++
			case parts[len(parts)-1] == res:
				c.list++
			case len(parts) > 1 && parts[len(parts)-2] == res:
				c.get++
			}
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (c *requestCount) snapshot() (list, watch, get int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.list, c.watch, c.get
}

func (c *requestCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d lists, %d watches, %d GETs", c.list, c.watch, c.get)
}

// countingManager returns a Manager whose requests for resources are
// counted.
func countingManager(t *testing.T, opts apply.Options, resources ...string) (*apply.Manager, *requestCount) {
	t.Helper()
	count := &requestCount{resources: resources}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = count.wrap
	m, err := apply.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { apply.StopIdleWatches(m) })
	return m, count
}

// Status patches that kstatus reads as not ready and as ready: a Widget
// reports a Reconciling condition, a Gadget an observedGeneration behind
// its generation (1 after create).
var (
	notReady = map[string]map[string]any{
		"widgets": {"conditions": []any{map[string]any{"type": "Reconciling", "status": "True", "reason": "Working", "message": "still working"}}},
		"gadgets": {"observedGeneration": 0},
	}
	ready = map[string]map[string]any{
		"widgets": {"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Done", "message": "done"}}},
		"gadgets": {"observedGeneration": 1},
	}
)

// customObject is a Widget or Gadget labelled as app's.
type customObject struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
	app       string
}

func (c customObject) object() *object.Object {
	kind := map[string]string{"widgets": "Widget", "gadgets": "Gadget"}[c.gvr.Resource]
	return &object.Object{Unstructured: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": c.gvr.GroupVersion().String(),
		"kind":       kind,
		"metadata": map[string]any{
			"name": c.name, "namespace": c.namespace,
			"labels": map[string]any{apply.LabelApp: c.app},
		},
	}}}
}

// create creates the object, and with status sets its status.
func (c customObject) create(ctx context.Context, dyn dynamic.Interface, status map[string]any) error {
	if _, err := dyn.Resource(c.gvr).Namespace(c.namespace).Create(ctx, c.object().Unstructured, metav1.CreateOptions{}); err != nil {
		return err
	}
	if status == nil {
		return nil
	}
	return c.setStatus(ctx, dyn, status)
}

func (c customObject) setStatus(ctx context.Context, dyn dynamic.Interface, status map[string]any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = dyn.Resource(c.gvr).Namespace(c.namespace).Patch(ctx, c.name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

// forEach runs f on every object, eight at a time.
func forEach(t *testing.T, objs []customObject, f func(customObject) error) {
	t.Helper()
	work := make(chan customObject)
	errs := make(chan error, len(objs))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for o := range work {
				if err := f(o); err != nil {
					errs <- fmt.Errorf("%s/%s/%s: %w", o.gvr.Resource, o.namespace, o.name, err)
				}
			}
		})
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func toObjects(objs []customObject) []*object.Object {
	out := make([]*object.Object, len(objs))
	for i, o := range objs {
		out[i] = o.object()
	}
	return out
}

// waitUntil polls cond (a condition, not a sleep) for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}

// TestWaitWatchesManyObjects: Wait on 200 custom resources of two kinds in
// two namespaces returns once the last of them is ready, and learns of
// their changes from one list and one watch per kind and namespace, never
// from a GET of an object (polling sent 200 GETs every 500ms).
func TestWaitWatchesManyObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns1, ns2 := env.Namespace(t), env.Namespace(t)
	widgets, gadgets := watchKinds(t, strings.ReplaceAll(ns1, "-", "")+".example.com")
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var objs []customObject
	for _, gvr := range []schema.GroupVersionResource{widgets, gadgets} {
		for _, ns := range []string{ns1, ns2} {
			for i := range 50 {
				objs = append(objs, customObject{gvr: gvr, namespace: ns, name: fmt.Sprintf("o-%d", i), app: "many"})
			}
		}
	}
	forEach(t, objs, func(o customObject) error { return o.create(ctx, dyn, notReady[o.gvr.Resource]) })

	m, count := countingManager(t, apply.Options{Timeout: 2 * time.Minute}, "widgets", "gadgets")
	done := make(chan error, 1)
	go func() { done <- m.Wait(ctx, toObjects(objs)) }()
	waitUntil(t, "Wait uses 4 watches", func() bool { return apply.WatchRefs(m) == 4 })

	last := objs[len(objs)-1]
	forEach(t, objs[:len(objs)-1], func(o customObject) error { return o.setStatus(ctx, dyn, ready[o.gvr.Resource]) })
	select {
	case err := <-done:
		t.Fatalf("Wait returned (%v) while %s/%s was not ready", err, last.namespace, last.name)
	default:
	}
	if err := last.setStatus(ctx, dyn, ready[last.gvr.Resource]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Wait did not return a minute after the last object became ready")
	}
	// 2 kinds x 2 namespaces: a watch each (two if the first, a watch-list
	// stream, is refused), the wait's list each, and the informer's own
	// list each if the stream is refused.
	list, watch, get := count.snapshot()
	if get != 0 || watch > 2*4 || list > 2*4 {
		t.Errorf("waiting on %d objects sent %s; want no GET, at most 8 watches and 8 lists", len(objs), count)
	}
	t.Logf("waiting on %d objects sent %s", len(objs), count)
}

// TestWaitWatchTimeoutNamesObjects: on timeout, Wait names each object
// that is not ready with kstatus' message: one still reconciling, one
// deleted while waited for, one never created. A custom resource without
// status is ready (as kstatus has it), and so is one deleted and created
// again ready.
func TestWaitWatchTimeoutNamesObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	widgets, _ := watchKinds(t, strings.ReplaceAll(ns, "-", "")+".example.com")
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := func(name string) customObject {
		return customObject{gvr: widgets, namespace: ns, name: name, app: "timeout"}
	}
	slow, plain, gone, back, never := w("slow"), w("plain"), w("gone"), w("back"), w("never")
	for _, o := range []customObject{slow, gone, back} {
		if err := o.create(ctx, dyn, notReady["widgets"]); err != nil {
			t.Fatal(err)
		}
	}
	if err := plain.create(ctx, dyn, nil); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, apply.Options{Timeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() { done <- m.Wait(ctx, toObjects([]customObject{slow, plain, gone, back, never})) }()
	waitUntil(t, "Wait uses its watch", func() bool { return apply.WatchRefs(m) == 1 })
	for _, o := range []customObject{gone, back} {
		if err := dyn.Resource(widgets).Namespace(ns).Delete(ctx, o.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if err := back.create(ctx, dyn, nil); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if err == nil {
		t.Fatal("Wait succeeded; want a timeout")
	}
	msg := err.Error()
	for _, want := range []string{
		"wait: 3 not ready after 5s",
		"Widget/" + ns + "/slow: InProgress: still working",
		"Widget/" + ns + "/gone: NotFound: not found",
		"Widget/" + ns + "/never: NotFound: not found",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, ok := range []string{"/plain", "/back"} {
		if strings.Contains(msg, ok) {
			t.Errorf("error %q names the ready %s", msg, ok)
		}
	}
}

// watchGoroutines counts the goroutines running an informer (client-go's
// tools/cache) or the watcher's own code.
func watchGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "k8s.io/client-go/tools/cache.") || strings.Contains(g, "pkg/apply.(*statusWatcher)") {
			n++
		}
	}
	return n
}

// TestWaitAppsShareWatches: 20 apps waiting at once in one Manager share
// one watch per kind and namespace; a wait right after reuses the idle
// watches; watches stop after the grace period once
// the last waiter left (or at once with StopIdleWatches), and none of
// their goroutines is left. Not parallel: it counts goroutines.
func TestWaitAppsShareWatches(t *testing.T) {
	ctx := context.Background()
	baseline := watchGoroutines()
	ns1, ns2 := env.Namespace(t), env.Namespace(t)
	widgets, gadgets := watchKinds(t, strings.ReplaceAll(ns1, "-", "")+".example.com")
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	const apps = 20
	byApp := make([][]customObject, apps)
	var all []customObject
	for a := range apps {
		app := fmt.Sprintf("app-%d", a)
		for _, gvr := range []schema.GroupVersionResource{widgets, gadgets} {
			for _, ns := range []string{ns1, ns2} {
				o := customObject{gvr: gvr, namespace: ns, name: app, app: app}
				byApp[a] = append(byApp[a], o)
				all = append(all, o)
			}
		}
	}
	forEach(t, all, func(o customObject) error { return o.create(ctx, dyn, notReady[o.gvr.Resource]) })

	m, count := countingManager(t, apply.Options{Timeout: 2 * time.Minute}, "widgets", "gadgets")
	apply.SetWatchGrace(m, time.Hour)
	errs := make(chan error, apps)
	for a := range apps {
		go func() { errs <- m.Wait(ctx, toObjects(byApp[a])) }()
	}
	waitUntil(t, "the 20 apps wait", func() bool { return apply.WatchRefs(m) == apps*4 })
	if n := apply.WatchCount(m); n != 4 {
		t.Errorf("%d apps waiting on 2 kinds in 2 namespaces run %d watches, want 4", apps, n)
	}
	forEach(t, all, func(o customObject) error { return o.setStatus(ctx, dyn, ready[o.gvr.Resource]) })
	for range apps {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each wait lists its objects once per kind and namespace (its fence
	// against a cache that lags behind); the watches are shared.
	list, watch, get := count.snapshot()
	if get != 0 || watch > 2*4 || list > apps*4+4 {
		t.Errorf("%d apps waiting sent %s; want no GET, at most 8 watches and %d lists", apps, count, apps*4+4)
	}

	// Back to back: the idle watches serve the next wait, which sends
	// only its lists.
	if n := apply.WatchCount(m); n != 4 {
		t.Errorf("after the waits, %d watches run in their grace period, want 4", n)
	}
	if err := m.Wait(ctx, toObjects(byApp[0])); err != nil {
		t.Fatal(err)
	}
	if l, w, g := count.snapshot(); w != watch || g != get || l > list+4 {
		t.Errorf("a wait on idle watches sent %s, before it %d lists and %d watches; want no new watch", count, list, watch)
	}
	apply.StopIdleWatches(m)
	if n := apply.WatchCount(m); n != 0 {
		t.Errorf("StopIdleWatches left %d watches", n)
	}

	// After the grace period, a wait's watches stop by themselves.
	apply.SetWatchGrace(m, 100*time.Millisecond)
	if err := m.Wait(ctx, toObjects(byApp[1])); err != nil {
		t.Fatal(err)
	}
	if _, w, _ := count.snapshot(); w <= watch {
		t.Errorf("a wait after StopIdleWatches started no watch (%s): the watches were not stopped", count)
	}
	waitUntil(t, "the watches stop after the grace period", func() bool { return apply.WatchCount(m) == 0 })
	waitUntil(t, "the watch goroutines end", func() bool { return watchGoroutines() <= baseline })
}

// TestApplyWaitNeedsNoList: the wait of an Apply knows the resourceVersion
// each of its writes returned, so it lists nothing of its own (the fence
// of Wait cost one list per kind and namespace, four of a small app's
// seventeen requests) and still does not take a reused watch's cache for
// the truth: the second apply changes the template of a Deployment the
// watch holds ready from the first, and must return only once the new
// generation is observed and rolled out.
func TestApplyWaitNeedsNoList(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	ns := env.Namespace(t)
	ctx := context.Background()
	m, count := countingManager(t, apply.Options{Timeout: 2 * time.Minute}, "deployments")
	apply.SetWatchGrace(m, time.Hour)
	for i, image := range []string{"registry.example/web:1.0", "registry.example/web:2.0"} {
		set := objects(t, ns, strings.Replace(deployment, "registry.example/web:1.0", image, 1))
		list0, watch0, _ := count.snapshot()
		if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns, Wait: true}); err != nil {
			t.Fatal(err)
		}
		list, watch, _ := count.snapshot()
		// One list each: the first apply's is its watch's (a new app's
		// plan lists nothing), the second's its plan's (it reuses the
		// watch). With the fence each wait listed once more.
		if list-list0 != 1 || watch-watch0 > 1 {
			t.Errorf("apply %d sent %d lists and %d watches of Deployments; want 1 list and at most 1 watch", i+1, list-list0, watch-watch0)
		}
		wantRolledOut(t, ns, i, image)
	}
}

// wantRolledOut fails t unless the Deployment web in ns has rolled out
// image to its 2 replicas, as apply i (from 0) should have waited for.
func wantRolledOut(t *testing.T, ns string, i int, image string) {
	t.Helper()
	d, err := env.Client().AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 2 || d.Spec.Template.Spec.Containers[0].Image != image {
		t.Errorf("apply %d returned before the rollout of %s: generation %d, status %+v", i+1, image, d.Generation, d.Status)
	}
}

// statelessApp is an app of the kinds whose readiness no controller
// decides (see settledAt), and a Deployment, whose readiness its
// controller does.
const statelessApp = `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: NS}
data: {ready: "yes"}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: NS}
stringData: {token: not-a-secret}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: NS}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web, namespace: NS}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects: [{kind: ServiceAccount, name: web, namespace: NS}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: NS}
spec:
  rules: [{host: web.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
` + "---" + deployment

// TestApplyWaitWatchesOnlyWhatControllersDecide: the wait of an Apply
// watches the Deployment, whose readiness its controller writes, and
// none of the app's ConfigMaps, Secrets, ServiceAccounts, Services,
// Roles, RoleBindings and Ingresses, which are ready at the version the
// apply wrote or found (and stay so): no watch of theirs, on the first
// apply (creates) or the second (the Deployment updated, the others
// unchanged). A health rule for one of
// those kinds puts it back under watch, judged by the rule.
func TestApplyWaitWatchesOnlyWhatControllersDecide(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	stateless := []string{"configmaps", "secrets", "serviceaccounts", "services", "roles", "rolebindings", "ingresses"}
	t.Run("kstatus", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		count, dcount := &requestCount{resources: stateless}, &requestCount{resources: []string{"deployments"}}
		cfg := rest.CopyConfig(env.Config)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return count.wrap(dcount.wrap(rt)) }
		m, err := apply.New(cfg, apply.Options{Timeout: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { apply.StopIdleWatches(m) })
		for i, image := range []string{"registry.example/web:1.0", "registry.example/web:2.0"} {
			set := objects(t, ns, strings.Replace(statelessApp, "registry.example/web:1.0", image, 1))
			list0, _, _ := count.snapshot()
			if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns, Wait: true}); err != nil {
				t.Fatal(err)
			}
			// The plan lists each kind once (what is live); the wait
			// adds nothing. (The GETs are of the inventory, a Secret.)
			list, watch, _ := count.snapshot()
			if watch != 0 || list-list0 > len(stateless) {
				t.Errorf("apply %d: %d lists and %d watches of %v; want no watch and at most one list per kind", i+1, list-list0, watch, stateless)
			}
			wantRolledOut(t, ns, i, image)
		}
		if _, w, _ := dcount.snapshot(); w == 0 {
			t.Errorf("the Deployment was not watched (%s)", dcount)
		}
	})
	t.Run("health rule", func(t *testing.T) {
		t.Parallel()
		ns := env.Namespace(t)
		rules, err := health.Compile("healthChecks", []health.Check{{
			APIVersion: "v1", Kind: "ConfigMap", Current: "has(self.data) && 'ready' in self.data",
		}})
		if err != nil {
			t.Fatal(err)
		}
		m, count := countingManager(t, apply.Options{Timeout: 2 * time.Minute, Health: rules}, "configmaps")
		rep, err := m.Apply(ctx, objects(t, ns, statelessApp), apply.PlanOptions{App: ns, Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		if list, watch, _ := count.snapshot(); list+watch == 0 {
			t.Errorf("a ConfigMap under a health rule was not watched (%s)", count)
		}
		var judged bool
		for _, h := range rep.Health {
			judged = judged || (h.ID.Kind == "ConfigMap" && h.Status == status.CurrentStatus && h.Field == health.FieldCurrent)
		}
		if !judged {
			t.Errorf("no Current verdict of the rule on the ConfigMap in the report: %+v", rep.Health)
		}
	})
}
