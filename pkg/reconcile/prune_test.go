package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestPruneAppsReconciled: with pruneApps the reconciler removes an app
// that left deliver.yaml (its objects, then its inventory) once the apps
// still listed are delivered at the new commit, and forgets it; the other
// apps keep their objects, and the removal is counted. (Without pruneApps
// an app that leaves keeps its objects: cmd/deliver TestDeleteCommand.)
func TestPruneAppsReconciled(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	config := func(apps ...string) string {
		return strings.Replace(deliverYAML(ns, apps...), "apps:\n", "pruneApps: true\napps:\n", 1)
	}
	web := "- {name: web, namespace: $NS, manifests: {path: web}}"
	old := "- {name: old, namespace: $NS, manifests: {path: old}}"
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": config(web, old),
		"web/cm.yaml":  configMap("web", map[string]string{"v": "one"}),
		"old/cm.yaml":  configMap("old", map[string]string{"v": "one"}),
	})
	opts := options(t, repo, env.Config)
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "both apps delivered", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && appStatus(r, "old").Revision == repo.Head()
	})
	if !strings.Contains(metricsBody(t, r), `deliver_reconcile_runs_total{app="old",result="succeeded"} 1`) {
		t.Error("no run of old in the metrics")
	}

	repo.WriteFile("deliver.yaml", config(web))
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"v": "two"}))
	head := repo.CommitAll("old leaves")
	r.Trigger()
	ctx := context.Background()
	inventory := func() error {
		_, err := env.Client().CoreV1().Secrets(opts.Pipeline.Apply.InventoryNamespace).Get(ctx, apply.InventoryName("old"), metav1.GetOptions{})
		return err
	}
	waitFor(t, 30*time.Second, "old removed", func() bool {
		_, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "old", metav1.GetOptions{})
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(inventory())
	})
	if appStatus(r, "web").Revision != head || cmData(t, ns, "web")["v"] != "two" {
		t.Error("old was removed before web was delivered at the new commit")
	}
	for _, a := range r.Status().Apps {
		if a.App == "old" {
			t.Errorf("the removed app is still in the status: %+v", a)
		}
	}
	// The removal is counted once it returns, which may be just after
	// its last delete was seen above.
	want := `deliver_reconcile_removed_total{app="old"} 1`
	waitFor(t, 30*time.Second, "metrics with "+want, func() bool {
		return strings.Contains(metricsBody(t, r), want)
	})
	// Its other series are gone: a removed app has no last success to
	// alert on.
	if series := appSeries(metricsBody(t, r), "old"); len(series) != 1 {
		t.Errorf("series of the removed app: %q, want only its removal", series)
	}
}

// TestAppLeavingIsForgotten: an app that leaves deliver.yaml without
// pruneApps keeps its objects, and leaves the status and the metrics.
func TestAppLeavingIsForgotten(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	web := "- {name: web, namespace: $NS, manifests: {path: web}}"
	old := "- {name: old, namespace: $NS, manifests: {path: old}}"
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, web, old),
		"web/cm.yaml":  configMap("web", map[string]string{"v": "one"}),
		"old/cm.yaml":  configMap("old", map[string]string{"v": "one"}),
	})
	r, _ := start(t, options(t, repo, env.Config))
	waitFor(t, 30*time.Second, "both apps delivered", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && appStatus(r, "old").Revision == repo.Head()
	})
	if len(appSeries(metricsBody(t, r), "old")) == 0 {
		t.Fatal("no series of old in the metrics")
	}
	repo.WriteFile("deliver.yaml", deliverYAML(ns, web))
	head := repo.CommitAll("old leaves")
	r.Trigger()
	waitFor(t, 30*time.Second, "old gone from the status", func() bool {
		return r.Status().Revision == head && appStatus(r, "old").App == ""
	})
	if series := appSeries(metricsBody(t, r), "old"); len(series) != 0 {
		t.Errorf("series of the app that left: %q, want none", series)
	}
	if cmData(t, ns, "old")["v"] != "one" {
		t.Error("the objects of the app that left were changed, want them left in place")
	}
}

// appSeries returns the lines of body for series of app.
func appSeries(body, app string) []string {
	var out []string
	for line := range strings.Lines(body) {
		if strings.Contains(line, `app="`+app+`"`) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}
