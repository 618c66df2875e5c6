package apply

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// defaultWatchGrace is how long a shared watch outlives its last waiter.
// An app's stages wait one after the other, and a reconcile loop applies
// apps back to back: a few seconds let the next wait reuse the watch (and
// its cache) instead of listing again, while an idle process soon holds
// no watch at all.
const defaultWatchGrace = 5 * time.Second

// statusWatcher serves Wait from informers instead of polling: one
// LIST+WATCH per resource and namespace, shared by every wait in the
// process that needs it at the same time, and reference-counted so that
// it stops (after defaultWatchGrace) once the last of them has left. With
// 1,000 apps of 4 objects each, a 500ms GET per object was thousands of
// requests a second; watching makes it one long watch per (resource,
// namespace), and, for objects whose resourceVersion after the caller's
// last write is not known, one list of its own objects per wait and watch
// (see waiter.fence).
//
// Why not cli-utils' kstatus/watcher.DefaultStatusWatcher: each of its
// Watch calls starts informers of its own, so concurrent apps would not
// share them; objects in more than one namespace make it watch the kind
// cluster-wide (which deliver's RBAC need not allow); and its default
// status readers read a Deployment's ReplicaSets and Pods from the API
// server on its events, requests that kstatus' Compute does not need.
// Readiness is still kstatus' status.Compute on the watched object, as
// the poll did.
//
// Objects that carry LabelApp (everything Apply writes) are watched with
// the selector "LabelApp exists", so the watch does not cache the
// namespace's other objects; an object without it (Wait called with
// objects deliver did not label) is watched in an unfiltered watch of its
// namespace.
type statusWatcher struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	grace  time.Duration

	mu      sync.Mutex
	watches map[watchKey]*sharedWatch
}

// newStatusWatcher returns a statusWatcher that resolves kinds with mapper
// and watches with dyn.
func newStatusWatcher(dyn dynamic.Interface, mapper meta.RESTMapper) *statusWatcher {
	return &statusWatcher{dyn: dyn, mapper: mapper, grace: defaultWatchGrace, watches: map[watchKey]*sharedWatch{}}
}

// watchKey names one shared watch. namespace is "" for cluster-scoped
// resources.
type watchKey struct {
	gvr       schema.GroupVersionResource
	namespace string
	labelled  bool // restricted to objects carrying LabelApp
	// whole says the cache keeps whole objects, for a health rule's
	// expressions, which may read any field; otherwise it keeps what
	// kstatus reads (see slim).
	whole bool
}

// sharedWatch is one informer and the waiters using it. The informer has
// a single event handler, which hands each event to the waiters of that
// object: a waiter costs no goroutine, and an event costs a map lookup
// however many objects the watch caches.
type sharedWatch struct {
	key      watchKey
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{} // closed once the informer has stopped

	// guarded by statusWatcher.mu
	refs int
	idle *time.Timer // set while refs == 0, until the watch stops

	mu      sync.Mutex
	err     error                            // the last failed list or watch
	byKey   map[string]map[*waiter]object.ID // cache key -> its waiters
	waiters map[*waiter]struct{}             // all of them, told of errors
}

// open returns the running watch for key, starting it for the first
// waiter; each open is matched by a release.
func (w *statusWatcher) open(key watchKey) *sharedWatch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sw := w.watches[key]; sw != nil {
		sw.refs++
		if sw.idle != nil {
			// Should the timer be firing right now, it finds refs > 0
			// and leaves the watch running.
			sw.idle.Stop()
			sw.idle = nil
		}
		return sw
	}
	sw := &sharedWatch{key: key, refs: 1, done: make(chan struct{}), byKey: map[string]map[*waiter]object.ID{}, waiters: map[*waiter]struct{}{}}
	tweak := func(o *metav1.ListOptions) {
		if key.labelled {
			o.LabelSelector = LabelApp
		}
	}
	sw.informer = dynamicinformer.NewFilteredDynamicInformer(w.dyn, key.gvr, key.namespace, 0, cache.Indexers{}, tweak).Informer()
	// Readiness needs neither managedFields nor, unless a health rule
	// reads them, the fields kstatus does not read: dropping them keeps
	// the cache of a large namespace small.
	_ = sw.informer.SetTransform(func(o any) (any, error) {
		if u, ok := o.(*unstructured.Unstructured); ok {
			if key.whole {
				u.SetManagedFields(nil)
			} else {
				slim(u)
			}
		}
		return o, nil
	})
	_ = sw.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		sw.failed(err)
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	_, _ = sw.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    sw.seen,
		UpdateFunc: func(_, o any) { sw.seen(o) },
		DeleteFunc: sw.seen,
	})
	ctx, cancel := context.WithCancel(context.Background())
	sw.cancel = cancel
	go func() {
		defer close(sw.done)
		sw.informer.RunWithContext(ctx)
	}()
	w.watches[key] = sw
	return sw
}

