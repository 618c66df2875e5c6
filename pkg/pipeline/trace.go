package pipeline

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// A run is one trace (see Options.TracerProvider):
//
//	deliver.apply | deliver.diff | deliver.render   the run
//	├── fetch                                       pin the source
//	├── decrypt                                     secret engines (Vault login)
//	├── render                                      every app
//	│   └── render                                  one app
//	│       └── decrypt                             a SOPS file, or secret refs
//	└── app                                         one app (diff and apply)
//	    ├── diff                                    the plan (in apply: with the app's lock)
//	    ├── apply                                   config, then workloads
//	    ├── scale-down
//	    ├── hooks                                   pre-apply, post-apply
//	    ├── wait
//	    └── prune
//
// Errors are recorded redacted, with the status Error.

// instrumentationName names deliver's tracer.
const instrumentationName = "github.com/deliverhq/deliver/pkg/pipeline"

// The attributes of deliver's spans.
const (
	attrRevision    = "deliver.revision"
	attrDirty       = "deliver.dirty"
	attrEnvironment = "deliver.environment"
	attrAppCount    = "deliver.apps"
	attrApp         = "deliver.app"
	attrNamespace   = "deliver.namespace"
	attrStep        = "deliver.step"
	attrPhase       = "deliver.hook.phase"
	attrObjects     = "deliver.objects"
	attrSecrets     = "deliver.secrets"
	attrFile        = "deliver.file"
	attrReport      = "deliver.report"
	attrChanges     = "deliver.changes"
	attrSkipped     = "deliver.skipped"
)

func (m mode) String() string {
	switch m {
	case modeRender:
		return "render"
	case modeDiff:
		return "diff"
	default:
		return "apply"
	}
}

// startSpan starts a span under ctx's with the run's TracerProvider.
func startSpan(ctx context.Context, opts *Options, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return opts.TracerProvider.Tracer(instrumentationName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span, recording err first when there is one.
func endSpan(span trace.Span, red *secrets.Redactor, err error) {
	if err != nil {
		recordError(span, red, err)
	}
	span.End()
}

// recordError sets the span's status to Error with err's message and adds
// the exception event, both redacted: no secret value leaves in a span.
func recordError(span trace.Span, red *secrets.Redactor, err error) {
	msg := red.Redact(err.Error())
	span.AddEvent("exception", trace.WithAttributes(attribute.String("exception.message", msg)))
	span.SetStatus(codes.Error, msg)
}

// runAttributes describe a run once its source is pinned.
func runAttributes(res *Result, apps int) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String(attrRevision, res.Revision),
		attribute.String(attrEnvironment, res.Environment),
		attribute.Int(attrAppCount, apps),
	}
}

// endRun ends the span of a run: failed when the run failed or any app did.
func endRun(span trace.Span, red *secrets.Redactor, res *Result, err error) {
	if err == nil && res != nil {
		err = res.Err()
	}
	endSpan(span, red, err)
}

func appAttributes(ar *AppResult) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String(attrApp, ar.Name), attribute.String(attrNamespace, ar.Namespace)}
}

// startApp starts the span of one app's diff or apply.
func startApp(ctx context.Context, opts *Options, ar *AppResult) (context.Context, trace.Span) {
	return startSpan(ctx, opts, "app", appAttributes(ar)...)
}

// endApp ends an app's span with what its plan or report says.
func endApp(span trace.Span, red *secrets.Redactor, ar *AppResult, err error) {
	if ar.Plan != nil {
		span.SetAttributes(attribute.Bool(attrChanges, ar.Plan.HasChanges() || hooksWouldRun(ar.Plan)))
	}
	if ar.Report != nil {
		span.SetAttributes(attribute.String(attrReport, ar.Report.Summary()))
	}
	endSpan(span, red, err)
}

// traceSkipped records an app not delivered: a dependency failed, or
// deliver.yaml suspends it or one of its dependencies.
func traceSkipped(ctx context.Context, opts *Options, ar *AppResult) {
	_, span := startApp(ctx, opts, ar)
	span.SetAttributes(attribute.String(attrSkipped, ar.Skipped))
	endSpan(span, opts.Redactor, ar.err)
}

