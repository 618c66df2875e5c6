package apply

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeDiscovery serves the resources it is given, counts the discoveries,
// can fail them, and can hold them until released (to have lookups of
// several apps, and Resets, meet one discovery in flight).
type fakeDiscovery struct {
	*fakediscovery.FakeDiscovery
	mu    sync.Mutex
	fail  error
	hold  chan struct{} // when set, a discovery waits until it is closed
	count atomic.Int64
}

var (
	configMaps = &metav1.APIResourceList{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "configmaps", Namespaced: true, Kind: "ConfigMap"},
	}}
	widgets = &metav1.APIResourceList{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
		{Name: "widgets", Namespaced: true, Kind: "Widget"},
	}}
	configMapGK = schema.GroupKind{Kind: "ConfigMap"}
	widgetGK    = schema.GroupKind{Group: "example.com", Kind: "Widget"}
)

func newFakeDiscovery(lists ...*metav1.APIResourceList) *fakeDiscovery {
	return &fakeDiscovery{FakeDiscovery: &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: lists}}}
}

func (d *fakeDiscovery) serve(lists ...*metav1.APIResourceList) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Resources = lists
}

func (d *fakeDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return d.ServerGroupsAndResourcesWithContext(context.Background())
}

func (d *fakeDiscovery) ServerGroupsAndResourcesWithContext(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	d.count.Add(1)
	d.mu.Lock()
	hold, fail := d.hold, d.fail
	d.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if fail != nil {
		return nil, nil, fail
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerGroupsAndResourcesWithContext(ctx)
}

// waitFor polls cond (what other goroutines do cannot be waited for
// otherwise) for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSharedMapperOneDiscoveryForManyLookups: the lookups of many apps at
// once, and those after, are answered by one discovery.
func TestSharedMapperOneDiscoveryForManyLookups(t *testing.T) {
	t.Parallel()
	d := newFakeDiscovery(configMaps)
	hold := make(chan struct{})
	d.hold = hold
	m := newSharedMapper(d, clocktesting.NewFakeClock(time.Now()))
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Go(func() { _, errs[i] = m.RESTMapping(configMapGK, "v1") })
	}
	waitFor(t, "the discovery started", func() bool { return d.count.Load() > 0 })
	close(hold)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	if _, err := m.RESTMapping(configMapGK, "v1"); err != nil {
		t.Fatal(err)
	}
	if n := d.count.Load(); n != 1 {
		t.Errorf("%d discoveries for 51 lookups, want 1", n)
	}
}

// TestSharedMapperRefresh: when a lookup discovers again.
func TestSharedMapperRefresh(t *testing.T) {
	tests := []struct {
		name string
		// change happens after a first lookup of ConfigMap: the cluster
		// gains the kind Widget, and time passes or the mapper is reset.
		change func(m *sharedMapper, clk *clocktesting.FakeClock)
		// widget says the lookup of Widget then finds it, after
		// discoveries in all.
		widget      bool
		discoveries int64
	}{
		{"a miss in a young cache does not discover", func(*sharedMapper, *clocktesting.FakeClock) {}, false, 1},
		{"a miss in a cache older than missAge discovers", func(_ *sharedMapper, clk *clocktesting.FakeClock) { clk.Step(missRefreshAge) }, true, 2},
		{"a Reset discovers at the next lookup", func(m *sharedMapper, _ *clocktesting.FakeClock) { m.Reset() }, true, 2},
		{"a cache older than maxAge is discovered again", func(_ *sharedMapper, clk *clocktesting.FakeClock) { clk.Step(discoveryMaxAge) }, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDiscovery(configMaps)
			clk := clocktesting.NewFakeClock(time.Now())
			m := newSharedMapper(d, clk)
			if _, err := m.RESTMapping(configMapGK, "v1"); err != nil {
				t.Fatal(err)
			}
			d.serve(configMaps, widgets)
			tt.change(m, clk)
			_, err := m.RESTMapping(widgetGK, "v1")
			if tt.widget && err != nil {
				t.Errorf("Widget: %v, want it mapped", err)
			}
			if !tt.widget && !meta.IsNoMatchError(err) {
				t.Errorf("Widget: %v, want no match", err)
			}
			if n := d.count.Load(); n != tt.discoveries {
				t.Errorf("%d discoveries, want %d", n, tt.discoveries)
			}
		})
	}
}

// TestSharedMapperSnapshotWithin: a snapshot asked for within an age
// (FreshCapabilities) is discovered again once the current one is older,
// long before maxAge, and shares the current one while it is younger.
func TestSharedMapperSnapshotWithin(t *testing.T) {
	t.Parallel()
	d := newFakeDiscovery(configMaps)
	clk := clocktesting.NewFakeClock(time.Now())
	m := newSharedMapper(d, clk)
	first, err := m.snapshotWithin(missRefreshAge)
	if err != nil {
		t.Fatal(err)
	}
	d.serve(configMaps, widgets)
	clk.Step(missRefreshAge / 2)
	if snap, err := m.snapshotWithin(missRefreshAge); err != nil || snap != first {
		t.Errorf("a snapshot younger than the age: %v, new one %t, want the current one", err, snap != first)
	}
	clk.Step(missRefreshAge / 2)
	snap, err := m.snapshotWithin(missRefreshAge)
	if err != nil || snap == first {
		t.Fatalf("a snapshot as old as the age: %v, new one %t, want a new one", err, snap != first)
	}
	if _, err := snap.RESTMapping(widgetGK, "v1"); err != nil {
		t.Errorf("Widget in the new snapshot: %v", err)
	}
	// Every lookup uses it from then on.
	if _, err := m.RESTMapping(widgetGK, "v1"); err != nil {
		t.Errorf("Widget: %v", err)
	}
	if n := d.count.Load(); n != 2 {
		t.Errorf("%d discoveries, want 2", n)
	}
}