// release drops a reference; the last one stops the watch after the
// grace period unless a new waiter opens it meanwhile.
func (w *statusWatcher) release(sw *sharedWatch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sw.refs--
	if sw.refs > 0 {
		return
	}
	sw.idle = time.AfterFunc(w.grace, func() {
		w.mu.Lock()
		if sw.refs > 0 || w.watches[sw.key] != sw {
			w.mu.Unlock()
			return
		}
		delete(w.watches, sw.key)
		sw.idle = nil
		w.mu.Unlock()
		sw.cancel()
		<-sw.done
	})
}

// count is the number of running watches, idle ones included.
func (w *statusWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watches)
}

// seen tells the waiters of o that it changed.
func (sw *sharedWatch) seen(o any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o)
	if err != nil {
		return
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for wt, id := range sw.byKey[key] {
		wt.mark(id)
	}
}

// failed records a failed list or watch and wakes the waiters, which
// give up when the server refuses the list.
func (sw *sharedWatch) failed(err error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.err = err
	for wt := range sw.waiters {
		wt.poke()
	}
}

func (sw *sharedWatch) lastErr() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.err
}

// subscribe makes sw tell wt of changes to the objects ids names by cache
// key.
func (sw *sharedWatch) subscribe(wt *waiter, ids map[string]object.ID) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.waiters[wt] = struct{}{}
	for key, id := range ids {
		m := sw.byKey[key]
		if m == nil {
			m = map[*waiter]object.ID{}
			sw.byKey[key] = m
		}
		m[wt] = id
	}
}

func (sw *sharedWatch) unsubscribe(wt *waiter, ids map[string]object.ID) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	delete(sw.waiters, wt)
	for key := range ids {
		delete(sw.byKey[key], wt)
		if len(sw.byKey[key]) == 0 {
			delete(sw.byKey, key)
		}
	}
}

// waiter is one Wait's view of the shared watches: the objects it waits
// for, and which of them changed since it last looked.
type waiter struct {
	w       *statusWatcher
	changed chan struct{} // one pending wake-up
	targets map[object.ID]*target
	subs    []*subscription

	mu    sync.Mutex
	dirty map[object.ID]bool
}

// target is an object waited for, with where to find it.
type target struct {
	sub    *subscription
	key    string                     // cache key: namespace/name, or name
	listed *unstructured.Unstructured // as the fence's list saw it; nil: absent
	// floor is a resourceVersion the object had at or after the caller's
	// last write of it (the apply's answer, or the plan's list for an
	// object left unchanged): a cached version older than that is stale.
	// "" when unknown: the fence then lists the object's watch.
	floor string
}

// subscription is the part of a waiter's objects one shared watch serves.
type subscription struct {
	sw    *sharedWatch
	ids   map[string]object.ID // cache key -> object
	apps  map[string]bool      // their LabelApp values
	fence string               // resourceVersion of the fence's list
}

// watch starts waiting for objs: it opens the shared watches they need and
// subscribes to changes of the objects. Every object starts out marked as
// changed: it was subscribed to before the caller first reads the cache,
// and the cache is updated before the handler runs, so no change is
// missed. floors are the objects' resourceVersions as the caller last
// wrote or read them (see target.floor; nil: none known). The caller must
// stop the waiter.
func (w *statusWatcher) watch(objs []*object.Object, floors map[object.ID]string, rules *health.Rules) (*waiter, error) {
	wt := &waiter{w: w, changed: make(chan struct{}, 1), targets: map[object.ID]*target{}, dirty: map[object.ID]bool{}}
	subs := map[watchKey]*subscription{}
	for _, o := range objs {
		id := o.ID()
		mapping, err := w.mapper.RESTMapping(id.GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			return nil, fmt.Errorf("%s: wait: %w", id, err)
		}
		_, ruled := rules.Check(o.GroupVersionKind())
		key := watchKey{gvr: mapping.Resource, labelled: o.GetLabels()[LabelApp] != "", whole: ruled}
		ckey := id.Name
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			key.namespace = id.Namespace
			ckey = id.Namespace + "/" + id.Name
		}
		sub := subs[key]
		if sub == nil {
			sub = &subscription{ids: map[string]object.ID{}, apps: map[string]bool{}}
			subs[key] = sub
			wt.subs = append(wt.subs, sub)
		}
		sub.ids[ckey] = id
		sub.apps[o.GetLabels()[LabelApp]] = true
		wt.targets[id] = &target{sub: sub, key: ckey, floor: floors[id]}
		wt.dirty[id] = true
	}
	for key, sub := range subs {
		sub.sw = w.open(key)
		sub.sw.subscribe(wt, sub.ids)
	}
	return wt, nil
}

