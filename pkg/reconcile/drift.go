package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// tracker watches the metadata of every object that carries the
// deliver.dev/app label, for the kinds in the apps' inventories, and tells
// which differ from what deliver last applied. One informer per kind
// serves every app of one identity: a list and a watch per kind, then no
// request at all while nothing changes, however many objects there are.
//
// The apps that impersonate nobody are watched cluster-wide as deliver
// itself. An app with a ServiceAccount (apply.Options.ServiceAccountName)
// is watched as that ServiceAccount, one informer per kind and namespace
// of its objects: a tenant's Role grants no cluster-wide list, and the
// reconciler of tenant mode has no read access of its own to the tenants'
// namespaces (examples/identity/reconciler-rbac.yaml).
type tracker struct {
	ctx    context.Context
	sess   *apply.Session
	mapper meta.RESTMapper
	// factories hold the informers of each scope.
	factories map[scope]*scopeWatch
	onDrift   func(app, id, why string)
	log       *slog.Logger

	mu    sync.Mutex
	kinds map[watchKey]*watchedKind
	// users holds the user each app's requests impersonate; "" (or no
	// entry) for deliver's own.
	users map[string]string
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

// trackedMeta is what the informers keep of an object: the parts of its
// metadata drift reads (see track), and a fingerprint of the labels and
// annotations deliver owns in them. A kubectl label or annotate of a value deliver set
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
		// Only what drift reads is kept: the key, the versions, the app
		// label and the fingerprint. The whole metadata (other writers'
		// labels and annotations, managedFields) was about 2.6 KB an
		// object in a reconciler's heap profile, 10 MB for 4,000
		// objects; what is left is a few hundred bytes.
		kept := &metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, Namespace: o.Namespace, UID: o.UID,
			ResourceVersion: o.ResourceVersion, Generation: o.Generation,
			DeletionTimestamp: o.DeletionTimestamp,
		}}
		if app, ok := o.Labels[apply.LabelApp]; ok {
			kept.Labels = map[string]string{apply.LabelApp: app}
		}
		return &trackedMeta{PartialObjectMetadata: kept, owned: ownedFingerprint(o)}, nil
	}
	return obj, nil
}

