package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

func TestLongRunning(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"reconcile"}, true},
		{[]string{"reconcile", "--once=false"}, true},
		{[]string{"reconcile", "--once"}, false},
		{[]string{"apply", "-f", "x"}, false},
		{[]string{"diff", "-f", "x"}, false},
		{[]string{"render", "-f", "x"}, false},
	} {
		root := newRootCmd()
		cmd, rest, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := longRunning(cmd); got != tc.want {
			t.Errorf("longRunning(%v) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestTuneGCHandsOverAfterFirstCollection: a one-shot command starts with
// the collector off under a memory limit of oneShotHeapBudget, and the
// first collection hands over to oneShotGCPercent without a limit.
func TestTuneGCHandsOverAfterFirstCollection(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	percent := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	limit := func() int64 { return debug.SetMemoryLimit(-1) } // -1 reads it
	oldPercent, oldLimit := percent(), limit()
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})
	cmd, _, err := newRootCmd().Find([]string{"render"})
	if err != nil {
		t.Fatal(err)
	}
	tuneGC(cmd)
	if p, l := percent(), limit(); p != -1 || l != oneShotHeapBudget {
		t.Fatalf("before the first collection: GOGC %d, limit %d; want -1, %d", p, l, oneShotHeapBudget)
	}
	testenv.Eventually(t, 10*time.Second, 10*time.Millisecond, "the finalizer to hand over", func() bool {
		runtime.GC()
		return percent() == oneShotGCPercent
	})
	if l := limit(); l != math.MaxInt64 {
		t.Errorf("after the first collection: limit %d, want none", l)
	}
}

// TestTuneGCEnvironmentAndReconciler: GOGC or GOMEMLIMIT in the
// environment keep Go's settings, for every command; without them the
// reconciler (not --once) runs at reconcilerGCPercent, with no limit.
func TestTuneGCEnvironmentAndReconciler(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  [2]string
		want int // GOGC after tuneGC; 123 is what the test set
	}{
		{[]string{"render"}, [2]string{"GOGC", "150"}, 123},
		{[]string{"apply"}, [2]string{"GOMEMLIMIT", "1GiB"}, 123},
		{[]string{"reconcile"}, [2]string{"GOGC", "80"}, 123},
		{[]string{"reconcile"}, [2]string{"GOGC", ""}, reconcilerGCPercent},
	} {
		t.Setenv("GOGC", "")
		t.Setenv("GOMEMLIMIT", "")
		t.Setenv(tc.env[0], tc.env[1])
		before := debug.SetGCPercent(123)
		beforeLimit := debug.SetMemoryLimit(-1)
		cmd, _, err := newRootCmd().Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		tuneGC(cmd)
		if p := debug.SetGCPercent(before); p != tc.want {
			t.Errorf("%v with %s=%q: GOGC %d, want %d", tc.args, tc.env[0], tc.env[1], p, tc.want)
		}
		if l := debug.SetMemoryLimit(beforeLimit); l != beforeLimit {
			t.Errorf("%v with %s=%q: memory limit set to %d", tc.args, tc.env[0], tc.env[1], l)
		}
	}
}
