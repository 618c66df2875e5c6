package testenv

import (
	"testing"
	"time"
)

// Until calls cond every interval until it holds or timeout has passed. It
// returns how long that took and whether cond held: the caller says what
// a timeout means (Eventually fails the test).
func Until(timeout, interval time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
	return time.Since(start), true
}

// Eventually is Until that fails tb on a timeout, naming what it waited
// for.
func Eventually(tb testing.TB, timeout, interval time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	took, ok := Until(timeout, interval, cond)
	if !ok {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
	return took
}
