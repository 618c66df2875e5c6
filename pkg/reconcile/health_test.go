package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestOnceHealthCheck: the reconciler judges a custom resource by the
// app's healthChecks, as deliver apply does: a pass waits until the test
// (the operator) reports the Widget Ready; a pass over a commit whose
// Widget the operator reports Failed fails at once, naming the object and
// the expression.
func TestOnceHealthCheck(t *testing.T) {
	ns := env.Namespace(t)
	group := strings.ReplaceAll(ns, "-", "") + ".example.com"
	const failed = "self.?status.?phase.orValue('') == 'Failed'"
	widget := func(size string) string {
		return "apiVersion: " + group + "/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: " + size + "}\n"
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, `- name: db
  namespace: $NS
  waitTimeout: 2m
  manifests: {path: db}
  healthChecks:
  - apiVersion: `+group+`/v1
    kind: Widget
    failed: "`+failed+`"
    current: "self.?status.?phase.orValue('') == 'Ready'"`),
		"db/crd.yaml":    testenv.StatusWidgetCRD(group),
		"db/widget.yaml": widget("1"),
	})
	opts := options(t, repo, env.Config)
	opts.Once = true
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}
	// once runs a pass while the test writes the Widget's status at
	// generation gen.
	once := func(gen int64, phase string) (time.Duration, error) {
		t.Helper()
		r, err := reconcile.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		env.SetStatus(t, gvr, ns, "w", gen, map[string]any{"phase": phase})
		err = <-done
		return time.Since(start), err
	}
	if _, err := once(1, "Ready"); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	repo.WriteFile("db/widget.yaml", widget("2"))
	repo.CommitAll("size 2")
	took, err := once(2, "Failed")
	want := "Widget/" + ns + "/w: wait: failed: health check failed `" + failed + "` is true"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "app db") {
		t.Errorf("pass over the failing commit: %v, want app db and %q", err, want)
	}
	if took > time.Minute {
		t.Errorf("the failed Widget ended the pass after %s (waitTimeout 2m): not at once", took)
	}
}

// TestWaitForAtUnchangedRevision: an app whose inputs a commit does not
// change still waits for its waitFor objects at that commit, as a Flux
// Kustomization checks its healthChecks at every reconciliation: it runs
// from its inventory, not rendered; an app that depends on it and changes
// in the same commit waits until they are ready.
func TestWaitForAtUnchangedRevision(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	ctx := context.Background()
	secrets := env.Client().CoreV1().Secrets(ns)
	issued := func(ready bool) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "issued"}, Data: map[string][]byte{"tls.crt": []byte("x")}}
		if ready {
			s.Data["ready"] = []byte("yes")
		}
		return s
	}
	if _, err := secrets.Create(ctx, issued(true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, `- name: edge
  namespace: $NS
  manifests: {path: edge}
  waitTimeout: 1s
  healthChecks: [{apiVersion: v1, kind: Secret, current: "has(self.data) && 'ready' in self.data"}]
  waitFor: [{apiVersion: v1, kind: Secret, name: issued}]`,
			"- {name: web, namespace: $NS, manifests: {path: web}, dependsOn: [edge]}"),
		"edge/cm.yaml": configMap("edge", map[string]string{"v": "one"}),
		"web/cm.yaml":  configMap("web", map[string]string{"v": "one"}),
		"README.md":    "one\n",
	})
	r, _ := start(t, options(t, repo, env.Config))
	atHead := func(app string) bool {
		a := appStatus(r, app)
		return a.Revision == repo.Head() && a.Result == apply.ResultSucceeded
	}
	waitFor(t, 60*time.Second, "first delivery", func() bool { return atHead("edge") && atHead("web") })

	// A commit of no app's file: edge runs all the same, planned from
	// its inventory, and finds the Secret ready.
	edgeRun := appStatus(r, "edge").LastRun
	repo.WriteFile("README.md", "two\n")
	repo.CommitAll("readme")
	r.Trigger()
	waitFor(t, 30*time.Second, "edge at the readme commit", func() bool { return atHead("edge") && atHead("web") })
	if a := appStatus(r, "edge"); !a.LastRun.After(edgeRun) || !strings.HasPrefix(a.Message, "unchanged: ") || !strings.Contains(a.Message, "waitFor objects ready") {
		t.Errorf("edge at an unchanged commit: last run %s (was %s), message %q; want a run from the inventory that waited", a.LastRun, edgeRun, a.Message)
	}

	// The Secret is no longer ready, and a commit changes web only: edge
	// fails its wait, naming the Secret, and web waits for it.
	if _, err := secrets.Update(ctx, issued(false), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"v": "two"}))
	repo.CommitAll("web two")
	r.Trigger()
	want := "Secret/" + ns + "/issued: InProgress"
	waitFor(t, 30*time.Second, "edge failing its wait", func() bool {
		a := appStatus(r, "edge")
		return a.Result == apply.ResultFailed && strings.Contains(a.Message, want)
	})
	if got := cmData(t, ns, "web")["v"]; got != "one" || appStatus(r, "web").Revision == repo.Head() {
		t.Errorf("web applied (v=%q) while edge's waitFor Secret was not ready", got)
	}
	if _, err := secrets.Update(ctx, issued(true), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "edge, then web, once the Secret is ready", func() bool {
		return atHead("edge") && atHead("web") && cmData(t, ns, "web")["v"] == "two"
	})
}
