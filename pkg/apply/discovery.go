package apply

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/clock"

	"golang.org/x/sync/singleflight"
)

// aggregatedList is the kind of an aggregated discovery document.
var aggregatedList = schema.GroupVersionKind{Group: "apidiscovery.k8s.io", Version: "v2", Kind: "APIGroupDiscoveryList"}

// parallelDiscovery is client-go's discovery client with one change: the
// two documents of aggregated discovery, /api and /apis, are fetched at the
// same time instead of one after the other. Discovery comes before the
// first list of every run, so that is one round trip less on the critical
// path of every process (10-13 ms against a busy local API server). When
// either answer is anything but an aggregated discovery v2 document, or
// fails, client-go's own sequential fetch runs instead, with its handling
// of older servers and of errors. (An API server before Kubernetes 1.30
// serves no v2 document: it is then asked for the two documents twice,
// a few milliseconds once per process.)
type parallelDiscovery struct {
	*discovery.DiscoveryClient
}

// GroupsAndMaybeResources implements discovery.AggregatedDiscoveryInterface.
func (d parallelDiscovery) GroupsAndMaybeResources() (*metav1.APIGroupList, map[schema.GroupVersion]*metav1.APIResourceList, map[schema.GroupVersion]error, error) {
	return d.GroupsAndMaybeResourcesWithContext(context.Background())
}

// GroupsAndMaybeResourcesWithContext implements
// discovery.AggregatedDiscoveryInterfaceWithContext, which client-go's
// memory cache prefers.
func (d parallelDiscovery) GroupsAndMaybeResourcesWithContext(ctx context.Context) (*metav1.APIGroupList, map[schema.GroupVersion]*metav1.APIResourceList, map[schema.GroupVersion]error, error) {
	var (
		docs [2]*apidiscoveryv2.APIGroupDiscoveryList
		wg   sync.WaitGroup
	)
	for i, path := range []string{"/api", "/apis"} {
		wg.Go(func() { docs[i] = d.aggregated(ctx, path) })
	}
	wg.Wait()
	if docs[0] == nil || docs[1] == nil {
		return d.DiscoveryClient.GroupsAndMaybeResourcesWithContext(ctx)
	}
	// As client-go merges them: the legacy group first.
	groups, resources, failed := discovery.SplitGroupsAndResources(*docs[0])
	apiGroups, apiResources, apiFailed := discovery.SplitGroupsAndResources(*docs[1])
	groups.Groups = append(groups.Groups, apiGroups.Groups...)
	maps.Copy(resources, apiResources)
	maps.Copy(failed, apiFailed)
	return groups, resources, failed, nil
}

// ServerGroupsAndResources implements discovery.ServerResourcesInterface
// with the parallel fetch: the embedded client's own would bypass it.
func (d parallelDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return d.ServerGroupsAndResourcesWithContext(context.Background())
}

// ServerGroupsAndResourcesWithContext implements
// discovery.ServerResourcesInterfaceWithContext, which the RESTMapper's
// discovery (restmapper.GetAPIGroupResources) calls, with the parallel
// fetch.
func (d parallelDiscovery) ServerGroupsAndResourcesWithContext(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return discovery.ServerGroupsAndResourcesWithContext(ctx, d)
}

// aggregated returns the aggregated discovery document at path, or nil
// when the server answers anything else.
func (d parallelDiscovery) aggregated(ctx context.Context, path string) *apidiscoveryv2.APIGroupDiscoveryList {
	var contentType string
	body, err := d.RESTClient().Get().AbsPath(path).
		SetHeader("Accept", discovery.AcceptV2+","+discovery.AcceptV1).
		Do(ctx).ContentType(&contentType).Raw()
	if err != nil {
		return nil
	}
	if ok, _ := discovery.ContentTypeIsGVK(contentType, aggregatedList); !ok {
		return nil
	}
	var list apidiscoveryv2.APIGroupDiscoveryList
	if json.Unmarshal(body, &list) != nil {
		return nil
	}
	return &list
}

