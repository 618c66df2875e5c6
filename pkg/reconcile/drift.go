package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strings"
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
	// owned holds, for each object compared by generation, the
	// fingerprint of the labels and annotations deliver owns (see
	// trackedMeta) as deliver left them: the generation does not move
	// when they change, so they are compared on their own. It is taken
	// from the object at the resourceVersion of its inventory entry, or,
	// when the informer was past it (or not there yet) as the inventory
	// was read, from the first seen at its generation, replaced when that
	// resourceVersion's event comes.
	owned map[object.ID]uint64
}

// trackedMeta is what the informers keep of an object: its metadata
// without managedFields, and a fingerprint of the labels and annotations
// deliver owns in them. A kubectl label or annotate of a value deliver set
// moves neither the generation nor deliver's manifest, but it takes the
// key from deliver's managedFields entry (or changes its value), and so
// the fingerprint; status updates, a controller's annotations and labels
// others add do not.
type trackedMeta struct {
	*metav1.PartialObjectMetadata
	owned uint64
}

// track is the informers' transform. It may see an object it already
// transformed (a delete's last known state), which it returns as is.
func track(obj any) (any, error) {
	switch o := obj.(type) {
	case *trackedMeta:
		return o, nil
	case *metav1.PartialObjectMetadata:
		fp := ownedFingerprint(o)
		// Only metadata is kept, and not even managedFields: 1,000
		// objects stay well under a megabyte.
		o.ManagedFields = nil
		return &trackedMeta{PartialObjectMetadata: o, owned: fp}, nil
	}
	return obj, nil
}

// ownedFingerprint hashes the keys and live values of the labels and
// annotations that deliver's apply owns in m.
func ownedFingerprint(m *metav1.PartialObjectMetadata) uint64 {
	var labels, annotations []string
	for _, mf := range m.ManagedFields {
		if mf.Manager != apply.DefaultFieldManager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var f struct {
			Metadata struct {
				Labels      map[string]json.RawMessage `json:"f:labels"`
				Annotations map[string]json.RawMessage `json:"f:annotations"`
			} `json:"f:metadata"`
		}
		if json.Unmarshal(mf.FieldsV1.Raw, &f) != nil {
			continue
		}
		for k := range f.Metadata.Labels {
			if key, ok := strings.CutPrefix(k, "f:"); ok {
				labels = append(labels, key)
			}
		}
		for k := range f.Metadata.Annotations {
			if key, ok := strings.CutPrefix(k, "f:"); ok {
				annotations = append(annotations, key)
			}
		}
	}
	slices.Sort(labels)
	slices.Sort(annotations)
	h := fnv.New64a()
	for _, k := range labels {
		v, ok := m.Labels[k]
		fmt.Fprintf(h, "l%q=%t%q\n", k, ok, v)
	}
	for _, k := range annotations {
		v, ok := m.Annotations[k]
		fmt.Fprintf(h, "a%q=%t%q\n", k, ok, v)
	}
	return h.Sum64()
}

// scaledSpec is a generation ("g3") of an object, or a resourceVersion
// ("r812") of one without generations, that matched Spec.
type scaledSpec struct {
	version string
	spec    string
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
		scaled: map[object.ID]scaledSpec{}, owned: map[object.ID]uint64{},
	}
}

// stop ends the informers; their goroutines end with the tracker's ctx.
func (t *tracker) stop() { t.factory.Shutdown() }

// setInventory replaces what app last applied; nil forgets the app.
//
// The fingerprints of the labels and annotations deliver left are taken
// again, from the informers' caches: a run that applied an object left
// new ones, and one that found an object as it would apply it (its
// labels have deliver's values, though another manager owns one now)
// accepted the live ones, which must then be no drift, or the app would
// run again and again.
func (t *tracker) setInventory(app string, inv *apply.Inventory) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.inv[app] {
		delete(t.owned, id)
	}
	if inv == nil {
		delete(t.inv, app)
		return
	}
	m := make(map[object.ID]apply.Entry, len(inv.Entries))
	for _, e := range inv.Entries {
		m[e.ID] = e
		delete(t.owned, e.ID)
		if wk := t.kinds[e.GroupKind()]; wk != nil {
			if tm := cached(wk, e.ID); tm != nil {
				t.learnLocked(e, tm)
			}
		}
	}
	t.inv[app] = m
}

