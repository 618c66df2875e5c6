package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// tracker watches the metadata of every object that carries the
// deliver.dev/app label, for the kinds in the apps' inventories, and tells
// which differ from what deliver last applied. One informer per kind
// serves every app: a list and a watch per kind, then no request at all
// while nothing changes, however many objects there are.
type tracker struct {
	ctx     context.Context
	mapper  meta.RESTMapper
	factory metadatainformer.SharedInformerFactory
	// dyn reads a workload whose replica count is not deliver's when its
	// generation moves (see sameSpec).
	dyn     dynamic.Interface
	onDrift func(app, id, why string)
	log     *slog.Logger

	mu    sync.Mutex
	kinds map[schema.GroupKind]*watchedKind
	// inv holds each app's inventory entries by object.
	inv map[string]map[object.ID]apply.Entry
	// scaled remembers the generation of a workload that sameSpec found
	// only scaled, so that its status updates cost no GET each.
	scaled map[object.ID]scaledSpec
}

// scaledSpec is a generation of a workload whose spec matched Spec.
type scaledSpec struct {
	generation int64
	spec       string
}

// watchedKind is one informer.
type watchedKind struct {
	gk       schema.GroupKind
	informer cache.SharedIndexInformer
	// synced is done once the informer's initial list went through the
	// tracker's handler.
	synced cache.DoneChecker
}

// newTracker returns a tracker whose informers and reads go through the
// session's clients and RESTMapper: no clients or discovery of its own.
func newTracker(ctx context.Context, sess *apply.Session, onDrift func(app, id, why string)) *tracker {
	// Only deliver's objects: a cluster's other objects cost nothing.
	factory := metadatainformer.NewFilteredSharedInformerFactory(sess.Metadata(), 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = apply.LabelApp
	})
	return &tracker{
		ctx: ctx, mapper: sess.RESTMapper(), factory: factory, dyn: sess.Dynamic(), onDrift: onDrift, log: slog.New(slog.DiscardHandler),
		kinds: map[schema.GroupKind]*watchedKind{}, inv: map[string]map[object.ID]apply.Entry{},
		scaled: map[object.ID]scaledSpec{},
	}
}

// stop ends the informers; their goroutines end with the tracker's ctx.
func (t *tracker) stop() { t.factory.Shutdown() }

// setInventory replaces what app last applied; nil forgets the app.
func (t *tracker) setInventory(app string, inv *apply.Inventory) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if inv == nil {
		delete(t.inv, app)
		return
	}
	m := make(map[object.ID]apply.Entry, len(inv.Entries))
	for _, e := range inv.Entries {
		m[e.ID] = e
	}
	t.inv[app] = m
}

// ensureKinds starts an informer for each kind of the inventories that
// has none yet; with wait, it returns once their initial lists are in.
func (t *tracker) ensureKinds(ctx context.Context, wait bool) {
	t.mu.Lock()
	started := false
	for _, entries := range t.inv {
		for id, e := range entries {
			gk := id.GroupKind()
			if _, ok := t.kinds[gk]; ok {
				continue
			}
			mapping, err := t.mapper.RESTMapping(gk, e.Version)
			if err != nil {
				// The kind is not served (its CRD is gone): nothing of it
				// to watch. A later run that creates it comes back here.
				continue
			}
			inf := t.factory.ForResource(mapping.Resource).Informer()
			// Only metadata is kept, and not even managedFields: 1,000
			// objects stay well under a megabyte.
			_ = inf.SetTransform(func(obj any) (any, error) {
				if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
					m.ManagedFields = nil
				}
				return obj, nil
			})
			reg, err := inf.AddEventHandler(t.handler(gk))
			if err != nil {
				continue
			}
			t.kinds[gk] = &watchedKind{gk: gk, informer: inf, synced: reg.HasSyncedChecker()}
			started = true
		}
	}
	synced := make([]cache.DoneChecker, 0, len(t.kinds))
	for _, wk := range t.kinds {
		synced = append(synced, wk.synced)
	}
	t.mu.Unlock()
	if !started {
		return
	}
	t.factory.Start(t.ctx.Done())
	if wait {
		// Not the factory's WaitForCacheSync: it polls every 100ms, which
		// added about 100ms to every no-op Once pass, and it waits for the
		// stores only. This wakes as soon as every handler has seen the
		// initial list, so the drift it found is noted before the caller
		// schedules.
		cache.WaitFor(ctx, "", synced...)
	}
}

