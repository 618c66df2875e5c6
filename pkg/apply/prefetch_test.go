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
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
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

// RoundTrip logs "METHOD /path" when a request starts and "done METHOD
// /path" when its response arrived.
func (t logTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	req := r.Method + " " + r.URL.Path
	t.log.add(req)
	resp, err := t.next.RoundTrip(r)
	t.log.add("done " + req)
	return resp, err
}

func (l *requestLog) add(r string) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
}

// listed says whether reqs hold a finished list of ConfigMaps.
func listed(reqs []string) bool {
	return slices.ContainsFunc(reqs, func(r string) bool {
		return strings.HasPrefix(r, "done GET ") && strings.HasSuffix(r, "/configmaps")
	})
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
	ahead := waitRequests(t, log, listed)
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
	if _, ok := testenv.Until(30*time.Second, 5*time.Millisecond, func() bool {
		seen = append(seen, log.take()...)
		return done(seen)
	}); !ok {
		t.Fatalf("prefetch: requests so far %q", seen)
	}
	return seen
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
	waitRequests(t, log, listed)
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

// inventoryWrites counts the writes of app's inventory Secret in reqs.
func inventoryWrites(reqs []string, app string) int {
	n := 0
	for _, r := range reqs {
		if (strings.HasPrefix(r, "PATCH ") || strings.HasPrefix(r, "POST ")) && strings.Contains(r, "/secrets") &&
			(strings.HasSuffix(r, "/"+apply.InventoryName(app)) || strings.HasSuffix(r, "/secrets")) {
			n++
		}
	}
	return n
}

// TestInventoryWrittenFirstOnlyWhenNeeded: a run that creates an object
// writes the inventory before its first write and at its end; a run that
// only updates objects the inventory lists writes it once, at its end.
func TestInventoryWrittenFirstOnlyWhenNeeded(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m, log := loggedManager(t)
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "b=1")), apply.PlanOptions{App: ns, Revision: "c1"}); err != nil {
		t.Fatal(err)
	}
	log.take()
	for _, tc := range []struct {
		name, set string
		want      int
	}{
		{"update only", cms("a=2", "b=1"), 1},
		{"nothing to do", cms("a=2", "b=1"), 1},
		{"update and delete", cms("a=3"), 1},
		{"create", cms("a=3", "c=1"), 2},
		// It would start a Job if the run failed.
		{"update with an on-failure hook", cms("a=4", "c=1") + "\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: notify, namespace: NS, annotations: {deliver.dev/hook: on-failure}}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: notify, image: curl}]}}}\n", 2},
	} {
		rep, err := m.Apply(ctx, withHooks(objects(t, ns, tc.set)), apply.PlanOptions{App: ns, Revision: tc.name})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := inventoryWrites(log.take(), ns); got != tc.want {
			t.Errorf("%s (%s): %d inventory writes, want %d", tc.name, rep.Summary(), got, tc.want)
		}
		inv, err := m.ReadInventory(ctx, ns)
		if err != nil || inv.Revision != tc.name || inv.Result != apply.ResultSucceeded {
			t.Errorf("%s: inventory %+v, %v; want revision %q succeeded", tc.name, inv, err, tc.name)
		}
	}
}

// TestPrefetchNotTrustedAfterKilledRun: a run that only updates objects
// writes the inventory at its end only. When it is killed, the inventory
// does not change and only its lock, left held, tells. A run that takes
// such a lock over must not plan from what it read ahead: the killed run
// may have changed objects after that was listed.
func TestPrefetchNotTrustedAfterKilledRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	opts := apply.PlanOptions{App: ns, Revision: "c1"}
	if _, err := newManager(t, apply.Options{}).Apply(ctx, objects(t, ns, cms("a=1")), opts); err != nil {
		t.Fatal(err)
	}
	m, log := loggedManager(t)
	m.Prefetch(ctx, opts)
	waitRequests(t, log, listed)

	// The killed run: it took the lock, changed a as deliver would and
	// died before its inventory write.
	holder := "ci-runner/4242/dead"
	leaveLockHeld(t, ns, holder)
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Apply(ctx, corev1ac.ConfigMap("a", ns).WithData(map[string]string{"k": "2"}), metav1.ApplyOptions{FieldManager: "deliver", Force: true}); err != nil {
		t.Fatal(err)
	}
	st, err := m.RunState(ctx, ns)
	if err != nil || st.Holder != holder || !st.Stale || st.UnderWay() {
		t.Errorf("RunState of the killed run's lock = %+v, %v; want stale, held by %s", st, err, holder)
	}

	rep, err := m.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: ns, Revision: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep)["ConfigMap/"+ns+"/a"]; got != apply.Configured {
		t.Errorf("a after a killed run changed it: %q, want %q (report %v)", got, apply.Configured, actions(rep))
	}
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "1" {
		t.Errorf("a = %v, %v; want k=1 from git", cm.Data, err)
	}
	if st, err := m.RunState(ctx, ns); err != nil || st.Holder != "" {
		t.Errorf("RunState after the run = %+v, %v; want the lock free", st, err)
	}
}

// leaveLockHeld makes app's lock (released by an earlier run) look like a
// killed run's: held by holder, not renewed for a minute.
func leaveLockHeld(t *testing.T, app, holder string) {
	t.Helper()
	ctx := context.Background()
	secs := int32(1)
	past := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	leases := env.Client().CoordinationV1().Leases("deliver-system")
	lease, err := leases.Get(ctx, "deliver-lock-"+app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &past, RenewTime: &past}
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
