// Package otlptest is an in-process OTLP trace receiver for tests: it takes
// what an exporter sends over OTLP/HTTP (protobuf) or OTLP/gRPC, keeps the
// bytes as they arrived and decodes the spans.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Receiver collects exported spans. It is safe for concurrent use.
type Receiver struct {
	// Endpoint is the base URL to set as OTEL_EXPORTER_OTLP_ENDPOINT
	// ("http://127.0.0.1:port").
	Endpoint string

	mu   sync.Mutex
	raw  bytes.Buffer
	reqs []*coltracepb.ExportTraceServiceRequest
}

// NewHTTP starts an OTLP/HTTP receiver serving POST /v1/traces; it stops
// when the test ends.
func NewHTTP(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	r.Endpoint = srv.URL
	return r
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.add(data); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// NewGRPC starts an OTLP/gRPC receiver; it stops when the test ends.
func NewGRPC(tb testing.TB) *Receiver {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Receiver{Endpoint: "http://" + l.Addr().String()}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, grpcService{r: r})
	go func() { _ = s.Serve(l) }()
	tb.Cleanup(s.Stop)
	return r
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	if err := g.r.add(data); err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) add(data []byte) error {
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		return fmt.Errorf("decode export request: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw.Write(data)
	r.reqs = append(r.reqs, req)
	return nil
}

// Raw returns every export request received, as the protobuf bytes that
// arrived (uncompressed), one after the other.
func (r *Receiver) Raw() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.raw.Bytes())
}

// Reset forgets what was received.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw.Reset()
	r.reqs = nil
}

// Span is one received span with the attributes of its resource.
type Span struct {
	*tracepb.Span
	Resource map[string]string
}

// TraceID returns the span's trace ID in hex.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }

// ID returns the span's ID in hex.
func (s Span) ID() string { return hex.EncodeToString(s.Span.SpanId) }

// ParentID returns the parent span's ID in hex, "" for a root span.
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr returns the span attribute key as a string, and whether it is set.
func (s Span) Attr(key string) (string, bool) { return Attr(s.Attributes, key) }

// Spans returns every span received, in the order they arrived.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Span
	for _, req := range r.reqs {
		for _, rs := range req.ResourceSpans {
			res := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.Key] = value(kv.Value)
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					out = append(out, Span{Span: sp, Resource: res})
				}
			}
		}
	}
	return out
}

// Attr returns the attribute key of attrs as a string, and whether it is
// set.
func Attr(attrs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range attrs {
		if kv.Key == key {
			return value(kv.Value), true
		}
	}
	return "", false
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	default:
		return fmt.Sprint(v.GetValue())
	}
}
