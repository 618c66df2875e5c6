package apply_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
)

// requestLog records the requests of a Manager ("GET /api/v1/...").
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

func (l *requestLog) lists(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		// A list is a GET of a collection: its path ends with the resource.
		if strings.HasPrefix(r, "GET ") && (strings.HasSuffix(r, "/configmaps") || strings.HasSuffix(r, "/deployments")) {
			out = append(out, r)
		}
	}
	return out
}

type logTransport struct {
	log  *requestLog
	next http.RoundTripper
}

func (t logTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.log.mu.Lock()
	t.log.reqs = append(t.log.reqs, r.Method+" "+r.URL.Path)
	t.log.mu.Unlock()
	return t.next.RoundTrip(r)
}

func loggedManager(t *testing.T) (*apply.Manager, *requestLog) {
	t.Helper()
	log := &requestLog{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return logTransport{log, rt} })
	m, err := apply.New(cfg, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m, log
}

// TestPrefetchIsUsedByPlan: after Prefetch, a plan makes none of the reads
// that were made ahead (inventory, discovery, lists) and finds the same
// changes as a plan without it.
func TestPrefetchIsUsedByPlan(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	opts := apply.PlanOptions{App: ns, Revision: "c1"}
	if _, err := newManager(t, apply.Options{}).Apply(ctx, objects(t, ns, cms("a=1", "b=1", "c=1")), opts); err != nil {
		t.Fatal(err)
	}
	set := objects(t, ns, cms("a=1", "b=2", "d=1"))

	plain, log := loggedManager(t)
	want, err := plain.Plan(ctx, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	if lists := log.lists(log.take()); len(lists) != 1 {
		t.Fatalf("plan without prefetch listed %q, want one list", lists)
	}

	m, log := loggedManager(t)
	m.Prefetch(ctx, opts)
	ahead := waitRequests(t, log, func(reqs []string) bool {
		return len(log.lists(reqs)) == 1
	})
	if !slices.ContainsFunc(ahead, func(r string) bool { return strings.HasSuffix(r, "/secrets/"+apply.InventoryName(ns)) }) {
		t.Errorf("prefetch did not read the inventory: %q", ahead)
	}
	got, err := m.Plan(ctx, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range log.take() {
		if strings.Contains(r, "/secrets/deliver-inventory") || r == "GET /api" || r == "GET /apis" || len(log.lists([]string{r})) > 0 {
			t.Errorf("plan after prefetch made %s again", r)
		}
	}
	if diff := cmp.Diff(changes(want), changes(got)); diff != "" {
		t.Errorf("plan with prefetch (-without +with):\n%s", diff)
	}
}

// waitRequests waits until the requests made so far satisfy done (the
// prefetch runs in the background) and returns them.
func waitRequests(t *testing.T, log *requestLog, done func([]string) bool) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen = append(seen, log.take()...)
		if done(seen) {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch: requests so far %q", seen)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPrefetchStaleUnderLock: another run applies the app between Prefetch
// and Apply. What was listed ahead is then out of date (it does not show
// the object the other run added), and Apply must not use it: the object
// that left git is pruned.
func TestPrefetchStaleUnderLock(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	opts := apply.PlanOptions{App: ns, Revision: "c1"}
	other := newManager(t, apply.Options{})
	if _, err := other.Apply(ctx, objects(t, ns, cms("a=1")), opts); err != nil {
		t.Fatal(err)
	}

	m, log := loggedManager(t)
	m.Prefetch(ctx, opts)
	waitRequests(t, log, func(reqs []string) bool { return len(log.lists(reqs)) == 1 })
	// Another deliver (CI, say) adds x meanwhile.
	if _, err := other.Apply(ctx, objects(t, ns, cms("a=1", "x=1")), apply.PlanOptions{App: ns, Revision: "c2"}); err != nil {
		t.Fatal(err)
	}

	rep, err := m.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: ns, Revision: "c3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep)["ConfigMap/"+ns+"/x"]; got != apply.Deleted {
		t.Errorf("apply after a stale prefetch: x %q, want %q (report %v)", got, apply.Deleted, actions(rep))
	}
	_, err = env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "x", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("x left git but was not pruned: get: %v", err)
	}
}
