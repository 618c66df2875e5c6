package reconcile_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// runCounter counts the runs each app started, and keeps their reasons,
// through Options.OnRun.
type runCounter struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func (c *runCounter) onRun(e reconcile.RunEvent) {
	if e.Ended {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reasons == nil {
		c.reasons = map[string][]string{}
	}
	c.reasons[e.App] = append(c.reasons[e.App], e.Reason)
}

func (c *runCounter) runs(app string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reasons[app]...)
}

// annotateInventory sets (or with value "" removes) an annotation of
// app's inventory Secret in ns.
func annotateInventory(t *testing.T, ns, app, key, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		v = `"` + value + `"`
	}
	patch := []byte(`{"metadata":{"annotations":{"` + key + `":` + v + `}}}`)
	if _, err := env.Client().CoreV1().Secrets(ns).Patch(context.Background(), apply.InventoryName(app), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// requestRun requests a run of app with reconcile.RequestRun.
func requestRun(t *testing.T, inv, app string) string {
	t.Helper()
	v, err := reconcile.RequestRun(context.Background(), env.Client(), app, reconcile.RequestOptions{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRunRequest: a run request on an up-to-date app's inventory Secret
// runs that app, and no other, exactly once per value; the value served
// is in its status, in memory and in the status ConfigMap; an unrelated
// change of the Secret is no request; a suspended app is not run, and
// its request is served once it is resumed; an app without an inventory
// cannot be requested.
func TestRunRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}",
			"- {name: paused, namespace: $NS, manifests: {path: paused}}"),
		"web/cm.yaml":    configMap("web", map[string]string{"color": "blue"}),
		"other/cm.yaml":  configMap("other", map[string]string{"a": "b"}),
		"paused/cm.yaml": configMap("paused", map[string]string{"a": "b"}),
	})
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour // only the requests fetch
	var rc runCounter
	opts.OnRun = rc.onRun
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool {
		for _, app := range []string{"web", "other", "paused"} {
			if a := appStatus(r, app); a.Revision != repo.Head() || a.Result != apply.ResultSucceeded {
				return false
			}
		}
		return true
	})
	if n := len(rc.runs("web")); n != 1 {
		t.Fatalf("web ran %d times for its first delivery, want 1: %q", n, rc.runs("web"))
	}

	// served waits until app's request value is served, and returns the
	// app's status then.
	served := func(app, value string) reconcile.AppStatus {
		t.Helper()
		var a reconcile.AppStatus
		waitFor(t, 20*time.Second, app+" request "+value+" served", func() bool {
			a = appStatus(r, app)
			return a.LastHandledRequest == value
		})
		return a
	}

	v1 := requestRun(t, inv, "web")
	if a := served("web", v1); a.Result != apply.ResultSucceeded || a.Revision != repo.Head() {
		t.Errorf("web after the request: %+v, want succeeded at the head", a)
	}
	if got, want := rc.runs("web"), []string{"revision " + repo.Head()[:12], "requested at " + v1}; len(got) != 2 || got[1] != want[1] {
		t.Errorf("web's runs = %q, want %q", got, want)
	}
	// The status ConfigMap says so too, for a client elsewhere.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := reconcile.WaitRequest(wctx, env.Client(), "web", v1, reconcile.WaitOptions{StatusNamespace: inv, Poll: 50 * time.Millisecond})
	if err != nil || st.Result != apply.ResultSucceeded {
		t.Fatalf("WaitRequest = %+v, %v; want succeeded", st, err)
	}

	// An unrelated annotation, and a request on another app: when that
	// one is served, web has not run again (the same value is served
	// once), and other ran once.
	annotateInventory(t, inv, "web", "example.com/note", "x")
	webRun := appStatus(r, "web").LastRun
	v2 := requestRun(t, inv, "other")
	served("other", v2)
	if a := appStatus(r, "web"); len(rc.runs("web")) != 2 || !a.LastRun.Equal(webRun) || a.Result != apply.ResultSucceeded {
		t.Errorf("web ran again without a new request: runs %q, status %+v", rc.runs("web"), a)
	}
	if got := rc.runs("other"); len(got) != 2 || got[1] != "requested at "+v2 {
		t.Errorf("other's runs = %q, want its first delivery and one for the request", got)
	}

	// A second value runs web once more.
	v3 := requestRun(t, inv, "web")
	served("web", v3)
	if got := rc.runs("web"); len(got) != 3 || got[2] != "requested at "+v3 {
		t.Errorf("web's runs = %q, want a third for the second request", got)
	}

	// Suspended: no run, the request waits; WaitRequest says why.
	annotateInventory(t, inv, "paused", reconcile.AnnotationSuspend, "true")
	waitFor(t, 10*time.Second, "paused suspended", func() bool { return appStatus(r, "paused").Suspended })
	v4 := requestRun(t, inv, "paused")
	v5 := requestRun(t, inv, "other")
	served("other", v5)
	if a := appStatus(r, "paused"); len(rc.runs("paused")) != 1 || a.LastHandledRequest != "" || a.Result != apply.ResultSucceeded {
		t.Errorf("suspended app: runs %q, status %+v; want no run and its request not served", rc.runs("paused"), a)
	}
	wctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := reconcile.WaitRequest(wctx, env.Client(), "paused", v4, reconcile.WaitOptions{StatusNamespace: inv, Poll: 50 * time.Millisecond}); !errors.Is(err, reconcile.ErrSuspended) {
		t.Errorf("WaitRequest of a suspended app: %v, want ErrSuspended", err)
	}
	waitFor(t, 20*time.Second, "a RequestSuspended Event on paused's inventory", func() bool {
		list, err := env.Client().CoreV1().Events(inv).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + apply.InventoryName("paused") + ",reason=" + reconcile.ReasonRequestSuspended})
		return err == nil && len(list.Items) == 1 && strings.Contains(list.Items[0].Message, v4)
	})
	annotateInventory(t, inv, "paused", reconcile.AnnotationSuspend, "")
	served("paused", v4)
	if got := rc.runs("paused"); len(got) != 2 || got[1] != "requested at "+v4 {
		t.Errorf("paused's runs after the resume = %q, want one for the request", got)
	}

	// No inventory: nothing to annotate.
	if _, err := reconcile.RequestRun(ctx, env.Client(), "nosuch", reconcile.RequestOptions{InventoryNamespace: inv}); !errors.Is(err, reconcile.ErrNoInventory) {
		t.Errorf("RequestRun of an app without inventory: %v, want ErrNoInventory", err)
	}
}