// learnLocked records the fingerprint of tm as the one deliver left, when
// tm is the object at e's resourceVersion, or (with no fingerprint known
// yet) at its generation. Called with t.mu held.
func (t *tracker) learnLocked(e apply.Entry, tm *trackedMeta) {
	if e.ResourceVersion == "" || e.Generation == 0 {
		return
	}
	if tm.ResourceVersion == e.ResourceVersion {
		t.owned[e.ID] = tm.owned
		return
	}
	if _, known := t.owned[e.ID]; !known && tm.Generation == e.Generation {
		t.owned[e.ID] = tm.owned
	}
}

// cached returns the informer's object of id, or nil.
func cached(wk *watchedKind, id object.ID) *trackedMeta {
	key := id.Name
	if id.Namespace != "" {
		key = id.Namespace + "/" + id.Name
	}
	obj, exists, err := wk.informer.GetStore().GetByKey(key)
	if err != nil || !exists {
		return nil
	}
	tm, _ := obj.(*trackedMeta)
	return tm
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
			_ = inf.SetTransform(track)
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
		m, ok := obj.(*trackedMeta)
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
			m, ok := obj.(*trackedMeta)
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
// generation and the same labels and annotations of deliver's (see
// trackedMeta).
func (t *tracker) differs(app string, id object.ID, m *trackedMeta) string {
	t.mu.Lock()
	e, ok := t.inv[app][id]
	if ok {
		t.learnLocked(e, m)
	}
	base, known := t.owned[id]
	t.mu.Unlock()
	switch {
	case !ok || e.ResourceVersion == "":
		// Not deliver's, or never confirmed applied: the next run's plan
		// dry-runs it anyway.
		return ""
	case m.ResourceVersion == e.ResourceVersion:
		return ""
	case e.Generation != 0 && known && m.owned != base:
		return "labels or annotations deliver set changed"
	case e.Generation != 0 && m.Generation == e.Generation:
		return ""
	case e.Spec != "" && t.sameSpec(e, m):
		// A scale of replicas that are an autoscaler's or absent from
		// git, or a write of fields an ignore rule leaves to others:
		// deliver does not revert it, so it is no drift.
		return ""
	case e.Generation != 0:
		return fmt.Sprintf("generation %d, applied %d", m.Generation, e.Generation)
	default:
		return "modified"
	}
}

// sameSpec reads the object of e and reports whether it is, without the
// fields it leaves to others (its replica count, the fields of ignore
// rules: see apply.EntryDigest), the one deliver applied. One GET, made
// only when the generation of such an object moved (its resourceVersion,
// for kinds without a generation): the informers hold metadata only.
func (t *tracker) sameSpec(e apply.Entry, m *trackedMeta) bool {
	version := fmt.Sprintf("g%d", m.Generation)
	if m.Generation == 0 {
		version = "r" + m.ResourceVersion
	}
	seen := scaledSpec{version, e.Spec}
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
	if apply.EntryDigest(e, live) != e.Spec {
		return false
	}
	if live.GetGeneration() == 0 {
		seen.version = "r" + live.GetResourceVersion()
	} else {
		seen.version = fmt.Sprintf("g%d", live.GetGeneration())
	}
	t.mu.Lock()
	t.scaled[e.ID] = seen
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
	m := cached(wk, id)
	if m == nil {
		t.mu.Lock()
		e, ok := t.inv[app][id]
		t.mu.Unlock()
		if !ok || e.ResourceVersion == "" {
			return ""
		}
		return "deleted"
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