// stepSpans turns the progress reports of one app's apply into spans: the
// plan is a span "diff" from begin to the first step, and each step a span
// from its report to the next one, or to end.
type stepSpans struct {
	opts *Options
	ctx  context.Context // the app's span, set before the app's run starts

	mu  sync.Mutex
	cur trace.Span
}

func newStepSpans(opts *Options) *stepSpans {
	return &stepSpans{opts: opts}
}

// progress returns an apply.Options.Progress that makes the spans, then
// calls next when it is set.
func (s *stepSpans) progress(next func(app string, step apply.Step, n int)) func(app string, step apply.Step, n int) {
	return func(app string, step apply.Step, n int) {
		s.step(step, n)
		if next != nil {
			next(app, step, n)
		}
	}
}

// begin starts the span "diff", which lasts until the first step.
func (s *stepSpans) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCurrent(nil)
	_, s.cur = startSpan(s.ctx, s.opts, "diff")
}

func (s *stepSpans) step(step apply.Step, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCurrent(nil)
	name, attrs := stepSpan(step)
	attrs = append(attrs, attribute.String(attrStep, string(step)), attribute.Int(attrObjects, n))
	_, s.cur = startSpan(s.ctx, s.opts, name, attrs...)
}

// end ends the current span with the outcome of the apply: a failure is
// the failure of the step that was running.
func (s *stepSpans) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCurrent(err)
}

func (s *stepSpans) endCurrent(err error) {
	if s.cur != nil {
		endSpan(s.cur, s.opts.Redactor, err)
		s.cur = nil
	}
}

// stepSpan returns the span name and attributes of an apply step.
func stepSpan(step apply.Step) (string, []attribute.KeyValue) {
	switch step {
	case apply.StepConfig, apply.StepWorkloads:
		return "apply", nil
	case apply.StepPreApplyHooks:
		return "hooks", []attribute.KeyValue{attribute.String(attrPhase, "pre-apply")}
	case apply.StepPostApplyHooks:
		return "hooks", []attribute.KeyValue{attribute.String(attrPhase, "post-apply")}
	default: // scale-down, wait, prune, and any later step by its name
		return string(step), nil
	}
}

// The secret operations of a render, each a span "decrypt".

func (s *runSecrets) decrypt(ctx context.Context, path string, data []byte) ([]byte, error) {
	ctx, span := startSpan(ctx, s.opts, "decrypt", attribute.String(attrSecrets, "sops"), attribute.String(attrFile, path))
	out, err := s.sops.Decrypt(ctx, path, data, secrets.FormatForPath(path))
	endSpan(span, s.red, err)
	return out, err
}

func (s *runSecrets) decryptManifest(ctx context.Context, path string, data []byte) ([]*unstructured.Unstructured, error) {
	ctx, span := startSpan(ctx, s.opts, "decrypt", attribute.String(attrSecrets, "sops"), attribute.String(attrFile, path))
	objs, err := s.sops.DecryptManifest(ctx, path, data)
	endSpan(span, s.red, err)
	return objs, err
}

func (s *runSecrets) resolveValues(ctx context.Context, where string, values map[string]any) (map[string]any, error) {
	ctx, span := startSpan(ctx, s.opts, "decrypt", attribute.String(attrSecrets, "refs"), attribute.String(attrFile, where))
	out, err := s.resolver.ResolveValues(ctx, where, values)
	endSpan(span, s.red, err)
	return out, err
}

func (s *runSecrets) resolveObjects(ctx context.Context, app string, objs []*unstructured.Unstructured) error {
	ctx, span := startSpan(ctx, s.opts, "decrypt", attribute.String(attrSecrets, "refs"), attribute.String(attrApp, app), attribute.Int(attrObjects, len(objs)))
	err := s.resolver.ResolveObjects(ctx, objs)
	endSpan(span, s.red, err)
	return err
}

// objectCount counts the objects and hooks of rendered sets.
func objectCount(set *object.Set) int {
	if set == nil {
		return 0
	}
	return len(set.Objects) + len(set.Hooks)
}
