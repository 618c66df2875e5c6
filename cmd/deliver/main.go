// Command deliver gets what is in git onto a Kubernetes cluster safely.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/deliverhq/deliver/internal/telemetry"
)

// exitError carries an exit code other than 1 (for example diff's 2).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	flush := setupTracing(ctx)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	flush()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// setupTracing exports the trace of each run over OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (see internal/telemetry): every
// pipeline run picks the global TracerProvider up. It returns what flushes
// the spans before the process exits, so that a CI run exports its trace;
// an unreachable collector delays the exit by flushTimeout at most.
// Tracing never stops a delivery: what goes wrong with it is a warning.
func setupTracing(ctx context.Context) (flush func()) {
	tp, shutdown, err := telemetry.Setup(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warning: tracing off:", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		fmt.Fprintln(os.Stderr, "warning: tracing:", err)
	}))
	otel.SetTracerProvider(tp)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "warning: tracing: export:", err)
		}
	}
}

// flushTimeout bounds the export of the last spans at exit.
const flushTimeout = 5 * time.Second
