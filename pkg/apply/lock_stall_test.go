package apply_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// call is one request of a Manager, numbered in the order in which
// requests of all Managers started and got their answers.
type call struct {
	who, method, path string
	start, end        int // end is 0 until an answer or an error came back
	status            int // the answer's HTTP status; 0 for none
}

// callLog records the requests of several Managers on one sequence.
type callLog struct {
	mu    sync.Mutex
	seq   int
	calls []*call
}

func (l *callLog) wrap(who string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper { return callTransport{l, who, rt} }
}

// mark returns the sequence number of the latest event.
func (l *callLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

func (l *callLog) snapshot() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]call, len(l.calls))
	for i, c := range l.calls {
		out[i] = *c
	}
	return out
}

type callTransport struct {
	log  *callLog
	who  string
	next http.RoundTripper
}

func (t callTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c := &call{who: t.who, method: r.Method, path: r.URL.Path}
	t.log.mu.Lock()
	t.log.seq++
	c.start = t.log.seq
	t.log.calls = append(t.log.calls, c)
	t.log.mu.Unlock()
	resp, err := t.next.RoundTrip(r)
	t.log.mu.Lock()
	t.log.seq++
	c.end = t.log.seq
	if err == nil {
		c.status = resp.StatusCode
	}
	t.log.mu.Unlock()
	return resp, err
}