// missRefreshAge is how old the discovery cache must be before a lookup
// that finds no match discovers again. Kinds that are looked up and
// expected to be missing (KEDA's ScaledObject where KEDA is not installed,
// a kind whose CRD the same run creates) miss in every plan: without a
// floor, a thousand apps would make a thousand discoveries again.
const missRefreshAge = 10 * time.Second

// discoveryMaxAge is how long a discovery is used at most: a long-lived
// process (the reconciler) also forgets a kind whose CRD someone else
// deleted, as a Manager made per run used to. Once a minute is nothing
// next to the runs of a thousand apps.
const discoveryMaxAge = time.Minute

// sharedMapper is the RESTMapper of a Session: one discovery for every
// app of the process, where each Manager used to discover for itself.
//
// Unlike client-go's DeferredDiscoveryRESTMapper, which it replaces, it
// is built for many apps using it at once:
//   - a lookup maps with a snapshot of discovery taken whole: a Reset by
//     one app (after it created CRDs) never leaves another app's lookup in
//     flight looking at a cache that is half emptied;
//   - one discovery is in flight at a time (a singleflight group): the
//     lookups of every app that need it wait for that one instead of each
//     sending its own;
//   - when a discovery after a Reset fails, lookups go on with the
//     snapshot of before (kinds do not vanish because the API server had a
//     hiccup), and the next lookup tries again;
//   - a lookup that finds no match discovers again when the snapshot is
//     older than missAge: a long-lived process (the reconciler) sees a CRD
//     installed by someone else, which client-go's mapper never does once
//     it has discovered;
//   - a snapshot older than maxAge is discovered again at the next lookup,
//     so that a kind whose CRD was deleted is forgotten too.
type sharedMapper struct {
	disc    discovery.DiscoveryInterface
	clock   clock.PassiveClock
	missAge time.Duration
	maxAge  time.Duration

	// flight joins the lookups that need a discovery to the one in
	// flight.
	flight singleflight.Group

	mu     sync.Mutex
	cur    *mapperSnapshot // nil until the first discovery
	resets uint64          // Reset calls: a discovery started before the last one is stale
	fresh  uint64          // the value of resets when cur's discovery started
}

// mapperSnapshot is the RESTMapper of one discovery.
type mapperSnapshot struct {
	meta.RESTMapper
	at time.Time // when its discovery started
	// groups are what the discovery found, the RESTMapper's source and
	// that of Capabilities.
	groups []*restmapper.APIGroupResources
	capsState

	// The answers of RESTMapping, which every stage asks for every
	// object: client-go's discovery mapper goes through each group's
	// mapper and allocates for each call (5% of the CPU of a CLI apply of
	// 1,000 objects, docs/performance.md). A snapshot does not change, so
	// neither do its answers.
	mu       sync.Mutex
	mappings map[mappingKey]mappingAnswer
}

type mappingKey struct {
	gk       schema.GroupKind
	versions string // joined with ","
}

type mappingAnswer struct {
	m   *meta.RESTMapping
	err error
}

// RESTMapping implements meta.RESTMapper, remembering its answers; each
// caller gets its own copy of a mapping.
func (s *mapperSnapshot) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	k := mappingKey{gk, strings.Join(versions, ",")}
	s.mu.Lock()
	a, ok := s.mappings[k]
	s.mu.Unlock()
	if !ok {
		a.m, a.err = s.RESTMapper.RESTMapping(gk, versions...)
		s.mu.Lock()
		if s.mappings == nil {
			s.mappings = map[mappingKey]mappingAnswer{}
		}
		s.mappings[k] = a
		s.mu.Unlock()
	}
	if a.m == nil {
		return nil, a.err
	}
	c := *a.m
	return &c, a.err
}

var _ meta.ResettableRESTMapper = (*sharedMapper)(nil)

func newSharedMapper(disc discovery.DiscoveryInterface, clk clock.PassiveClock) *sharedMapper {
	return &sharedMapper{disc: disc, clock: clk, missAge: missRefreshAge, maxAge: discoveryMaxAge}
}

// Reset makes the next lookup discover again: after a stage created CRDs,
// whose kinds the later stages (and other apps) use. Lookups in flight
// finish with the snapshot they have.
func (s *sharedMapper) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resets++
}

