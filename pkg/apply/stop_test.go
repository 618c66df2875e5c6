package apply_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestStopAtStageBoundary: a run stopped (its ctx cancelled, as on SIGTERM)
// while a migration runs ends promptly; the config written before is kept
// and recorded, no workload changes, no on-failure hook runs, the
// inventory says "interrupted" and the app's lock is free for the next run.
func TestStopAtStageBoundary(t *testing.T) {
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{HookTimeout: 2 * time.Minute})
	never := "{app: migrate, " + testenv.NeverReadyLabel + ": \"true\"}"
	onFailure := `
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: notify
  namespace: NS
  annotations: {deliver.dev/hook: on-failure}
data: {sent: "yes"}
`
	set := withHooks(objects(t, ns, app("app:1", "pw1", preApply, never)+onFailure))

	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		// Cancel once the migration Job exists: the run waits for it.
		cs := env.Client()
		for {
			if _, err := cs.BatchV1().Jobs(ns).Get(context.Background(), "migrate", metav1.GetOptions{}); err == nil {
				cancel(errors.New("SIGTERM"))
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := m.Apply(ctx, set, apply.PlanOptions{App: ns, Wait: true})
	if err == nil || !strings.Contains(err.Error(), "SIGTERM") {
		t.Fatalf("Apply after stop: %v, want an error naming the cause", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("stopping took %s", d)
	}

	bg := context.Background()
	cs := env.Client()
	if _, err := cs.CoreV1().Secrets(ns).Get(bg, "db", metav1.GetOptions{}); err != nil {
		t.Errorf("config applied before the stop: %v", err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(bg, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("workload after a stop during the migration: %v, want not found", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(bg, "notify", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("on-failure hook after a stop: %v, want not run", err)
	}
	inv, err := m.ReadInventory(bg, ns)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Result != apply.ResultFailed || !strings.HasPrefix(inv.Message, "interrupted") {
		t.Errorf("inventory: result %q message %q, want failed/interrupted", inv.Result, inv.Message)
	}
	recorded := map[string]bool{}
	for _, e := range inv.Entries {
		recorded[e.ID.String()] = true
	}
	for _, id := range []string{"Secret/" + ns + "/db", "Deployment/" + ns + "/web"} {
		if !recorded[id] {
			t.Errorf("inventory lacks %s (has %v)", id, recorded)
		}
	}

	// The lock was released: the next run starts at once and finishes
	// what the stopped one left (the Job is replaced by one that completes).
	done := withHooks(objects(t, ns, app("app:1", "pw1", preApply, "{app: migrate}")))
	lctx, lcancel := context.WithTimeout(bg, 90*time.Second)
	defer lcancel()
	if _, err := m.Apply(lctx, done, apply.PlanOptions{App: ns, Wait: true}); err != nil {
		t.Fatalf("run after the stop: %v", err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(bg, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("workload after the next run: %v", err)
	}
}