// handler checks every event of kind gk against the inventory of the app
// named by the object's label.
func (t *tracker) handler(gk schema.GroupKind) cache.ResourceEventHandler {
	check := func(obj any) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return
		}
		app := m.Labels[apply.LabelApp]
		id := object.ID{Group: gk.Group, Kind: gk.Kind, Namespace: m.Namespace, Name: m.Name}
		if why := t.differs(app, id, m); why != "" {
			t.onDrift(app, id.String(), why)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, obj any) { check(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			m, ok := obj.(*metav1.PartialObjectMetadata)
			if !ok {
				return
			}
			app := m.Labels[apply.LabelApp]
			id := object.ID{Group: gk.Group, Kind: gk.Kind, Namespace: m.Namespace, Name: m.Name}
			t.mu.Lock()
			_, owned := t.inv[app][id]
			t.mu.Unlock()
			if owned {
				t.onDrift(app, id.String(), "deleted")
			}
		},
	}
}

// differs says how the live metadata m of an object of app differs from
// what deliver last applied, or "" when it does not (or the object is not
// in the app's inventory). The rule is the plan's fast path: the same
// resourceVersion, or for kinds whose status controllers write, the same
// generation.
func (t *tracker) differs(app string, id object.ID, m *metav1.PartialObjectMetadata) string {
	t.mu.Lock()
	e, ok := t.inv[app][id]
	t.mu.Unlock()
	switch {
	case !ok || e.ResourceVersion == "":
		// Not deliver's, or never confirmed applied: the next run's plan
		// dry-runs it anyway.
		return ""
	case m.ResourceVersion == e.ResourceVersion:
		return ""
	case e.Generation != 0 && m.Generation == e.Generation:
		return ""
	case e.Spec != "" && t.sameSpec(e, m.Generation):
		// A scale of replicas that are an autoscaler's or absent from
		// git: deliver does not revert it, so it is no drift.
		return ""
	case e.Generation != 0:
		return fmt.Sprintf("generation %d, applied %d", m.Generation, e.Generation)
	default:
		return "modified"
	}
}

// sameSpec reads the workload of e and reports whether its spec, without
// the replica count, is the one deliver applied. One GET, made only when
// the generation of such a workload moved: the informers hold metadata
// only.
func (t *tracker) sameSpec(e apply.Entry, generation int64) bool {
	seen := scaledSpec{generation, e.Spec}
	t.mu.Lock()
	known := t.scaled[e.ID] == seen
	t.mu.Unlock()
	if known {
		return true
	}
	mapping, err := t.mapper.RESTMapping(e.GroupKind(), e.Version)
	if err != nil {
		return false
	}
	live, err := t.dyn.Resource(mapping.Resource).Namespace(e.Namespace).Get(t.ctx, e.Name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	if apply.SpecDigest(live) != e.Spec {
		return false
	}
	t.mu.Lock()
	t.scaled[e.ID] = scaledSpec{live.GetGeneration(), e.Spec}
	t.mu.Unlock()
	return true
}

// drifted looks again, in the informer's cache, at one object that was
// reported as drifted; key is its object.ID string.
func (t *tracker) drifted(app, key string) bool {
	t.mu.Lock()
	var (
		entry apply.Entry
		found bool
	)
	for id, e := range t.inv[app] {
		if id.String() == key {
			entry, found = e, true
			break
		}
	}
	wk := t.kinds[entry.GroupKind()]
	t.mu.Unlock()
	if !found || wk == nil {
		return false
	}
	return t.cachedDiffers(app, entry.ID, wk) != ""
}

// cachedDiffers compares the informer's cached object with the inventory.
func (t *tracker) cachedDiffers(app string, id object.ID, wk *watchedKind) string {
	if !wk.informer.HasSynced() {
		return ""
	}
	key := id.Name
	if id.Namespace != "" {
		key = id.Namespace + "/" + id.Name
	}
	obj, exists, err := wk.informer.GetStore().GetByKey(key)
	if err != nil {
		return ""
	}
	if !exists {
		t.mu.Lock()
		e, ok := t.inv[app][id]
		t.mu.Unlock()
		if !ok || e.ResourceVersion == "" {
			return ""
		}
		return "deleted"
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return ""
	}
	return t.differs(app, id, m)
}

// driftedObjects compares every object of app's inventory with the
// informers' caches, and returns those that differ.
func (t *tracker) driftedObjects(app string) []string {
	t.mu.Lock()
	type item struct {
		id object.ID
		wk *watchedKind
	}
	var items []item
	for id := range t.inv[app] {
		if wk := t.kinds[id.GroupKind()]; wk != nil {
			items = append(items, item{id, wk})
		}
	}
	t.mu.Unlock()
	var out []string
	for _, it := range items {
		if t.cachedDiffers(app, it.id, it.wk) != "" {
			out = append(out, it.id.String())
		}
	}
	sort.Strings(out)
	return out
}
