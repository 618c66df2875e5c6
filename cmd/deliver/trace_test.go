package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/internal/telemetry/otlptest"
	"github.com/deliverhq/deliver/internal/testenv"
)

// The canaries of the trace tests: SOPS-encrypted values that must never
// reach a span. The label is not a valid label value: the API server
// rejects it and echoes it in its error.
const (
	traceCanary      = "CANARY-trace-e2e-4c8a"
	traceLabelCanary = "CANARY trace label 7d3e"
)

// otelEnv is the environment of a deliver process exporting to rcv: the
// test's own, without any OTEL_ variable, plus the endpoint.
func otelEnv(rcv *otlptest.Receiver) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return append(out, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint)
}

// spanTree indexes the spans of one export by ID.
type spanTree struct {
	t     *testing.T
	spans []otlptest.Span
	byID  map[string]otlptest.Span
}

func newSpanTree(t *testing.T, spans []otlptest.Span) *spanTree {
	st := &spanTree{t: t, spans: spans, byID: map[string]otlptest.Span{}}
	for _, s := range spans {
		st.byID[s.ID()] = s
	}
	return st
}

// roots returns the spans without a parent.
func (st *spanTree) roots() []otlptest.Span {
	var out []otlptest.Span
	for _, s := range st.spans {
		if s.ParentID() == "" {
			out = append(out, s)
		}
	}
	return out
}

