package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/secrets"
)

const traceCanary = "CANARY-trace-unit-6b2f"

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// noSecret fails when the canary is anywhere in a span: name, attributes,
// events, status.
func noSecret(t *testing.T, spans []sdktrace.ReadOnlySpan, canary string) {
	t.Helper()
	for _, s := range spans {
		texts := []string{s.Name(), s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, kv.Value.Emit())
		}
		for _, e := range s.Events() {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.Emit())
			}
		}
		for _, x := range texts {
			if strings.Contains(x, canary) {
				t.Errorf("span %s leaks the secret: %q", s.Name(), x)
			}
		}
	}
}

// TestTraceSteps: the progress reports of an apply become one span per
// step under the app's span, the user's Progress still sees every report,
// and the failure of the last step is recorded, redacted.
func TestTraceSteps(t *testing.T) {
	rec, tp := newRecorder(t)
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	red.Add(traceCanary)
	opts := &Options{TracerProvider: tp, Redactor: red}
	ctx, app := startApp(context.Background(), opts, &AppResult{Name: "web", Namespace: "shop"})

	var seen []apply.Step
	steps := newStepSpans(opts)
	steps.ctx = ctx
	progress := steps.progress(func(app string, s apply.Step, n int) {
		if app != "web" {
			t.Errorf("progress for app %q", app)
		}
		seen = append(seen, s)
	})
	all := []apply.Step{apply.StepConfig, apply.StepScaleDown, apply.StepPreApplyHooks, apply.StepWorkloads, apply.StepWait, apply.StepPostApplyHooks, apply.StepPrune}
	steps.begin()
	for i, s := range all {
		progress("web", s, i+1)
	}
	steps.end(errors.New("prune: secret " + traceCanary + " refused"))
	app.End()

	if len(seen) != len(all) {
		t.Errorf("user progress saw %v, want %v", seen, all)
	}
	ended := rec.Ended()
	type want struct{ name, step, phase string }
	wants := []want{
		{"diff", "", ""}, {"apply", "config", ""}, {"scale-down", "scale-down", ""}, {"hooks", "pre-apply-hooks", "pre-apply"},
		{"apply", "workloads", ""}, {"wait", "wait", ""}, {"hooks", "post-apply-hooks", "post-apply"}, {"prune", "prune", ""}, {"app", "", ""},
	}
	if len(ended) != len(wants) {
		t.Fatalf("%d spans ended, want %d", len(ended), len(wants))
	}
	appID := ended[len(ended)-1].SpanContext().SpanID()
	for i, w := range wants {
		s := ended[i]
		if s.Name() != w.name || attrOf(s, attrStep) != w.step || attrOf(s, attrPhase) != w.phase {
			t.Errorf("span %d = %s step=%q phase=%q, want %s step=%q phase=%q", i, s.Name(), attrOf(s, attrStep), attrOf(s, attrPhase), w.name, w.step, w.phase)
		}
		if i < len(wants)-1 && s.Parent().SpanID() != appID {
			t.Errorf("span %s is not a child of the app's span", s.Name())
		}
		if i > 0 && i < len(wants)-1 && attrOf(s, attrObjects) != strconv.Itoa(i) {
			t.Errorf("span %s objects = %s, want %d", s.Name(), attrOf(s, attrObjects), i)
		}
		wantErr := w.name == "prune"
		if got := s.Status().Code == codes.Error; got != wantErr {
			t.Errorf("span %s: status %v, want error %v", s.Name(), s.Status(), wantErr)
		}
		if i > 0 && ended[i].StartTime().Before(ended[i-1].EndTime()) && i < len(wants)-1 {
			t.Errorf("span %s starts before %s ends", s.Name(), ended[i-1].Name())
		}
	}
	prune := ended[7]
	if prune.Status().Description != "prune: secret *** refused" {
		t.Errorf("prune status = %q, want the redacted error", prune.Status().Description)
	}
	if len(prune.Events()) != 1 || prune.Events()[0].Name != "exception" {
		t.Errorf("prune events = %v, want one exception", prune.Events())
	}
	noSecret(t, ended, traceCanary)
}