// mark records that the object id changed and wakes the waiter.
func (wt *waiter) mark(id object.ID) {
	wt.mu.Lock()
	wt.dirty[id] = true
	wt.mu.Unlock()
	wt.poke()
}

func (wt *waiter) poke() {
	select {
	case wt.changed <- struct{}{}:
	default:
	}
}

// takeDirty returns the objects that changed since the last call (all of
// them the first time).
func (wt *waiter) takeDirty() []object.ID {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	out := make([]object.ID, 0, len(wt.dirty))
	for id := range wt.dirty {
		out = append(out, id)
	}
	clear(wt.dirty)
	return out
}

// fence reads the waiter's objects with one list per watch it uses
// (restricted to its app's label), so that a shared cache that has not
// yet seen the caller's latest writes is not taken for the truth: a
// watch reused from an earlier wait may still hold the Deployment as it
// was before the apply a moment ago, ready with the old template. Until
// the watch has caught up with the list, the newer of the two versions
// counts. It costs one request per (resource, namespace) and wait, not
// one per object and poll; a watch whose objects all have a floor needs
// none (the floor says which cached versions are stale), which is what
// an apply's wait gives: the first apply of a thousand small apps sent
// four thousand of these lists, a quarter of its requests.
func (wt *waiter) fence(ctx context.Context) error {
	for _, sub := range wt.subs {
		if wt.floored(sub) {
			continue
		}
		opts := metav1.ListOptions{}
		if sub.sw.key.labelled {
			opts.LabelSelector = LabelApp
			if len(sub.apps) == 1 {
				for app := range sub.apps {
					opts.LabelSelector = LabelApp + "=" + app
				}
			}
		}
		list, err := wt.w.dyn.Resource(sub.sw.key.gvr).Namespace(sub.sw.key.namespace).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list %s in namespace %q: %w", sub.sw.key.gvr.GroupResource(), sub.sw.key.namespace, err)
		}
		sub.fence = list.GetResourceVersion()
		for i := range list.Items {
			u := &list.Items[i]
			key, _ := cache.MetaNamespaceKeyFunc(u)
			if id, ok := sub.ids[key]; ok {
				wt.targets[id].listed = u
			}
		}
	}
	return nil
}

// floored reports whether every object of sub has a floor.
func (wt *waiter) floored(sub *subscription) bool {
	for _, id := range sub.ids {
		if wt.targets[id].floor == "" {
			return false
		}
	}
	return true
}

// live returns the freshest version of the watched object this wait has
// seen, nil when it does not exist, and whether the wait may judge it: an
// object with a floor is judged once the cache holds it at the floor or
// later, or the watch has seen past the floor (it was deleted since);
// otherwise the watch's cache once it has caught up with the fence's
// list, the newer of the cached and the listed object before.
func (wt *waiter) live(id object.ID) (*unstructured.Unstructured, bool) {
	t := wt.targets[id]
	inf := t.sub.sw.informer
	var cached *unstructured.Unstructured
	if o, exists, _ := inf.GetStore().GetByKey(t.key); exists {
		cached, _ = o.(*unstructured.Unstructured)
	}
	if t.floor != "" {
		return cached, atFloor(cached, t.floor, inf.HasSynced(), inf.LastSyncResourceVersion())
	}
	return wt.fenced(t, cached), true
}

// atFloor reports whether a watch's cached object (nil: absent) may be
// judged by a waiter that wrote or read the object at resourceVersion
// floor: the cache holds that version or a later one, or the synced
// watch has seen events past it, so an absent object was deleted since.
// A version that is not the usual integer is trusted (see olderRV).
//
// A cached object older than the floor is never judged, even when the
// watch has seen past the floor: the reflector's LastSyncResourceVersion
// runs ahead of the informer's store (a DeltaFIFO sits between them), so
// the store may still hold the version before the write (a Deployment
// that deliver scaled to 0, ready with 0 replicas). The write's own event,
// or a delete, reaches the store later and marks the object for another
// look.
func atFloor(cached *unstructured.Unstructured, floor string, synced bool, lastSync string) bool {
	if cached != nil {
		return !olderRV(cached.GetResourceVersion(), floor)
	}
	return synced && !olderRV(lastSync, floor)
}

