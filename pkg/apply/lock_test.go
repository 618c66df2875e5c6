package apply_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestTwoAppliesOfOneApp: while one deliver applies an app (here held up
// by a slow migration), a second one waits for the app's lock and fails
// clearly after its LockTimeout; once the first is done, it goes through.
// A plan made before the first run changed the app is refused.
func TestTwoAppliesOfOneApp(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	opts := apply.PlanOptions{App: ns}
	slowHook := `{deliver.dev/hook: pre-apply, deliver.dev/hook-timeout: 4s}`
	first := withHooks(objects(t, ns, app("app:1", "pw", slowHook, "{app: migrate, "+testenv.NeverReadyLabel+": \"true\"}")))

	second := newManager(t, apply.Options{LockTimeout: time.Second})
	stale, err := second.Plan(ctx, objects(t, ns, cms("a=1")), opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := newManager(t, apply.Options{}).Apply(ctx, first, opts)
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond) // the first run holds the lock, waiting for its hook
	_, err = second.Apply(ctx, objects(t, ns, cms("a=1")), opts)
	if !errors.Is(err, apply.ErrLocked) || !strings.Contains(err.Error(), "held by ") {
		t.Errorf("concurrent apply: %v, want ErrLocked naming the holder", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the slow migration was meant to time out")
	}
	if _, err := second.Execute(ctx, stale); err == nil || !strings.Contains(err.Error(), "plan again") {
		t.Errorf("stale plan: %v, want a refusal", err)
	}
	if _, err := second.Apply(ctx, objects(t, ns, cms("a=1")), opts); err != nil {
		t.Errorf("apply after the first finished: %v", err)
	}
}

// TestExecuteRefusedAfterKilledRun: a run that only updates objects writes
// the inventory at its end only, so a plan made before such a run was
// killed would look current. Execute finds the lock it left behind and
// refuses the plan.
func TestExecuteRefusedAfterKilledRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Revision: "c1"}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1")), opts); err != nil {
		t.Fatal(err)
	}
	p, err := m.Plan(ctx, objects(t, ns, cms("a=2")), opts)
	if err != nil {
		t.Fatal(err)
	}
	leaveLockHeld(t, ns, "ci-runner/99/dead")
	if _, err := m.Execute(ctx, p); err == nil || !strings.Contains(err.Error(), "was killed") || !strings.Contains(err.Error(), "plan again") {
		t.Errorf("plan made before a killed run: %v, want a refusal", err)
	}
	p, err = m.Plan(ctx, objects(t, ns, cms("a=2")), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Execute(ctx, p); err != nil {
		t.Errorf("a new plan: %v", err)
	}
}