// TestTraceRender renders a Helm chart with a SOPS-encrypted values file:
// one trace with the run, fetch, decrypt and render spans, the file's
// decryption under its app's render; then a chart whose error message
// holds the secret: the spans carry it masked.
func TestTraceRender(t *testing.T) {
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	enc, err := sopstest.Encrypt("secrets.enc.yaml", []byte("password: "+traceCanary+"\n"), recipient)
	if err != nil {
		t.Fatal(err)
	}
	write("secrets.enc.yaml", string(enc))
	write("age.key", id+"\n")
	write("deliver.yaml", `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
  - name: web
    namespace: shop
    helm: {chart: chart, secretValuesFiles: [secrets.enc.yaml]}
  - name: plain
    namespace: shop
    manifests: {path: plain}
`)
	write("plain/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")
	write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
	write("chart/templates/secret.yaml", `apiVersion: v1
kind: Secret
metadata: {name: web}
stringData:
  password: {{ .Values.password | quote }}
{{- if .Values.broken }}
{{ fail (printf "password %s rejected" .Values.password) }}
{{- end }}
`)
	render := func(t *testing.T) (*tracetest.SpanRecorder, error) {
		rec, tp := newRecorder(t)
		_, err := Render(context.Background(), Options{
			Path: dir, TracerProvider: tp,
			Secrets: SecretsOptions{AgeKeyFiles: []string{filepath.Join(dir, "age.key")}, Getenv: func(string) string { return "" }},
		})
		return rec, err
	}

	rec, err := render(t)
	if err != nil {
		t.Fatal(err)
	}
	ended := rec.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	for _, s := range ended {
		byName[s.Name()] = append(byName[s.Name()], s)
		if s.SpanContext().TraceID() != ended[0].SpanContext().TraceID() {
			t.Errorf("span %s in another trace", s.Name())
		}
		if !s.Parent().IsValid() {
			if root != nil {
				t.Errorf("two root spans: %s and %s", root.Name(), s.Name())
			}
			root = s
		}
	}
	if root == nil || root.Name() != "deliver.render" || attrOf(root, attrAppCount) != "2" || root.Status().Code == codes.Error {
		t.Fatalf("root span = %v", root)
	}
	isChild := func(s, of sdktrace.ReadOnlySpan) bool { return s.Parent().SpanID() == of.SpanContext().SpanID() }
	for _, name := range []string{"fetch", "decrypt"} {
		if len(byName[name]) == 0 || !isChild(byName[name][0], root) {
			t.Errorf("no span %s under the root", name)
		}
	}
	var stage sdktrace.ReadOnlySpan
	apps := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range byName["render"] {
		if isChild(s, root) {
			stage = s
		} else {
			apps[attrOf(s, attrApp)] = s
		}
	}
	if stage == nil || len(apps) != 2 || !isChild(apps["web"], stage) || !isChild(apps["plain"], stage) || attrOf(apps["plain"], attrObjects) != "1" {
		t.Fatalf("render spans: stage %v, apps %v", stage, apps)
	}
	var sopsFile sdktrace.ReadOnlySpan
	for _, s := range byName["decrypt"] {
		if attrOf(s, attrSecrets) == "sops" {
			sopsFile = s
		}
	}
	if sopsFile == nil || !isChild(sopsFile, apps["web"]) || attrOf(sopsFile, attrFile) != "secrets.enc.yaml" {
		t.Errorf("no decrypt span of secrets.enc.yaml under the web app's render: %v", sopsFile)
	}

	// A render whose error holds the secret.
	write("deliver.yaml", strings.Replace(string(must(os.ReadFile(filepath.Join(dir, "deliver.yaml")))), "secretValuesFiles: [secrets.enc.yaml]", "secretValuesFiles: [secrets.enc.yaml], values: {broken: true}", 1))
	rec, err = render(t)
	if err == nil || !strings.Contains(err.Error(), "password *** rejected") {
		t.Fatalf("render error = %v, want the chart's failure, masked", err)
	}
	ended = rec.Ended()
	failed := 0
	for _, s := range ended {
		if s.Status().Code == codes.Error {
			failed++
			if !strings.Contains(s.Status().Description, "password *** rejected") {
				t.Errorf("span %s status = %q", s.Name(), s.Status().Description)
			}
		}
	}
	if failed != 3 { // the web app's render, the render stage, the run
		t.Errorf("%d spans failed, want 3", failed)
	}
	noSecret(t, ended, traceCanary)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
