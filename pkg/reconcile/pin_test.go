package reconcile_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pin"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// pinnedApps reads the gauge deliver_reconcile_pinned_apps from r's
// /metrics.
func pinnedApps(t *testing.T, r *reconcile.Reconciler) string {
	t.Helper()
	for line := range strings.Lines(metricsBody(t, r)) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "deliver_reconcile_pinned_apps "); ok {
			return v
		}
	}
	return "absent"
}

// TestPin: against the real control plane and a real git server, a pin
// holds app web at an old revision while a new commit is delivered to app
// other (which depends on web), drift of web is reverted to the pinned
// revision, the pin shows in the status (ConfigMap too), the gauge and
// Events, it survives a restart (a new
// Reconciler), and unpin lets web move to the head.
func TestPin(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			// other depends on web: it waits for web at web's pin, not
			// at the head.
			"- {name: other, namespace: $NS, manifests: {path: other}, dependsOn: [web]}"),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "blue"}),
		"other/cm.yaml": configMap("other", map[string]string{"color": "blue"}),
	})
	first := repo.Head()
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, stop := start(t, opts)
	delivered := func(r *reconcile.Reconciler, app, rev string) func() bool {
		return func() bool {
			a := appStatus(r, app)
			return a.Revision == rev && a.Result == apply.ResultSucceeded
		}
	}
	waitFor(t, 30*time.Second, "first delivery of web", delivered(r, "web", first))
	commit := func(color string) string {
		repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": color}))
		repo.WriteFile("other/cm.yaml", configMap("other", map[string]string{"color": color}))
		return repo.CommitAll(color)
	}
	second := commit("green")
	waitFor(t, 30*time.Second, "second commit delivered", func() bool {
		return delivered(r, "web", second)() && delivered(r, "other", second)()
	})

	// Pinned to the first commit, by an abbreviated SHA, through the
	// library behind deliver pin.
	po := opts.Pipeline
	po.CacheDir = t.TempDir()
	po.Kube = func(string) (*rest.Config, error) { return env.Config, nil }
	res, err := pin.Pin(ctx, pin.Options{Pipeline: po, App: "web", Revision: first[:8], Reason: "green breaks uploads"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pin.Revision != first || res.Pin.By == "" || res.Pin.At.IsZero() || res.Previous != nil {
		t.Fatalf("pin result %+v: want the full SHA %s, who, when, no previous pin", res.Pin, first)
	}
	waitFor(t, 30*time.Second, "web back at the pinned revision", func() bool {
		a := appStatus(r, "web")
		return delivered(r, "web", first)() && a.Pin != nil && cmData(t, ns, "web")["color"] == "blue"
	})
	if p := appStatus(r, "web").Pin; p.Reason != "green breaks uploads" || p.By != res.Pin.By || !p.At.Equal(res.Pin.At) {
		t.Errorf("status pin %+v, want %+v", p, res.Pin)
	}
	waitFor(t, 10*time.Second, "the Pinned Event", func() bool { return hasEvent(t, inv, reconcile.ReasonPinned, "green breaks uploads") })
	if got := pinnedApps(t, r); got != "1" {
		t.Errorf("deliver_reconcile_pinned_apps = %s, want 1", got)
	}

	// A new commit moves other, not web.
	third := commit("red")
	waitFor(t, 30*time.Second, "third commit delivered to other", func() bool {
		return delivered(r, "other", third)() && cmData(t, ns, "other")["color"] == "red"
	})
	if a := appStatus(r, "web"); a.Revision != first || cmData(t, ns, "web")["color"] != "blue" {
		t.Fatalf("pinned web moved: status %+v, color %s", a, cmData(t, ns, "web")["color"])
	}

	// Drift of web is reverted to the pinned revision, not the head.
	patch := []byte(`{"data":{"color":"edited"}}`)
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "drift of web reverted to the pinned revision", func() bool {
		return cmData(t, ns, "web")["color"] == "blue" && len(appStatus(r, "web").Drift) == 0
	})

	// The status ConfigMap, which deliver status reads, has the pin.
	waitFor(t, 10*time.Second, "the pin in the status ConfigMap", func() bool {
		cm, err := reconcile.ReadStatus(ctx, env.Client(), inv)
		if err != nil {
			return false
		}
		var a reconcile.AppStatus
		return json.Unmarshal([]byte(cm.Data["web"]), &a) == nil && a.Pin != nil && a.Pin.Revision == first && a.Pin.Reason == "green breaks uploads"
	})

	// A new Reconciler (a restart, or another replica taking the lead)
	// keeps the pin: it reads it from the inventory Secret.
	stop()
	r2, _ := start(t, opts)
	fourth := commit("yellow")
	waitFor(t, 30*time.Second, "the restarted reconciler delivers the fourth commit to other", func() bool {
		return delivered(r2, "other", fourth)() && cmData(t, ns, "other")["color"] == "yellow"
	})
	if a := appStatus(r2, "web"); a.Revision != first || a.Pin == nil || cmData(t, ns, "web")["color"] != "blue" {
		t.Fatalf("after a restart, pinned web: status %+v, color %s; want held at %s", a, cmData(t, ns, "web")["color"], first)
	}

	// Unpinned, web moves to the head.
	un, err := pin.Unpin(ctx, pin.Options{Pipeline: po, App: "web"})
	if err != nil || un.Previous == nil || un.Previous.Revision != first {
		t.Fatalf("Unpin = %+v, %v; want the pin to %s removed", un, err, first)
	}
	waitFor(t, 30*time.Second, "unpinned web delivered at the head", func() bool {
		return delivered(r2, "web", fourth)() && appStatus(r2, "web").Pin == nil && cmData(t, ns, "web")["color"] == "yellow"
	})
	waitFor(t, 10*time.Second, "the Unpinned Event", func() bool { return hasEvent(t, inv, reconcile.ReasonUnpinned, "unpinned") })
	if got := pinnedApps(t, r2); got != "0" {
		t.Errorf("deliver_reconcile_pinned_apps = %s after unpin, want 0", got)
	}
}