// TestLockLostWhileAPIServerStalls: a run holds the app's lock while it
// waits for its Deployment; a second run waits for the lock. The API
// server then stalls (SIGSTOP) for longer than the lease. The first run
// cannot renew the lock: it gives it up, stops with a clear "lock lost"
// error and sends nothing more; the second takes the lock over only
// after that, once the server is back, and completes. At no time did both
// write: every write of the first was answered before the second's first
// write (its takeover of the Lease) was sent, apart from renewals of the
// Lease that the stall left unanswered, which the Lease's
// resourceVersion precondition keeps from undoing the takeover.
func TestLockLostWhileAPIServerStalls(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	// A control plane of its own: the stall must not hold up other tests.
	// Without controllers, a Deployment never becomes ready, which keeps
	// the first run waiting.
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cl, err := testenv.Start(sctx, testenv.Options{NoControllers: true})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	ns := cl.Namespace(t)
	ctx := context.Background()

	const lease = 3 * time.Second // the holder gives up after 2s without renewal
	log := &callLog{}
	newM := func(who string, opts apply.Options) *apply.Manager {
		cfg := rest.CopyConfig(cl.Config)
		cfg.Wrap(log.wrap(who))
		opts.LockLease = lease
		m, err := apply.New(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	waiting := make(chan struct{})
	var once sync.Once
	first := newM("first", apply.Options{Timeout: 5 * time.Minute, Progress: func(_ string, s apply.Step, _ int) {
		if s == apply.StepWait {
			once.Do(func() { close(waiting) })
		}
	}})
	second := newM("second", apply.Options{LockTimeout: 2 * time.Minute})
	leases := "/apis/coordination.k8s.io/v1/namespaces/deliver-system/leases"
	lockPath := leases + "/deliver-lock-" + ns

	set := func(v string) string {
		return `
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: NS}
data: {k: "` + v + `"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:` + v + `"}]}
`
	}
	type outcome struct {
		err error
		at  int // the log's sequence number when Apply returned
	}
	done1 := make(chan outcome, 1)
	go func() {
		_, err := first.Apply(ctx, objects(t, ns, set("1")), apply.PlanOptions{App: ns, Wait: true})
		done1 <- outcome{err, log.mark()}
	}()
	select {
	case <-waiting:
	case o := <-done1:
		t.Fatalf("first run ended before its wait: %v", o.err)
	case <-time.After(2 * time.Minute):
		t.Fatal("first run did not reach its wait")
	}
	done2 := make(chan outcome, 1)
	go func() {
		_, err := second.Apply(ctx, objects(t, ns, set("2")), apply.PlanOptions{App: ns})
		done2 <- outcome{err, log.mark()}
	}()
	// The second waits for the lock once it has read the held Lease twice.
	for deadline := time.Now().Add(time.Minute); ; {
		n := 0
		for _, c := range log.snapshot() {
			if c.who == "second" && c.method == http.MethodGet && c.path == lockPath && c.status == http.StatusOK {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second run never read the lock")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := cl.PauseAPIServer(); err != nil {
		t.Fatal(err)
	}
	paused, pausedAt := time.Now(), log.mark()
	t.Cleanup(func() { _ = cl.ResumeAPIServer() })
	var r1 outcome
	select {
	case r1 = <-done1:
	case <-time.After(30 * time.Second):
		_ = cl.ResumeAPIServer()
		t.Fatal("first run still running 30s into the stall: it did not give its lock up")
	}
	stoppedIn := time.Since(paused)
	// The stall lasts longer than the lease: the case under test (this
	// orders nothing; the runs are waited for through their results).
	time.Sleep(lease + time.Second - time.Since(paused))
	if err := cl.ResumeAPIServer(); err != nil {
		t.Fatal(err)
	}
	var r2 outcome
	select {
	case r2 = <-done2:
	case <-time.After(2 * time.Minute):
		t.Fatal("second run did not finish")
	}

	t.Logf("first run stopped %s into the stall: %v", stoppedIn.Round(time.Millisecond), r1.err)
	want := "app " + ns + ": lock lost: not renewed for 2s"
	if !errors.Is(r1.err, apply.ErrLockLost) || !strings.HasPrefix(fmt.Sprint(r1.err), want) {
		t.Errorf("first run: %v\nwant ErrLockLost, starting with %q", r1.err, want)
	}
	if stoppedIn > lease {
		t.Errorf("first run stopped %s into the stall, after the lease (%s) a waiter honours", stoppedIn, lease)
	}
	if r2.err != nil {
		t.Fatalf("second run: %v", r2.err)
	}

	calls := log.snapshot()
	takeover := 0 // the second's first write: its takeover of the Lease
	for _, c := range calls {
		if c.who == "second" && c.method != http.MethodGet && (takeover == 0 || c.start < takeover) {
			takeover = c.start
		}
	}
	if takeover <= r1.at {
		t.Errorf("the second run wrote (request %d) before the first had stopped (%d)", takeover, r1.at)
	}
	for _, c := range calls {
		if c.who != "first" {
			continue
		}
		desc := fmt.Sprintf("%s %s (request %d, answered %d, status %d)", c.method, c.path, c.start, c.end, c.status)
		switch {
		case c.start > r1.at:
			t.Errorf("first run sent %s after it had stopped (%d)", desc, r1.at)
		case c.method == http.MethodGet:
		case !strings.HasPrefix(c.path, leases) && c.start > pausedAt:
			t.Errorf("first run sent a write during the stall, after its last write before it: %s", desc)
		case c.status == 0 && !strings.HasPrefix(c.path, leases):
			t.Errorf("first run left a write unanswered: %s", desc)
		case c.status/100 == 2 && c.end > takeover:
			t.Errorf("two writers: the first run's %s was answered after the second's takeover (request %d)", desc, takeover)
		}
	}

	// The cluster holds the second run's version, and the lock is free.
	cm, err := cl.Client().CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "2" {
		t.Errorf("ConfigMap a: %v, %v; want k=2 from the second run", cm.Data, err)
	}
	if st, err := second.RunState(ctx, ns); err != nil || st.Holder != "" {
		t.Errorf("lock after the second run: %+v, %v; want free", st, err)
	}
}

// TestLockTakenOverStopsRun: a run that finds its lock taken by another
// run when it renews it (here another holder is written into the Lease,
// as a run whose clock ran fast would) stops at once with a "lock lost"
// error naming the new holder, and writes nothing more: not the objects,
// not its inventory, not the Lease.
func TestLockTakenOverStopsRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	log := &callLog{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(log.wrap("run"))
	waiting := make(chan struct{})
	var once sync.Once
	m, err := apply.New(cfg, apply.Options{LockLease: 3 * time.Second, Timeout: 2 * time.Minute, Progress: func(_ string, s apply.Step, _ int) {
		if s == apply.StepWait {
			once.Do(func() { close(waiting) })
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	set := objects(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: NS}
data: {k: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, `+testenv.NeverReadyLabel+`: "true"}}
    spec: {containers: [{name: web, image: web}]}
`)
	done := make(chan error, 1)
	go func() {
		_, err := m.Apply(ctx, set, apply.PlanOptions{App: ns, Wait: true})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("run ended before its wait: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("run did not reach its wait")
	}

	leases := env.Client().CoordinationV1().Leases("deliver-system")
	other := "ci-runner/1/other"
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // the run renews it meanwhile
		lease, err := leases.Get(ctx, "deliver-lock-"+ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		lease.Spec.HolderIdentity = &other
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	taken := log.mark()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run still running 30s after its lock was taken")
	}
	want := "app " + ns + ": lock lost: taken over by " + other + "; the run stopped: "
	if !errors.Is(err, apply.ErrLockLost) || !strings.HasPrefix(fmt.Sprint(err), want) {
		t.Errorf("run: %v\nwant ErrLockLost, starting with %q", err, want)
	}
	lockPath := "/apis/coordination.k8s.io/v1/namespaces/deliver-system/leases/deliver-lock-" + ns
	for _, c := range log.snapshot() {
		if c.start <= taken || c.method == http.MethodGet {
			continue
		}
		// The renewal that found the Lease taken was refused.
		if c.path != lockPath || c.status/100 == 2 {
			t.Errorf("run sent %s %s (status %d) after its lock was taken", c.method, c.path, c.status)
		}
	}
	if st, err := m.RunState(ctx, ns); err != nil || st.Holder != other {
		t.Errorf("lock after the run: %+v, %v; want still held by %s", st, err, other)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil || inv.Result != apply.ResultApplying {
		t.Errorf("inventory: %+v, %v; want left as written before the first write (applying)", inv, err)
	}
}
