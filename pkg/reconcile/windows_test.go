package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestWindowHoldsApp: with a deny window of app web active on the
// reconciler's (fake) clock, a new commit is delivered to api at once but
// held for web, which status, the status ConfigMap and the gauge
// deliver_reconcile_held say, naming the window and its end; stepping the
// clock to the window's end delivers web, with no fetch or event needed.
func TestWindowHoldsApp(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: api, namespace: $NS, manifests: {path: api}}") +
			"windows:\n- {kind: deny, schedule: \"0 14 * * *\", duration: 2h, timeZone: Europe/Berlin, apps: [web]}\n",
		"web/cm.yaml": configMap("web", map[string]string{"color": "blue"}),
		"api/cm.yaml": configMap("api", map[string]string{"color": "blue"}),
	})
	// 10:00 UTC, 12:00 in Berlin: the window (14:00-16:00 Berlin, 12:00
	// -14:00 UTC in summer) is not active.
	fc := testingclock.NewFakeClock(time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC))
	opts := options(t, repo, env.Config)
	opts.Clock = fc
	// No periodic fetch: each is triggered, so that the last step below
	// shows the wake-up armed on the clock alone delivers web.
	opts.Interval, opts.Jitter = time.Hour, -1
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first delivery of both apps", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && appStatus(r, "api").Revision == repo.Head()
	})
	if h := metricSum(t, r, "deliver_reconcile_held", "web"); h != 0 {
		t.Errorf("held gauge of web before the window: %v", h)
	}

	fc.SetTime(time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC))
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	repo.WriteFile("api/cm.yaml", configMap("api", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	r.Trigger()
	until := time.Date(2026, 6, 1, 14, 0, 0, 0, time.UTC)
	waitFor(t, 30*time.Second, "api delivered and web held", func() bool {
		w := appStatus(r, "web")
		return appStatus(r, "api").Revision == head && w.Held != "" && w.HeldUntil.Equal(until)
	})
	// Fetches later web is still held: no run, no retry.
	fetch := func() {
		t.Helper()
		checks := appStatus(r, "api").UpToDateChecks
		r.Trigger()
		waitFor(t, 10*time.Second, "a fetch", func() bool { return appStatus(r, "api").UpToDateChecks > checks })
	}
	fetch()
	fetch()
	w := appStatus(r, "web")
	if got := cmData(t, ns, "web")["color"]; got != "blue" || w.Revision == head || w.Failures != 0 {
		t.Fatalf("web in a deny window: color %s, status %+v; want blue, not delivered, no failure", got, w)
	}
	for _, want := range []string{`held by windows[0] (deny "0 14 * * *" for 2h0m0s, Europe/Berlin)`, "until 2026-06-01T14:00:00Z"} {
		if !strings.Contains(w.Held, want) {
			t.Errorf("status of web: held %q lacks %q", w.Held, want)
		}
	}
	if h := metricSum(t, r, "deliver_reconcile_held", "web"); h != 1 {
		t.Errorf("held gauge of web: %v, want 1", h)
	}
	if h := metricSum(t, r, "deliver_reconcile_held", "api"); h != 0 {
		t.Errorf("held gauge of api: %v, want 0", h)
	}
	waitFor(t, 10*time.Second, "held in the status ConfigMap", func() bool {
		cm, err := reconcile.ReadStatus(ctx, env.Client(), opts.Pipeline.Apply.InventoryNamespace)
		return err == nil && strings.Contains(cm.Data["web"], `"heldUntil":"2026-06-01T14:00:00Z"`)
	})
	if !fc.HasWaiters() {
		t.Fatal("no wake-up armed on the clock for the window's end")
	}

	// A minute before the end: still held.
	fc.SetTime(until.Add(-time.Minute))
	fetch()
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("web delivered a minute before the window's end: color %s", got)
	}

	// The end: the armed wake-up lets web through, with no fetch.
	fc.Step(time.Minute)
	waitFor(t, 30*time.Second, "web delivered when the window ended", func() bool {
		w := appStatus(r, "web")
		return cmData(t, ns, "web")["color"] == "green" && w.Revision == head && w.Held == "" && w.HeldUntil.IsZero()
	})
	if h := metricSum(t, r, "deliver_reconcile_held", "web"); h != 0 {
		t.Errorf("held gauge of web after the window: %v", h)
	}
}