// TestSharedMapperFailedRediscovery: when the discovery after a Reset
// fails, lookups of the kinds known before still succeed (an app in
// flight does not fail because another one reset the mapper while the API
// server had a hiccup), and the next lookup discovers again.
func TestSharedMapperFailedRediscovery(t *testing.T) {
	t.Parallel()
	d := newFakeDiscovery(configMaps)
	m := newSharedMapper(d, clocktesting.NewFakeClock(time.Now()))
	if _, err := m.RESTMapping(configMapGK, "v1"); err != nil {
		t.Fatal(err)
	}
	m.Reset()
	d.fail = errors.New("connection refused")
	if _, err := m.RESTMapping(configMapGK, "v1"); err != nil {
		t.Errorf("ConfigMap after a failed rediscovery: %v", err)
	}
	d.fail = nil
	d.serve(configMaps, widgets)
	if _, err := m.RESTMapping(widgetGK, "v1"); err != nil {
		t.Errorf("Widget once discovery works again: %v", err)
	}
	if n := d.count.Load(); n != 3 {
		t.Errorf("%d discoveries, want 3 (first, failed, again)", n)
	}
}

// TestSharedMapperFirstDiscoveryFails: without a cache to fall back on,
// the error of discovery is the lookup's.
func TestSharedMapperFirstDiscoveryFails(t *testing.T) {
	t.Parallel()
	d := newFakeDiscovery(configMaps)
	d.fail = errors.New("connection refused")
	m := newSharedMapper(d, clocktesting.NewFakeClock(time.Now()))
	if _, err := m.RESTMapping(configMapGK, "v1"); err == nil || err.Error() != "connection refused" {
		t.Errorf("lookup: %v, want the discovery's error", err)
	}
}

// TestSharedMapperResetDuringDiscovery: a Reset that comes while a
// discovery is in flight (the CRD became served after it started) is not
// lost: the lookup after the discovery discovers again.
func TestSharedMapperResetDuringDiscovery(t *testing.T) {
	t.Parallel()
	d := newFakeDiscovery(configMaps)
	hold := make(chan struct{})
	d.hold = hold
	m := newSharedMapper(d, clocktesting.NewFakeClock(time.Now()))
	done := make(chan error)
	go func() {
		_, err := m.RESTMapping(configMapGK, "v1")
		done <- err
	}()
	waitFor(t, "the discovery started", func() bool { return d.count.Load() > 0 })
	m.Reset()
	d.serve(configMaps, widgets)
	d.mu.Lock()
	d.hold = nil
	d.mu.Unlock()
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := m.RESTMapping(widgetGK, "v1"); err != nil {
		t.Errorf("Widget after a Reset during the discovery: %v", err)
	}
	if n := d.count.Load(); n != 2 {
		t.Errorf("%d discoveries, want 2", n)
	}
}

// countingMapper counts RESTMapping calls.
type countingMapper struct {
	meta.RESTMapper
	calls atomic.Int64
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.calls.Add(1)
	return c.RESTMapper.RESTMapping(gk, versions...)
}

// TestMapperSnapshotRemembers: a snapshot asks its mapper once per kind
// and versions, answers as it did (errors included), and gives each
// caller a copy that the caller may change.
func TestMapperSnapshotRemembers(t *testing.T) {
	t.Parallel()
	base := meta.NewDefaultRESTMapper(nil)
	base.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	cm := &countingMapper{RESTMapper: base}
	s := &mapperSnapshot{RESTMapper: cm}
	for i := range 3 {
		m, err := s.RESTMapping(configMapGK, "v1")
		if err != nil {
			t.Fatal(err)
		}
		if m.Resource.Resource != "configmaps" || m.Scope.Name() != meta.RESTScopeNameNamespace {
			t.Fatalf("lookup %d: %+v", i, m)
		}
		m.Resource.Resource = "changed by a caller"
		if _, err := s.RESTMapping(widgetGK); !meta.IsNoMatchError(err) {
			t.Fatalf("lookup %d of Widget: %v, want no match", i, err)
		}
	}
	if _, err := s.RESTMapping(configMapGK, "v2", "v1"); err != nil { // other versions: asked anew
		t.Fatal(err)
	}
	if n := cm.calls.Load(); n != 3 {
		t.Errorf("%d lookups reached the mapper, want 3 (ConfigMap v1, Widget, ConfigMap v2 or v1)", n)
	}
}