// TestRunRequestLeaderHandOver: a request is served by the leader, not
// the standby; a new leader does not serve it again (the value served is
// read back from the status ConfigMap), and serves a request made while
// no replica led.
func TestRunRequestLeaderHandOver(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "blue"}),
		"other/cm.yaml": configMap("other", map[string]string{"a": "b"}),
	})
	base := options(t, repo, env.Config)
	base.Interval = time.Hour
	inv := base.Pipeline.Apply.InventoryNamespace
	counters := map[string]*runCounter{"replica-a": {}, "replica-b": {}}
	le := reconcile.LeaderElection{Enabled: true, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond}
	var rs [2]replica
	for i, id := range []string{"replica-a", "replica-b"} {
		o := base
		o.LeaderElection = le
		o.LeaderElection.Identity = id
		o.OnRun = counters[id].onRun
		rs[i].Reconciler, rs[i].stop = start(t, o)
	}
	var leader, standby replica
	var lc, sc *runCounter
	waitFor(t, 30*time.Second, "a leader that delivered both apps", func() bool {
		for i, id := range []string{"replica-a", "replica-b"} {
			if rs[i].Status().Leader {
				leader, standby, lc, sc = rs[i], rs[1-i], counters[id], counters[[]string{"replica-b", "replica-a"}[i]]
				return appStatus(leader.Reconciler, "web").Result == apply.ResultSucceeded &&
					appStatus(leader.Reconciler, "other").Result == apply.ResultSucceeded
			}
		}
		return false
	})

	v1 := requestRun(t, inv, "web")
	waitFor(t, 20*time.Second, "request served by the leader", func() bool { return appStatus(leader.Reconciler, "web").LastHandledRequest == v1 })
	// Written to the status ConfigMap before the hand-over.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := reconcile.WaitRequest(ctx, env.Client(), "web", v1, reconcile.WaitOptions{StatusNamespace: inv, Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n := len(sc.runs("web")); n != 0 {
		t.Fatalf("the standby ran web %d times", n)
	}
	if got := lc.runs("web"); got[len(got)-1] != "requested at "+v1 {
		t.Fatalf("leader's runs of web = %q, want the last for the request", got)
	}

	leader.stop()
	v2 := requestRun(t, inv, "other") // while no replica may lead yet
	waitFor(t, 30*time.Second, "the new leader served the request made meanwhile", func() bool {
		return standby.Status().Leader && appStatus(standby.Reconciler, "other").LastHandledRequest == v2
	})
	if got := sc.runs("web"); len(got) != 0 {
		t.Errorf("the new leader ran web again for a request served before: %q", got)
	}
	if a := appStatus(standby.Reconciler, "web"); a.LastHandledRequest != v1 {
		t.Errorf("the new leader's status of web: %+v, want the request served before", a)
	}
}