// fenced is live for an object without a floor.
func (wt *waiter) fenced(t *target, cached *unstructured.Unstructured) *unstructured.Unstructured {
	inf := t.sub.sw.informer
	if t.sub.fence == "" || inf.HasSynced() && !olderRV(inf.LastSyncResourceVersion(), t.sub.fence) {
		return cached
	}
	switch {
	case t.listed == nil:
		// Absent from the list: a cached object is either created since
		// or deleted before it.
		if cached != nil && olderRV(t.sub.fence, cached.GetResourceVersion()) {
			return cached
		}
		return nil
	case cached == nil || olderRV(cached.GetResourceVersion(), t.listed.GetResourceVersion()):
		return t.listed
	}
	return cached
}

// olderRV reports whether resourceVersion a is older than b. A version
// that is not the usual integer compares as not older, trusting the
// watch.
func olderRV(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	return err == nil && c < 0
}

// refused returns the error of a watch the server will not serve to us
// (no permission to list): waiting longer would not help, and a GET would
// have failed at once too.
func (wt *waiter) refused() error {
	for _, sub := range wt.subs {
		if sub.sw.informer.HasSynced() {
			continue
		}
		if err := sub.sw.lastErr(); apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("watch %s: %w", sub.sw.key.gvr.Resource, err)
		}
	}
	return nil
}

// stop unsubscribes the waiter and releases its watches.
func (wt *waiter) stop() {
	for _, sub := range wt.subs {
		sub.sw.unsubscribe(wt, sub.ids)
		wt.w.release(sub.sw)
	}
}

// stopIdle stops now the watches no wait uses, rather than after their
// grace period: for a process that is shutting down, and for tests.
func (w *statusWatcher) stopIdle() {
	w.mu.Lock()
	var idle []*sharedWatch
	for key, sw := range w.watches {
		if sw.refs == 0 {
			if sw.idle != nil {
				sw.idle.Stop()
				sw.idle = nil
			}
			delete(w.watches, key)
			idle = append(idle, sw)
		}
	}
	w.mu.Unlock()
	for _, sw := range idle {
		sw.cancel()
		<-sw.done
	}
}

// refs is the number of (wait, watch) pairs in use: a wait counts once
// for each watch it needs.
func (w *statusWatcher) refs() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, sw := range w.watches {
		n += sw.refs
	}
	return n
}

// slim cuts u down to what a wait judges by kstatus (liveStatus): its
// apiVersion and kind, the metadata a cache and a wait use (name,
// namespace, uid, resourceVersion, generation, deletionTimestamp, the app
// label), status, and the fields of spec that kstatus' status.Compute
// (cli-utils v0.37) reads of any kind: a StatefulSet's update strategy
// and partition, a workload's replicas, a Deployment's progress deadline,
// a Job's parallelism and completions, a Service's type and cluster IP.
// What goes is most of a workload (its pod template), and the data of
// anything else (a ConfigMap's or Secret's, when one is waited for).
// TestSlimSameVerdict compares the verdicts on whole and slim objects over
// a generated corpus: a kstatus that reads more fails it.
func slim(u *unstructured.Unstructured) {
	out := map[string]any{}
	for _, k := range []string{"apiVersion", "kind", "status"} {
		if v, ok := u.Object[k]; ok {
			out[k] = v
		}
	}
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		m := map[string]any{}
		for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "generation", "deletionTimestamp"} {
			if v, ok := md[k]; ok {
				m[k] = v
			}
		}
		if labels, ok := md["labels"].(map[string]any); ok {
			if app, ok := labels[LabelApp]; ok {
				m["labels"] = map[string]any{LabelApp: app}
			}
		}
		out["metadata"] = m
	}
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		kept := map[string]any{}
		for _, k := range []string{"replicas", "updateStrategy", "progressDeadlineSeconds", "parallelism", "completions", "type", "clusterIP"} {
			if v, ok := spec[k]; ok {
				kept[k] = v
			}
		}
		out["spec"] = kept
	}
	u.Object = out
}
