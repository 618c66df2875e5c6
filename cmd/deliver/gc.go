package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// oneShotGCPercent is the collector's target for commands that exit within
// seconds (render, diff, apply, status, reconcile --once). They allocate
// in bursts (YAML parsing, JSON of requests and responses) over a small
// live heap, and Go's default of 100 collects every few MiB of growth: a
// fifth of their CPU, on the same cores as the API server they talk to.
// 200 collects half as often for some tens of MiB more peak RSS (see
// docs/performance.md).
const oneShotGCPercent = 200

// reconcilerGCPercent is the collector's target for the reconciler, which
// lives for months and is sized by its memory: its live heap is small
// (about 50 MB at its peak while delivering 1,000 new apps, from heap
// profiles), and at Go's default of 100 its RSS followed the heap goal of
// twice that. 50 measured 184 MiB against 220-225 MiB for that first
// delivery (with the larger heap of then), for a fifth to a quarter more
// of the reconciler's own CPU during it and the same wall time (the
// control plane sets the pace); idle, it collects rarely either way
// (docs/performance.md).
const reconcilerGCPercent = 50

// oneShotHeapBudget is how much a one-shot command may allocate before its
// first collection. Most runs (a render, a diff of a few hundred objects)
// finish below it and never stop to collect; a bigger run collects once
// the budget is reached and from then on at oneShotGCPercent, so its peak
// heap is the larger of the budget and what oneShotGCPercent alone gives.
// Measured at 1,000 objects: a 10-changed diff + apply 15% faster, a
// first apply 10%, for 13-19 MiB more peak RSS (docs/performance.md).
const oneShotHeapBudget = 64 << 20

// tuneGC sets the collector for cmd. GOGC or GOMEMLIMIT in the environment
// wins: it is how a user trades memory for CPU.
func tuneGC(cmd *cobra.Command) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if longRunning(cmd) {
		debug.SetGCPercent(reconcilerGCPercent)
		return
	}
	// The collector is off until the memory limit makes it run; the
	// finalizer of an object dropped now runs after that first cycle and
	// hands over to oneShotGCPercent, without a limit. A library such as
	// a GC tuner would poll for the same thing.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(oneShotHeapBudget)
	// 64 bytes: the tiny allocator (under 16) may never finalize.
	sentinel := new([64]byte)
	runtime.SetFinalizer(sentinel, func(*[64]byte) {
		debug.SetGCPercent(oneShotGCPercent)
		debug.SetMemoryLimit(math.MaxInt64)
	})
}

// longRunning reports whether cmd runs until it is stopped.
func longRunning(cmd *cobra.Command) bool {
	if cmd.Name() != "reconcile" {
		return false
	}
	once, err := cmd.Flags().GetBool("once")
	return err != nil || !once
}
