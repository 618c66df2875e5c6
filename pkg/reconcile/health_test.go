package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/internal/testenv"
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