// ownedFingerprint hashes the keys and live values of the labels and
// annotations that deliver's apply owns in m, its managedFields read by
// structured-merge-diff's fieldpath.
func ownedFingerprint(m *metav1.PartialObjectMetadata) uint64 {
	var labels, annotations []string
	field := func(name string) fieldpath.PathElement { return fieldpath.PathElement{FieldName: &name} }
	for _, mf := range m.ManagedFields {
		if mf.Manager != apply.DefaultFieldManager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var set fieldpath.Set
		if set.FromJSON(bytes.NewReader(mf.FieldsV1.Raw)) != nil {
			continue
		}
		md := set.WithPrefix(field("metadata"))
		for _, f := range []struct {
			name string
			keys *[]string
		}{{"labels", &labels}, {"annotations", &annotations}} {
			md.WithPrefix(field(f.name)).Members.Iterate(func(pe fieldpath.PathElement) {
				if pe.FieldName != nil {
					*f.keys = append(*f.keys, *pe.FieldName)
				}
			})
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

// scope is whose informers see an object: deliver's own, cluster-wide
// (user and namespace ""), or a ServiceAccount's in one namespace (in
// namespace "" for the cluster-scoped kinds).
type scope struct {
	user, namespace string
}

// watchKey names one informer: a kind in a scope.
type watchKey struct {
	scope
	gk schema.GroupKind
}

// watchedKind is one informer.
type watchedKind struct {
	key      watchKey
	informer cache.SharedIndexInformer
	// synced is done once the informer's initial list went through the
	// tracker's handler.
	synced cache.DoneChecker
	// denied is closed when the API server refused the informer's list
	// or watch (the ServiceAccount may not list the kind): its initial
	// list may never come, and waiting for it must not hold the loop.
	denied     chan struct{}
	deniedOnce sync.Once
	// stopped is closed when the informer's scope stops.
	stopped <-chan struct{}
}

// newTracker returns a tracker whose informers and reads go through the
// session's clients and RESTMapper: no clients or discovery of its own.
func newTracker(ctx context.Context, sess *apply.Session, onDrift func(app, id, why string)) *tracker {
	return &tracker{
		ctx: ctx, sess: sess, mapper: sess.RESTMapper(), onDrift: onDrift, log: slog.New(slog.DiscardHandler),
		factories: map[scope]*scopeWatch{},
		kinds:     map[watchKey]*watchedKind{}, users: map[string]string{}, inv: map[string]map[object.ID]apply.Entry{},
		scaled: map[object.ID]scaledSpec{}, owned: map[object.ID]uint64{},
	}
}

// scopeWatch is the informers of one scope, which stop together: when the
// tracker stops, or when no app is watched in the scope any more.
type scopeWatch struct {
	factory metadatainformer.SharedInformerFactory
	ctx     context.Context // the informers run until it ends
	cancel  context.CancelFunc
}

// close stops the scope's informers and waits for them to end.
func (sw *scopeWatch) close() {
	sw.cancel()
	sw.factory.Shutdown()
}

// stop ends the informers.
func (t *tracker) stop() {
	t.mu.Lock()
	scopes := make([]*scopeWatch, 0, len(t.factories))
	for _, sw := range t.factories {
		scopes = append(scopes, sw)
	}
	t.mu.Unlock()
	for _, sw := range scopes {
		sw.close()
	}
}

// scopeLocked is the scope that watches app's object id. Called with t.mu
// held.
func (t *tracker) scopeLocked(app string, id object.ID) scope {
	user := t.users[app]
	if user == "" {
		return scope{}
	}
	return scope{user: user, namespace: id.Namespace}
}

// kindLocked returns the informer that watches app's object id, or nil.
// Called with t.mu held.
func (t *tracker) kindLocked(app string, id object.ID) *watchedKind {
	return t.kinds[watchKey{t.scopeLocked(app, id), id.GroupKind()}]
}

// factoryLocked returns the informers of sc, made on first use. Called
// with t.mu held.
func (t *tracker) factoryLocked(sc scope) (*scopeWatch, error) {
	if sw, ok := t.factories[sc]; ok {
		return sw, nil
	}
	mc, _, err := t.sess.ReadersAs(sc.user)
	if err != nil {
		return nil, err
	}
	// Only deliver's objects: a cluster's other objects cost nothing.
	// deliver's own scope has namespace "", metav1.NamespaceAll.
	f := metadatainformer.NewFilteredSharedInformerFactory(mc, 0, sc.namespace, func(o *metav1.ListOptions) {
		o.LabelSelector = apply.LabelApp
	})
	ctx, cancel := context.WithCancel(t.ctx)
	sw := &scopeWatch{factory: f, ctx: ctx, cancel: cancel}
	t.factories[sc] = sw
	return sw, nil
}

// setInventory replaces what app last applied; nil forgets the app. user
// is the user app's requests impersonate ("" for deliver's own): its
// objects are watched as that user.
//
// The fingerprints of the labels and annotations deliver left are taken
// again, from the informers' caches: a run that applied an object left
// new ones, and one that found an object as it would apply it (its
// labels have deliver's values, though another manager owns one now)
// accepted the live ones, which must then be no drift, or the app would
// run again and again.
func (t *tracker) setInventory(app, user string, inv *apply.Inventory) {
	t.mu.Lock()
	before := t.scopesLocked(app)
	t.setInventoryLocked(app, user, inv)
	unused := t.unusedLocked(before, t.scopesLocked(app))
	t.mu.Unlock()
	for _, sw := range unused {
		sw.close()
	}
}

// scopesLocked returns the scopes that watch app's objects, but deliver's
// own. Called with t.mu held.
func (t *tracker) scopesLocked(app string) map[scope]bool {
	if t.users[app] == "" {
		return nil // deliver's own scope, cluster-wide, is never dropped
	}
	out := map[scope]bool{}
	for id := range t.inv[app] {
		out[t.scopeLocked(app, id)] = true
	}
	return out
}

// unusedLocked forgets the scopes of before that are not in after and in
// which no app is watched any more, and returns their informers to close:
// an app that impersonates a ServiceAccount is watched per namespace, and
// namespaces come and go (an environment per pull request); a reconciler
// would otherwise keep a watch of every namespace such an app ever had,
// for months. Called with t.mu held.
func (t *tracker) unusedLocked(before, after map[scope]bool) []*scopeWatch {
	var gone []scope
	for sc := range before {
		if !after[sc] {
			gone = append(gone, sc)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	used := map[scope]bool{}
	for app := range t.inv {
		for sc := range t.scopesLocked(app) {
			used[sc] = true
		}
	}
	var out []*scopeWatch
	for _, sc := range gone {
		sw, ok := t.factories[sc]
		if used[sc] || !ok {
			continue
		}
		delete(t.factories, sc)
		for key := range t.kinds {
			if key.scope == sc {
				delete(t.kinds, key)
			}
		}
		out = append(out, sw)
	}
	return out
}

// setInventoryLocked is setInventory's change of what the tracker holds.
// Called with t.mu held.
func (t *tracker) setInventoryLocked(app, user string, inv *apply.Inventory) {
	for id := range t.inv[app] {
		delete(t.owned, id)
	}
	if inv == nil {
		delete(t.inv, app)
		delete(t.users, app)
		return
	}
	if user == "" {
		delete(t.users, app)
	} else {
		t.users[app] = user
	}
	m := make(map[object.ID]apply.Entry, len(inv.Entries))
	for _, e := range inv.Entries {
		m[e.ID] = e
		delete(t.owned, e.ID)
		if wk := t.kindLocked(app, e.ID); wk != nil {
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

// ensureKinds starts an informer for each kind (and scope) of the
// inventories that has none yet; with wait, it returns once their initial
// lists are in, or were refused.
func (t *tracker) ensureKinds(ctx context.Context, wait bool) {
	t.mu.Lock()
	var started []*scopeWatch
	for app, entries := range t.inv {
		for id, e := range entries {
			key := watchKey{t.scopeLocked(app, id), id.GroupKind()}
			if _, ok := t.kinds[key]; ok {
				continue
			}
			mapping, err := t.mapper.RESTMapping(key.gk, e.Version)
			if err != nil {
				// The kind is not served (its CRD is gone): nothing of it
				// to watch. A later run that creates it comes back here.
				continue
			}
			sw, err := t.factoryLocked(key.scope)
			if err != nil {
				t.log.Warn("drift watch", "kind", key.gk.String(), "as", key.user, "err", err)
				continue
			}
			wk := &watchedKind{key: key, denied: make(chan struct{}), stopped: sw.ctx.Done()}
			wk.informer = sw.factory.ForResource(mapping.Resource).Informer()
			_ = wk.informer.SetTransform(track)
			_ = wk.informer.SetWatchErrorHandlerWithContext(t.watchError(wk))
			reg, err := wk.informer.AddEventHandler(t.handler(key))
			if err != nil {
				continue
			}
			wk.synced = reg.HasSyncedChecker()
			t.kinds[key] = wk
			started = append(started, sw)
		}
	}
	kinds := make([]*watchedKind, 0, len(t.kinds))
	for _, wk := range t.kinds {
		kinds = append(kinds, wk)
	}
	t.mu.Unlock()
	if len(started) == 0 {
		return
	}
	for _, sw := range started {
		sw.factory.Start(sw.ctx.Done()) // starts only the informers not yet started
	}
	if wait {
		// Not the factory's WaitForCacheSync: it polls every 100ms, which
		// added about 100ms to every no-op Once pass, and it waits for the
		// stores only. This wakes as soon as every handler has seen the
		// initial list (or the list was refused), so the drift it found is
		// noted before the caller schedules.
		for _, wk := range kinds {
			select {
			case <-wk.synced.Done():
			case <-wk.denied:
			case <-wk.stopped: // its scope was dropped meanwhile
			case <-ctx.Done():
				return
			}
		}
	}
}

// watchError is wk's reflector's error handler: it logs what the API
// server refused, once, and marks wk denied, so that a ServiceAccount
// without the right to list a kind costs its app drift detection of that
// kind (the app's runs still revert drift), not the whole loop. The
// reflector retries with its backoff: once the Role allows it, the list
// comes in and drift is watched again.
func (t *tracker) watchError(wk *watchedKind) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			return
		}
		wk.deniedOnce.Do(func() {
			close(wk.denied)
			user := wk.key.user
			if user == "" {
				user = "deliver"
			}
			t.log.Warn("drift watch refused", "kind", wk.key.gk.String(), "namespace", wk.key.namespace, "as", user, "err", err)
		})
	}
}

// handler checks every event of the informer key against the inventory of
// the app named by the object's label, when that app is watched in key's
// scope: deliver's cluster-wide informers also see the objects of the apps
// that have a ServiceAccount, which their own informers judge.
func (t *tracker) handler(key watchKey) cache.ResourceEventHandler {
	gk := key.gk
	mine := func(app string) bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.users[app] == key.user
	}
	check := func(obj any) {
		m, ok := obj.(*trackedMeta)
		if !ok {
			return
		}
		app := m.Labels[apply.LabelApp]
		if !mine(app) {
			return
		}
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
			owned = owned && t.users[app] == key.user
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
	case e.Spec != "" && t.sameSpec(app, e, m):
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
func (t *tracker) sameSpec(app string, e apply.Entry, m *trackedMeta) bool {
	version := fmt.Sprintf("g%d", m.Generation)
	if m.Generation == 0 {
		version = "r" + m.ResourceVersion
	}
	seen := scaledSpec{version, e.Spec}
	t.mu.Lock()
	known := t.scaled[e.ID] == seen
	user := t.users[app]
	t.mu.Unlock()
	if known {
		return true
	}
	mapping, err := t.mapper.RESTMapping(e.GroupKind(), e.Version)
	if err != nil {
		return false
	}
	_, dyn, err := t.sess.ReadersAs(user)
	if err != nil {
		return false
	}
	live, err := dyn.Resource(mapping.Resource).Namespace(e.Namespace).Get(t.ctx, e.Name, metav1.GetOptions{})
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
	wk := t.kindLocked(app, entry.ID)
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
		if wk := t.kindLocked(app, id); wk != nil {
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

// userOf is the user app's requests impersonate at the current commit
// (see apply.Options.ServiceAccountName): its drift is watched as that
// user. "" for deliver's own.
func (r *Reconciler) userOf(app string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.apps[app]
	if s == nil {
		return ""
	}
	return apply.ServiceAccountUser(s.app.Namespace, s.app.ServiceAccountName)
}
