package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// oneShotGCPercent is the collector's target for commands that exit within
// seconds (render, diff, apply, status, reconcile --once). They allocate
// in bursts (YAML parsing, JSON of requests and responses) over a small
// live heap, and Go's default of 100 collects every few MiB of growth: a
// fifth of their CPU, on the same cores as the API server they talk to.
// 200 collects half as often for some tens of MiB more peak RSS (see
// docs/performance.md). The reconciler, which lives for months, keeps the
// default.
const oneShotGCPercent = 200

// tuneGC sets the collector for cmd. GOGC in the environment wins: it is
// how a user trades memory for CPU.
func tuneGC(cmd *cobra.Command) {
	if os.Getenv("GOGC") != "" || longRunning(cmd) {
		return
	}
	debug.SetGCPercent(oneShotGCPercent)
}

// longRunning reports whether cmd runs until it is stopped.
func longRunning(cmd *cobra.Command) bool {
	if cmd.Name() != "reconcile" {
		return false
	}
	once, err := cmd.Flags().GetBool("once")
	return err != nil || !once
}