// snapshot returns the current snapshot, discovering first when there is
// none or a Reset came after it.
func (s *sharedMapper) snapshot() (*mapperSnapshot, error) {
	return s.snapshotWithin(s.maxAge)
}

// snapshotWithin is snapshot, discovering again also when the current
// snapshot is older than age.
func (s *sharedMapper) snapshotWithin(age time.Duration) (*mapperSnapshot, error) {
	s.mu.Lock()
	cur, valid := s.cur, s.cur != nil && s.fresh == s.resets && s.clock.Since(s.cur.at) < min(age, s.maxAge)
	s.mu.Unlock()
	if valid {
		return cur, nil
	}
	snap, err := s.discover(cur)
	if err != nil && cur != nil {
		// Go on with what was known; the next lookup discovers again.
		return cur, nil
	}
	return snap, err
}

// discover returns a snapshot newer than seen (nil: any), joining the
// discovery in flight or starting one.
func (s *sharedMapper) discover(seen *mapperSnapshot) (*mapperSnapshot, error) {
	s.mu.Lock()
	if s.cur != nil && s.cur != seen && s.fresh == s.resets && s.clock.Since(s.cur.at) < s.maxAge {
		cur := s.cur // another lookup discovered meanwhile
		s.mu.Unlock()
		return cur, nil
	}
	s.mu.Unlock()
	v, err, _ := s.flight.Do("", func() (any, error) {
		s.mu.Lock()
		resets := s.resets
		s.mu.Unlock()
		start := s.clock.Now()
		groups, err := restmapper.GetAPIGroupResources(s.disc)
		if err != nil {
			return nil, err
		}
		snap := &mapperSnapshot{RESTMapper: restmapper.NewDiscoveryRESTMapper(groups), at: start, groups: groups}
		s.mu.Lock()
		s.cur, s.fresh = snap, resets
		s.mu.Unlock()
		return snap, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*mapperSnapshot), nil
}

// lookup runs f on the current snapshot and, when it finds no match in a
// snapshot older than missAge, once more on a new one.
func lookup[T any](s *sharedMapper, f func(meta.RESTMapper) (T, error)) (T, error) {
	snap, err := s.snapshot()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := f(snap)
	if err == nil || !meta.IsNoMatchError(err) || s.clock.Since(snap.at) < s.missAge {
		return v, err
	}
	newer, derr := s.discover(snap)
	if derr != nil || newer == snap {
		return v, err
	}
	return f(newer)
}

// KindFor implements meta.RESTMapper.
func (s *sharedMapper) KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	return lookup(s, func(m meta.RESTMapper) (schema.GroupVersionKind, error) { return m.KindFor(resource) })
}

// KindsFor implements meta.RESTMapper.
func (s *sharedMapper) KindsFor(resource schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	return lookup(s, func(m meta.RESTMapper) ([]schema.GroupVersionKind, error) { return m.KindsFor(resource) })
}

// ResourceFor implements meta.RESTMapper.
func (s *sharedMapper) ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	return lookup(s, func(m meta.RESTMapper) (schema.GroupVersionResource, error) { return m.ResourceFor(input) })
}

// ResourcesFor implements meta.RESTMapper.
func (s *sharedMapper) ResourcesFor(input schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	return lookup(s, func(m meta.RESTMapper) ([]schema.GroupVersionResource, error) { return m.ResourcesFor(input) })
}

// RESTMapping implements meta.RESTMapper.
func (s *sharedMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	return lookup(s, func(m meta.RESTMapper) (*meta.RESTMapping, error) { return m.RESTMapping(gk, versions...) })
}

// RESTMappings implements meta.RESTMapper.
func (s *sharedMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	return lookup(s, func(m meta.RESTMapper) ([]*meta.RESTMapping, error) { return m.RESTMappings(gk, versions...) })
}

// ResourceSingularizer implements meta.RESTMapper.
func (s *sharedMapper) ResourceSingularizer(resource string) (string, error) {
	return lookup(s, func(m meta.RESTMapper) (string, error) { return m.ResourceSingularizer(resource) })
}