// hasEvent reports whether app web's inventory Secret in inv has an Event
// of reason whose message holds text.
func hasEvent(t *testing.T, inv, reason, text string) bool {
	t.Helper()
	list, err := env.Client().CoreV1().Events(inv).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=deliver-inventory-web"})
	if err != nil {
		return false
	}
	for _, e := range list.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

// TestSuspendedAndPinned: an app both suspended and pinned is not
// delivered at all, neither at its pin nor at a new head, while the
// other app moves on (suspend wins); once resumed, it is delivered at
// its pinned revision, not at the newest commit.
func TestSuspendedAndPinned(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "blue"}),
		"other/cm.yaml": configMap("other", map[string]string{"color": "blue"}),
	})
	first := repo.Head()
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	delivered := func(app, rev, color string) func() bool {
		return func() bool {
			a := appStatus(r, app)
			return a.Revision == rev && a.Result == apply.ResultSucceeded && cmData(t, ns, app)["color"] == color
		}
	}
	commit := func(color string) string {
		repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": color}))
		repo.WriteFile("other/cm.yaml", configMap("other", map[string]string{"color": color}))
		return repo.CommitAll(color)
	}
	waitFor(t, 30*time.Second, "first delivery", delivered("web", first, "blue"))
	second := commit("green")
	waitFor(t, 30*time.Second, "web at the second commit", delivered("web", second, "green"))

	suspend := func(v string) {
		t.Helper()
		patch := []byte(`{"metadata":{"annotations":{"` + reconcile.AnnotationSuspend + `":` + v + `}}}`)
		if _, err := env.Client().CoreV1().Secrets(inv).Patch(ctx, apply.InventoryName("web"), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	suspend(`"true"`)
	waitFor(t, 10*time.Second, "web suspended", func() bool { return appStatus(r, "web").Suspended })
	po := opts.Pipeline
	po.CacheDir = t.TempDir()
	po.Kube = func(string) (*rest.Config, error) { return env.Config, nil }
	if _, err := pin.Pin(ctx, pin.Options{Pipeline: po, App: "web", Revision: first, Reason: "green breaks uploads"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the pin seen", func() bool { return appStatus(r, "web").Pin != nil })
	// A new head: other is delivered there, so the loop has passed over
	// web, due at its pin, since it saw the pin and the suspension.
	third := commit("red")
	waitFor(t, 30*time.Second, "other at the third commit", delivered("other", third, "red"))
	if a := appStatus(r, "web"); a.Revision != second || !a.Suspended || cmData(t, ns, "web")["color"] != "green" {
		t.Fatalf("suspended and pinned web was delivered: status %+v, color %s; want it left at %s (green)", a, cmData(t, ns, "web")["color"], second)
	}

	suspend("null")
	waitFor(t, 30*time.Second, "resumed web at its pinned revision", delivered("web", first, "blue"))
	if a := appStatus(r, "web"); a.Suspended || a.Pin == nil || a.Pin.Revision != first {
		t.Errorf("resumed web: %+v, want not suspended, pinned to %s", a, first)
	}
	if r.Status().Revision != third {
		t.Errorf("head %s, want %s", r.Status().Revision, third)
	}
}