// children returns the spans named name directly under parent whose
// attributes include attrs (key, value pairs).
func (st *spanTree) children(parent otlptest.Span, name string, attrs ...string) []otlptest.Span {
	var out []otlptest.Span
next:
	for _, s := range st.spans {
		if s.ParentID() != parent.ID() || s.Name != name {
			continue
		}
		for i := 0; i+1 < len(attrs); i += 2 {
			if v, _ := s.Attr(attrs[i]); v != attrs[i+1] {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// child is children for exactly one span; it fails the test otherwise.
func (st *spanTree) child(parent otlptest.Span, name string, attrs ...string) otlptest.Span {
	st.t.Helper()
	c := st.children(parent, name, attrs...)
	if len(c) != 1 {
		st.t.Fatalf("%d spans %s %v under %s, want 1; spans:\n%s", len(c), name, attrs, parent.Name, st)
	}
	return c[0]
}

func (st *spanTree) String() string {
	var b strings.Builder
	for _, s := range st.spans {
		parent := st.byID[s.ParentID()].GetName()
		b.WriteString(s.Name + " <- " + parent + " status=" + s.GetStatus().GetCode().String() + " " + s.GetStatus().GetMessage() + "\n")
	}
	return b.String()
}

// noLeak fails when a canary, as written or base64-encoded, is in data.
func noLeak(t *testing.T, what string, data []byte) {
	t.Helper()
	for _, c := range []string{traceCanary, traceLabelCanary} {
		for _, form := range []string{c, base64.StdEncoding.EncodeToString([]byte(c)), base64.RawStdEncoding.EncodeToString([]byte(c))} {
			if bytes.Contains(data, []byte(form)) {
				t.Errorf("%s leaks %q", what, form)
			}
		}
	}
}

// TestTraceApply runs deliver apply as CI does, with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-process OTLP/HTTP receiver:
// each run exports one trace, a root span with a span per stage, app and
// step; a failing apply records the failure, and no secret value is in any
// byte exported, although the API server's error holds one.
func TestTraceApply(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	rcv := otlptest.NewHTTP(t)
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	keyFile := filepath.Join(root, "age.key")
	if err := os.WriteFile(keyFile, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enc, err := sopstest.Encrypt("secrets.enc.yaml", []byte("password: "+traceCanary+"\nlabel: "+traceLabelCanary+"\n"), recipient)
	if err != nil {
		t.Fatal(err)
	}
	repo := gitserver.NewRepo(t, filepath.Join(root, "app"))
	config := func(values string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: web, namespace: " + ns + ", helm: {chart: chart, secretValuesFiles: [secrets.enc.yaml], values: {" + values + "}}}\n"
	}
	repo.WriteFile("deliver.yaml", config(""))
	repo.WriteFile("secrets.enc.yaml", string(enc))
	repo.WriteFile("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
	repo.WriteFile("chart/templates/secret.yaml", `apiVersion: v1
kind: Secret
metadata: {name: web-credentials}
stringData:
  password: {{ .Values.password | quote }}
{{- if .Values.withLabel }}
---
apiVersion: v1
kind: Secret
metadata:
  name: web-labelled
  labels: {tier: {{ .Values.label | quote }}}
stringData:
  password: {{ .Values.password | quote }}
{{- end }}
{{- if .Values.fail }}
{{ fail (printf "password %s rejected" .Values.password) }}
{{- end }}
`)
	repo.WriteFile("chart/templates/migrate.yaml", `apiVersion: batch/v1
kind: Job
metadata:
  name: web-migrate
  annotations: {deliver.dev/hook: pre-apply}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.example/trace/migrate:1}]
`)
	repo.WriteFile("chart/templates/deployment.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/trace/web:1}]
`)
	first := repo.CommitAll("first")

	var outputs bytes.Buffer
	deliver := func(args ...string) (string, int) {
		t.Helper()
		args = append(args, "--path", repo.Dir, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv,
			"--age-key-file", keyFile, "--timeout", "1m")
		cmd := exec.Command(deliverBin, args...)
		cmd.Env = otelEnv(rcv)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		code, err := testenv.ExitCode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		outputs.Write(out.Bytes())
		return out.String(), code
	}

	// A successful apply: one trace, every stage.
	out, code := deliver("apply")
	if code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{}); err != nil {
		t.Fatalf("apply did not create the Deployment: %v", err)
	}
	st := newSpanTree(t, rcv.Spans())
	roots := st.roots()
	if len(roots) != 1 || roots[0].Name != "deliver.apply" {
		t.Fatalf("root spans %v, want one deliver.apply; spans:\n%s", roots, st)
	}
	run := roots[0]
	for _, s := range st.spans {
		if s.TraceID() != run.TraceID() {
			t.Errorf("span %s is in trace %s, not the run's %s", s.Name, s.TraceID(), run.TraceID())
		}
		if _, ok := st.byID[s.ParentID()]; !ok && s.ParentID() != "" {
			t.Errorf("span %s: parent %s not exported", s.Name, s.ParentID())
		}
		if s.GetStatus().GetCode() != 0 && s.GetStatus().GetMessage() != "" {
			t.Errorf("span %s failed: %s", s.Name, s.GetStatus().GetMessage())
		}
	}
	for k, want := range map[string]string{"deliver.revision": first, "deliver.dirty": "false", "deliver.apps": "1"} {
		if got, _ := run.Attr(k); got != want {
			t.Errorf("run attribute %s = %q, want %q", k, got, want)
		}
	}
	if got := run.Resource["service.name"]; got != "deliver" {
		t.Errorf("service.name = %q, want deliver", got)
	}
	st.child(run, "fetch")
	st.child(run, "decrypt")
	render := st.child(run, "render")
	renderWeb := st.child(render, "render", "deliver.app", "web")
	st.child(renderWeb, "decrypt", "deliver.secrets", "sops", "deliver.file", "secrets.enc.yaml")
	app := st.child(run, "app", "deliver.app", "web", "deliver.namespace", ns)
	diff := st.child(app, "diff")
	config1 := st.child(app, "apply", "deliver.step", "config")
	hooks := st.child(app, "hooks", "deliver.hook.phase", "pre-apply", "deliver.objects", "1")
	workloads := st.child(app, "apply", "deliver.step", "workloads")
	wait := st.child(app, "wait")
	// One after the other, in Execute's order.
	order := []otlptest.Span{diff, config1, hooks, workloads, wait}
	for i := 1; i < len(order); i++ {
		if order[i].StartTimeUnixNano < order[i-1].EndTimeUnixNano {
			t.Errorf("span %s starts before %s ends", order[i].Name, order[i-1].Name)
		}
	}
	if report, _ := app.Attr("deliver.report"); !strings.Contains(report, "hooks ran") {
		t.Errorf("app report attribute = %q", report)
	}

	// A failing apply: the API server rejects the label holding a secret
	// value, and says so. --no-validate leaves the rejection to the apply
	// step itself.
	rcv.Reset()
	repo.WriteFile("deliver.yaml", config("withLabel: true"))
	repo.CommitAll("a label the server rejects")
	out, code = deliver("apply", "--no-validate")
	if code != 1 || !strings.Contains(out, "metadata.labels") {
		t.Fatalf("failing apply: exit %d, want 1 and the label's rejection:\n%s", code, out)
	}
	st = newSpanTree(t, rcv.Spans())
	roots = st.roots()
	if len(roots) != 1 || roots[0].Name != "deliver.apply" || roots[0].TraceID() == run.TraceID() {
		t.Fatalf("root spans %v, want one deliver.apply in a new trace; spans:\n%s", roots, st)
	}
	run = roots[0]
	app = st.child(run, "app", "deliver.app", "web")
	failed := st.child(app, "apply", "deliver.step", "config")
	for _, s := range []otlptest.Span{run, app, failed} {
		msg := s.GetStatus().GetMessage()
		if s.GetStatus().GetCode().String() != "STATUS_CODE_ERROR" || !strings.Contains(msg, "metadata.labels") || !strings.Contains(msg, "***") {
			t.Errorf("span %s: status %v %q, want an error with the label masked", s.Name, s.GetStatus().GetCode(), msg)
		}
	}
	if len(failed.Events) != 1 || failed.Events[0].Name != "exception" {
		t.Errorf("failed step events = %v, want one exception", failed.Events)
	}
	if len(st.children(app, "apply", "deliver.step", "workloads")) != 0 || len(st.children(app, "wait")) != 0 {
		t.Errorf("steps after the failed one traced:\n%s", st)
	}

	// A chart that fails with the secret in its message: the render's
	// spans carry it masked.
	rcv.Reset()
	repo.WriteFile("deliver.yaml", config("fail: true"))
	repo.CommitAll("a chart failing with the secret in its message")
	out, code = deliver("apply")
	if code != 1 || !strings.Contains(out, "password *** rejected") {
		t.Fatalf("failing render: exit %d, want 1 and the chart's failure:\n%s", code, out)
	}
	st = newSpanTree(t, rcv.Spans())
	roots = st.roots()
	if len(roots) != 1 {
		t.Fatalf("root spans %v, want one; spans:\n%s", roots, st)
	}
	render = st.child(roots[0], "render")
	for _, s := range []otlptest.Span{roots[0], render, st.child(render, "render", "deliver.app", "web")} {
		if msg := s.GetStatus().GetMessage(); !strings.Contains(msg, "password *** rejected") {
			t.Errorf("span %s: status %q, want the chart's failure masked", s.Name, msg)
		}
	}
	if len(st.children(roots[0], "app")) != 0 {
		t.Errorf("an app was delivered after a failed render:\n%s", st)
	}

	noLeak(t, "deliver's output", outputs.Bytes())
	noLeak(t, "the exported spans", rcv.Raw())
}

// TestTraceReconcile: each run of deliver reconcile is a trace of its own,
// exported (at the latest) when the reconciler stops.
func TestTraceReconcile(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	rcv := otlptest.NewHTTP(t)
	repo, url, root := webRepo(t, ns)
	first := repo.Head()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startReconcile(t, "deliver reconcile", otelEnv(rcv), "--repo", url, "--ref", "main", "--interval", "300ms",
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "--inventory-namespace", inv,
		"--cache-dir", filepath.Join(root, "cache"))
	eventually(t, 30*time.Second, "first apply", func() bool { return color(ns) == "blue" })
	setColor(repo, "green")
	second := repo.CommitAll("green")
	eventually(t, 30*time.Second, "second apply", func() bool { return color(ns) == "green" })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}

	st := newSpanTree(t, rcv.Spans())
	runs := map[string]otlptest.Span{} // by revision
	traces := map[string]bool{}
	for _, r := range st.roots() {
		if r.Name != "deliver.apply" {
			continue
		}
		if traces[r.TraceID()] {
			t.Errorf("two runs in trace %s", r.TraceID())
		}
		traces[r.TraceID()] = true
		rev, _ := r.Attr("deliver.revision")
		runs[rev] = r
	}
	for _, rev := range []string{first, second} {
		r, ok := runs[rev]
		if !ok {
			t.Errorf("no trace of the run of %.12s; spans:\n%s", rev, st)
			continue
		}
		// The reconciler fetches once per commit, in its loop, and every
		// run of the commit renders from that one snapshot: no fetch in
		// the run's trace.
		if f := st.children(r, "fetch"); len(f) != 0 {
			t.Errorf("the run of %.12s fetched again (%d fetch spans); spans:\n%s", rev, len(f), st)
		}
		st.child(r, "render")
		app := st.child(r, "app", "deliver.app", "web")
		st.child(app, "diff")
		st.child(app, "apply", "deliver.step", "config")
	}
}

// TestTraceCollectorNotAnswering: a collector that accepts connections but
// never answers delays the exit by the flush timeout (5 s) at most, and is
// a warning: the run itself succeeds and prints what it printed.
func TestTraceCollectorNotAnswering(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{"m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n"})
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			environ = append(environ, kv)
		}
	}
	cmd := exec.Command(deliverBin, "render", "--path", dir, "-f", "m")
	cmd.Env = append(environ, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	code, err := testenv.ExitCode(cmd)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("render with a collector not answering: exit %d in %s", code, took.Round(time.Millisecond))
	if code != 0 || !strings.Contains(stdout.String(), "name: settings") {
		t.Errorf("exit %d, want 0 and the rendered ConfigMap:\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "warning: tracing") {
		t.Errorf("stderr lacks the tracing warning:\n%s", stderr.String())
	}
	// The flush timeout and the start and exit of the process.
	if took > 9*time.Second {
		t.Errorf("render took %s with a collector not answering, want the 5s flush timeout at most (and the run)", took.Round(time.Millisecond))
	}
}