// requestRuns counts the runs logged by the replicas with the reason of
// the request value, per "env/app".
func requestRuns(rs []*multiReplica, value string) map[string]int {
	out := map[string]int{}
	for _, m := range rs {
		m.log.mu.Lock()
		sc := bufio.NewScanner(bytes.NewReader(m.log.buf.Bytes()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec struct{ Msg, Env, App, Reason string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "run" && rec.Reason == "requested at "+value {
				out[rec.Env+"/"+rec.App]++
			}
		}
		m.log.mu.Unlock()
	}
	return out
}

// TestRunRequestClustersShards: with several environments and two
// sharded replicas, each environment's engine watches its own
// inventories: a request for an app of environment b is served once, by
// the replica that owns the app, and the value served is in b's status
// ConfigMap; no other app runs for it. When that replica stops, the one
// that takes the app over does not serve the request again.
func TestRunRequestClustersShards(t *testing.T) {
	t.Parallel()
	const n = 3
	ns := env.Namespace(t)
	repo := multiEnvRepo(t, ns, n)
	base := options(t, repo, env.Config)
	base.Interval = time.Hour
	base.Sharding = reconcile.Sharding{Enabled: true, Group: "request", LeaseDuration: 3 * time.Second}
	inv := base.Pipeline.Apply.InventoryNamespace
	var rs []*multiReplica
	for _, id := range []string{"replica-x", "replica-y"} {
		o := base
		o.Sharding.Identity = id
		rs = append(rs, startMulti(t, o, id, "a", "b"))
	}
	waitFor(t, 60*time.Second, "both replicas shard both environments, every app delivered", func() bool {
		for _, m := range rs {
			if len(m.log.members("a")) != 2 || len(m.log.members("b")) != 2 {
				return false
			}
		}
		return allAtGen(t, ns, n, "1")
	})
	// served returns the replica whose status reports app of e served
	// value.
	served := func(e, app, value string) *multiReplica {
		t.Helper()
		var by *multiReplica
		waitFor(t, 30*time.Second, e+"/"+app+" request served", func() bool {
			for _, m := range rs {
				if envApp(m.c, e, app).LastHandledRequest == value {
					by = m
					return true
				}
			}
			return false
		})
		return by
	}

	v1 := requestRun(t, inv, "b-1")
	by := served("b", "b-1", v1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := reconcile.WaitRequest(ctx, env.Client(), "b-1", v1, reconcile.WaitOptions{StatusNamespace: inv, StatusName: reconcile.EnvStatusName("b"), Poll: 50 * time.Millisecond})
	if err != nil || st.Result != apply.ResultSucceeded {
		t.Fatalf("WaitRequest in b's status = %+v, %v; want succeeded", st, err)
	}
	// A second request, in a, as a barrier: once it is served, any
	// second run for the first would have started.
	v2 := requestRun(t, inv, "a-0")
	served("a", "a-0", v2)
	if got := requestRuns(rs, v1); len(got) != 1 || got["b/b-1"] != 1 {
		t.Errorf("runs for the request of b-1 = %v, want one, of b/b-1 (by %s)", got, by.id)
	}
	if got := requestRuns(rs, v2); len(got) != 1 || got["a/a-0"] != 1 {
		t.Errorf("runs for the request of a-0 = %v, want one, of a/a-0", got)
	}

	// The replica that served b-1 stops: the other takes its apps over,
	// reads that b-1's request was served, and does not serve it again.
	by.stop()
	rest := rs[0]
	if rest == by {
		rest = rs[1]
	}
	waitFor(t, 30*time.Second, "the other replica alone in b", func() bool { return len(rest.log.members("b")) == 1 })
	// A barrier again: a request of every app of b, b-1 aside, served by
	// the one replica left.
	for _, app := range []string{"b-0", "b-2"} {
		v := requestRun(t, inv, app)
		waitFor(t, 30*time.Second, app+" request served after the take-over", func() bool {
			return envApp(rest.c, "b", app).LastHandledRequest == v
		})
	}
	if got := requestRuns(rs, v1); len(got) != 1 || got["b/b-1"] != 1 {
		t.Errorf("runs for the request of b-1 after the take-over = %v, want still one", got)
	}
	if a := envApp(rest.c, "b", "b-1"); a.LastHandledRequest != v1 {
		t.Errorf("b-1 after the take-over: %+v, want the request served by the other replica", a)
	}
}

// TestRunRequestHeldByWindow: a deny window holds a requested run as it
// holds every run, which the status says; the request is served when
// the window ends, with no new request.
func TestRunRequestHeldByWindow(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}") +
			"windows:\n- {kind: deny, schedule: \"0 12 * * *\", duration: 2h, apps: [web]}\n",
		"web/cm.yaml": configMap("web", map[string]string{"color": "blue"}),
	})
	fc := testingclock.NewFakeClock(time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC))
	opts := options(t, repo, env.Config)
	opts.Clock = fc
	opts.Interval, opts.Jitter = time.Hour, -1
	var rc runCounter
	opts.OnRun = rc.onRun
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first delivery", func() bool { return appStatus(r, "web").Result == apply.ResultSucceeded })

	fc.SetTime(time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC))
	v := requestRun(t, inv, "web")
	until := time.Date(2026, 6, 1, 14, 0, 0, 0, time.UTC)
	waitFor(t, 20*time.Second, "the request held by the window", func() bool {
		a := appStatus(r, "web")
		return a.Held != "" && a.HeldUntil.Equal(until)
	})
	if a := appStatus(r, "web"); a.LastHandledRequest != "" || len(rc.runs("web")) != 1 {
		t.Fatalf("request served in a deny window: runs %q, status %+v", rc.runs("web"), a)
	}
	fc.SetTime(until)
	waitFor(t, 20*time.Second, "the request served when the window ended", func() bool {
		a := appStatus(r, "web")
		return a.LastHandledRequest == v && a.Held == ""
	})
	if got := rc.runs("web"); len(got) != 2 || got[1] != "requested at "+v {
		t.Errorf("web's runs = %q, want one for the request after the window", got)
	}
}

// TestRunRequestPinned: a requested run of a pinned app delivers its pin,
// not the head the request's fetch found.
func TestRunRequestPinned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	first := repo.Head()
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour
	var mu sync.Mutex
	var runs []reconcile.RunEvent
	opts.OnRun = func(e reconcile.RunEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !e.Ended {
			runs = append(runs, e)
		}
	}
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == first })
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.SetPin(ctx, "web", apply.Pin{Revision: first, By: "test", At: time.Now(), Reason: "hold"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pin seen", func() bool { p := appStatus(r, "web").Pin; return p != nil && p.Revision == first })
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")

	v := requestRun(t, inv, "web")
	waitFor(t, 20*time.Second, "request served", func() bool { return appStatus(r, "web").LastHandledRequest == v })
	if got := r.Status().Revision; got != head {
		t.Errorf("the request did not fetch: revision %s, want %s", got, head)
	}
	mu.Lock()
	last := runs[len(runs)-1]
	mu.Unlock()
	if last.Reason != "requested at "+v || last.Revision != first {
		t.Errorf("the requested run: %+v, want one at the pin %s", last, first)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Errorf("color = %s after a requested run of the pinned app, want blue", got)
	}
}
