// Package telemetry sets up the OpenTelemetry trace exporter of a deliver
// process from the standard OTEL_* environment variables. Without an OTLP
// endpoint it sets up nothing: no exporter, no goroutine, and a no-op
// TracerProvider, so that tracing costs nothing unless asked for.
//
// The variables read:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
//     where to send spans; tracing is on when one of them is set;
//   - OTEL_EXPORTER_OTLP_PROTOCOL or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:
//     "http/protobuf" (default) or "grpc";
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: tracing off;
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: the resource (the
//     service name defaults to "deliver");
//   - the other OTEL_EXPORTER_OTLP_* (headers, timeout, compression,
//     certificates), OTEL_TRACES_SAMPLER* and OTEL_BSP_* as the
//     OpenTelemetry SDK reads them.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/deliverhq/deliver/internal/version"
)

// ServiceName is the service.name of deliver's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "deliver"

// Setup returns the TracerProvider a deliver process should trace with and
// a shutdown function that flushes the spans not yet exported and stops the
// exporter; call it before the process exits, with a bounded ctx. When
// tracing is off (no OTLP endpoint, OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none) the provider is a no-op one and shutdown does
// nothing. An error means the variables ask for something unsupported
// (an unknown protocol or exporter); the caller may go on without tracing.
func Setup(ctx context.Context) (trace.TracerProvider, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	if !Enabled() {
		return noop.NewTracerProvider(), off, nil
	}
	switch e := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); e {
	case "", "otlp":
	default:
		return noop.NewTracerProvider(), off, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: unsupported (want otlp or none)", e)
	}
	exp, err := newExporter(ctx, Protocol())
	if err != nil {
		return noop.NewTracerProvider(), off, err
	}
	// A resource that could not be fully detected is still usable.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.version", version.Version),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Enabled reports whether the environment asks for traces to be exported:
// an OTLP endpoint is set, and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none turns tracing off.
func Enabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")) == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// Protocol returns the OTLP protocol for traces:
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
// "http/protobuf".
func Protocol() string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

// newExporter makes the OTLP exporter for protocol. Both read the
// endpoint, headers, timeout, compression and TLS settings from the
// environment themselves; neither connects before the first export.
func newExporter(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/json":
		return nil, errors.New("OTEL_EXPORTER_OTLP_PROTOCOL=http/json: unsupported (want http/protobuf or grpc)")
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: unknown (want http/protobuf or grpc)", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp %s exporter: %w", protocol, err)
	}
	return exp, nil
}
