package telemetry

import (
	"context"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/deliverhq/deliver/internal/telemetry/otlptest"
)

// clearEnv unsets every variable Setup reads, for the test.
func clearEnv(t *testing.T) {
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	} {
		t.Setenv(k, "")
	}
}

// TestTraceSetupOff: without an endpoint, or with tracing turned off, no
// exporter is made and no goroutine started.
func TestTraceSetupOff(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"no endpoint", nil},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "TRUE"}},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces", "OTEL_TRACES_EXPORTER": "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			before := runtime.NumGoroutine()
			tp, shutdown, err := Setup(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(noop.TracerProvider); !ok {
				t.Errorf("provider is %T, want the no-op one", tp)
			}
			_, span := tp.Tracer("test").Start(context.Background(), "x")
			if span.IsRecording() || span.SpanContext().IsValid() {
				t.Error("a span of the disabled provider records")
			}
			span.End()
			if after := runtime.NumGoroutine(); after != before {
				t.Errorf("goroutines: %d before Setup, %d after", before, after)
			}
			if err := shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestTraceSetupExport exports a span over OTLP/HTTP and OTLP/gRPC to an
// in-process receiver, with the service name and its override.
func TestTraceSetupExport(t *testing.T) {
	tests := []struct {
		name        string
		grpc        bool
		env         map[string]string
		wantService string
	}{
		{"http", false, nil, "deliver"},
		{"http traces endpoint and service name", false, map[string]string{"OTEL_SERVICE_NAME": "ci-deliver"}, "ci-deliver"},
		{"grpc", true, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "deliver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			var rcv *otlptest.Receiver
			if tt.grpc {
				rcv = otlptest.NewGRPC(t)
			} else {
				rcv = otlptest.NewHTTP(t)
			}
			if tt.env["OTEL_SERVICE_NAME"] != "" {
				t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.Endpoint+"/v1/traces")
			} else {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tp, shutdown, err := Setup(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, span := tp.Tracer("test").Start(context.Background(), "run")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			if len(spans) != 1 || spans[0].Name != "run" {
				t.Fatalf("received %d spans, want the one named run: %v", len(spans), spans)
			}
			if got := spans[0].Resource["service.name"]; got != tt.wantService {
				t.Errorf("service.name = %q, want %q", got, tt.wantService)
			}
		})
	}
}

func TestTraceSetupUnsupported(t *testing.T) {
	for _, env := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "carrier-pigeon"},
		{"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		clearEnv(t)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		for k, v := range env {
			t.Setenv(k, v)
		}
		tp, shutdown, err := Setup(context.Background())
		if err == nil {
			t.Errorf("%v: no error", env)
		}
		if _, ok := tp.(noop.TracerProvider); !ok || shutdown == nil {
			t.Errorf("%v: provider %T, want the no-op one and a shutdown func", env, tp)
		}
	}
}
