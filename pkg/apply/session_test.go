package apply_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
)

// countDiscovery returns a copy of env.Config that counts the requests
// for the discovery documents (GET /api and /apis, one each per
// discovery).
func countDiscovery() (*rest.Config, *atomic.Int64) {
	var n atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet && req.URL.Path == "/apis" {
				n.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg, &n
}

// widgetCRD is a CRD of kind Widget in a group of its own per test, so
// that parallel tests do not share it.
func widgetCRD(group string) string {
	return `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.` + group + `}
spec:
  group: ` + group + `
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`
}

// TestSessionCRDOfOneAppMappedForAnother: a CRD that one app creates is
// mapped for another app of the same session, whose lookups had already
// discovered the API without it: the run that created the CRD reset the
// shared RESTMapper. (A Manager with a cache of its own would answer
// "unknown kind" until the cache is old enough to be discovered again.)
func TestSessionCRDOfOneAppMappedForAnother(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	group := strings.ReplaceAll(ns, "-", "") + ".example.com"
	cfg, discoveries := countDiscovery()
	s, err := apply.NewSession(cfg, apply.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := apply.Options{InventoryNamespace: ns, Timeout: time.Minute}
	crds, users := apply.NewManager(s, opts), apply.NewManager(s, opts)

	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: NS}\ndata: {a: b}\n"
	if _, err := users.Apply(ctx, objects(t, ns, cm), apply.PlanOptions{App: "users"}); err != nil {
		t.Fatal(err)
	}
	if n := discoveries.Load(); n != 1 {
		t.Fatalf("%d discoveries before the CRD, want 1", n)
	}
	if _, err := crds.Apply(ctx, objects(t, ns, widgetCRD(group)), apply.PlanOptions{App: "crds"}); err != nil {
		t.Fatal(err)
	}
	widget := cm + "---\napiVersion: " + group + "/v1\nkind: Widget\nmetadata: {name: w1, namespace: NS}\nspec: {size: 3}\n"
	rep, err := users.Apply(ctx, objects(t, ns, widget), apply.PlanOptions{App: "users"})
	if err != nil {
		t.Fatalf("the other app's Widget: %v", err)
	}
	if got := actions(rep)["Widget/"+ns+"/w1"]; got != apply.Created {
		t.Errorf("Widget: %s, want created", got)
	}
}

// TestSessionAppsWhileMapperResets: apps applying at once through one
// session all succeed while the session's RESTMapper is reset again and
// again (as runs that create CRDs do): a reset never breaks a lookup of
// another app in flight.
func TestSessionAppsWhileMapperResets(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	group := strings.ReplaceAll(ns, "-", "") + ".example.com"
	cfg, discoveries := countDiscovery()
	s, err := apply.NewSession(cfg, apply.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := apply.Options{InventoryNamespace: ns, Timeout: time.Minute}
	if _, err := apply.NewManager(s, opts).Apply(ctx, objects(t, ns, widgetCRD(group)), apply.PlanOptions{App: "crds"}); err != nil {
		t.Fatal(err)
	}
	before := discoveries.Load()

	stop := make(chan struct{})
	resets := make(chan int)
	go func() {
		n := 0
		defer func() { resets <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				s.RESTMapper().Reset()
				n++
			}
		}
	}()
	const apps, revisions = 2, 3
	var wg sync.WaitGroup
	errs := make([]error, apps)
	for a := range apps {
		wg.Go(func() {
			m := apply.NewManager(s, opts)
			app := fmt.Sprintf("app%d", a)
			for rev := range revisions {
				manifest := fmt.Sprintf(`
apiVersion: v1
kind: ConfigMap
metadata: {name: %[1]s, namespace: NS}
data: {revision: "%[2]d"}
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: NS}
spec:
  ports: [{port: 80}]
---
apiVersion: %[3]s/v1
kind: Widget
metadata: {name: %[1]s, namespace: NS}
spec: {revision: %[2]d}
`, app, rev, group)
				if _, err := m.Apply(ctx, objects(t, ns, manifest), apply.PlanOptions{App: app}); err != nil {
					errs[a] = fmt.Errorf("%s revision %d: %w", app, rev, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	n := <-resets
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The resets did make the apps discover again meanwhile.
	if d := discoveries.Load() - before; n == 0 || d < 2 {
		t.Errorf("%d resets and %d discoveries during the runs: the test did not reset the mapper under the apps", n, d)
	}
	for a := range apps {
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, fmt.Sprintf("app%d", a), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data["revision"]; got != fmt.Sprint(revisions-1) {
			t.Errorf("app%d: revision %s, want %d", a, got, revisions-1)
		}
	}
}

// TestSessionSharesRateLimit: the apps of a session share one rate limit:
// two Managers making 10 requests each at once through a session limited
// to 20 requests a second (burst 1) take about a second together, where
// a limit per Manager would let them take half of that. A token bucket
// never lets requests through faster than its rate, so the lower bound
// holds however slow the machine is.
func TestSessionSharesRateLimit(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	s, err := apply.NewSession(env.Config, apply.SessionOptions{QPS: 20, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	const managers, requests = 2, 10
	var wg sync.WaitGroup
	errs := make([]error, managers)
	start := time.Now()
	for i := range managers {
		m := apply.NewManager(s, apply.Options{InventoryNamespace: ns})
		wg.Go(func() {
			for range requests {
				if _, err := m.ReadInventory(context.Background(), "app"); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The burst lets one request through at once, each later one waits
	// 1/20 s for its token.
	if least := time.Duration(managers*requests-1) * time.Second / 20; took < least {
		t.Errorf("%d requests took %s, want at least %s at 20 per second for the whole session", managers*requests, took, least)
	}
}

// TestSessionBoundsRequestsInFlight: the apps of a session share one
// budget of requests in flight (SessionOptions.MaxInFlight): four
// Managers reading at once never have more than the budget's 3 requests
// at the API server, and do use it.
func TestSessionBoundsRequestsInFlight(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	var now, peak atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			n := now.Add(1)
			defer now.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			// Long enough for the requests of the four apps to overlap.
			time.Sleep(20 * time.Millisecond)
			return rt.RoundTrip(req)
		})
	}
	s, err := apply.NewSession(cfg, apply.SessionOptions{QPS: -1, MaxInFlight: 3})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		m := apply.NewManager(s, apply.Options{InventoryNamespace: ns})
		wg.Go(func() {
			for range 10 {
				if _, err := m.ReadInventory(context.Background(), fmt.Sprintf("app-%d", i)); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("at most %d requests were in flight at once, want 2 or 3 with a budget of 3", p)
	}
}
