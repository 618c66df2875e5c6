package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/notify"
	"github.com/deliverhq/deliver/pkg/secrets"
)

const rev = "0123456789abcdef0123456789abcdef01234567"

func newEndpoint(t *testing.T, codes ...int) *testenv.Recorder {
	return testenv.NewRecorder(t, codes...)
}

// secretMap reads credentials from a map, as the reconciler reads them
// from a Secret.
func secretMap(m map[string]string) notify.SecretReader {
	return func(_ context.Context, name, key string) (string, error) {
		v, ok := m[name+"/"+key]
		if !ok {
			return "", fmt.Errorf("secret %s: no key %s", name, key)
		}
		return v, nil
	}
}

// counter returns the value of the counter name{type=typ} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, typ string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// closeNotifier drains n, failing the test if that takes over 10 s.
func closeNotifier(t *testing.T, n *notify.Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Close(ctx)
	if ctx.Err() != nil {
		t.Error("Close: the queue did not drain in 10 s")
	}
}

var (
	success = notify.Event{App: "web", Environment: "prod", Revision: rev, Result: notify.Succeeded, Duration: 1500 * time.Millisecond,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RepoURL: "https://user:pw@github.example/acme/deploy.git"}
	failure = notify.Event{App: "web", Environment: "prod", Revision: rev, Result: notify.Failed, Duration: 2 * time.Second,
		Object: "ConfigMap/web/settings", Reason: "the server rejected it: data too long",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RepoURL: "git@gitlab.example:group/sub/deploy.git"}
	pending = notify.Event{App: "web", Revision: rev, Result: notify.Pending, RepoURL: "https://github.example/acme/deploy"}
)

// TestProviders: each provider's request against a local server: path,
// headers, and the JSON body.
func TestProviders(t *testing.T) {
	t.Parallel()
	creds := map[string]string{"gh/token": "ghp-token-1234", "lab/pat": "glpat-5678", "hook/token": "hmac-key-abcd"}
	tests := []struct {
		name     string
		p        config.Notification
		e        notify.Event
		path     string
		headers  map[string]string
		body     any // decoded into the same type and compared
		slackURL bool
	}{
		{
			name:    "github success",
			p:       config.Notification{Type: config.GitHub, SecretRef: &config.SecretKeyRef{Name: "gh"}},
			e:       success,
			path:    "/repos/acme/deploy/statuses/" + rev,
			headers: map[string]string{"Authorization": "Bearer ghp-token-1234", "Accept": "application/vnd.github+json", "Content-Type": "application/json"},
			body:    map[string]any{"state": "success", "context": "deliver/prod/web", "description": "web delivered at 0123456789ab in 1.5s"},
		},
		{
			name: "github failure names the object",
			p:    config.Notification{Type: config.GitHub, Repository: "acme/other", SecretRef: &config.SecretKeyRef{Name: "gh"}},
			e:    failure,
			path: "/repos/acme/other/statuses/" + rev,
			body: map[string]any{"state": "failure", "context": "deliver/prod/web", "description": "web failed at 0123456789ab: ConfigMap/web/settings: the server rejected it: data too long"},
		},
		{
			name: "github pending without environment",
			p:    config.Notification{Type: config.GitHub, SecretRef: &config.SecretKeyRef{Name: "gh"}},
			e:    pending,
			path: "/repos/acme/deploy/statuses/" + rev,
			body: map[string]any{"state": "pending", "context": "deliver/web", "description": "delivering web at 0123456789ab"},
		},
		{
			name:    "gitlab failure, project from an scp-like URL",
			p:       config.Notification{Type: config.GitLab, SecretRef: &config.SecretKeyRef{Name: "lab", Key: "pat"}},
			e:       failure,
			path:    "/api/v4/projects/group%2Fsub%2Fdeploy/statuses/" + rev,
			headers: map[string]string{"Private-Token": "glpat-5678"},
			body:    map[string]any{"state": "failed", "name": "deliver/prod/web", "description": "web failed at 0123456789ab: ConfigMap/web/settings: the server rejected it: data too long"},
		},
		{
			name: "gitlab pending is running",
			p:    config.Notification{Type: config.GitLab, Repository: "42", SecretRef: &config.SecretKeyRef{Name: "lab", Key: "pat"}},
			e:    pending,
			path: "/api/v4/projects/42/statuses/" + rev,
			body: map[string]any{"state": "running", "name": "deliver/web", "description": "delivering web at 0123456789ab"},
		},
		{
			name: "webhook failure, signed",
			p:    config.Notification{Type: config.Webhook, SecretRef: &config.SecretKeyRef{Name: "hook"}},
			e:    failure,
			path: "/hook",
			body: map[string]any{"app": "web", "environment": "prod", "revision": rev, "result": "failed", "duration": "2s", "durationSeconds": 2.0,
				"object": "ConfigMap/web/settings", "reason": "the server rejected it: data too long",
				"summary": "web failed at 0123456789ab: ConfigMap/web/settings: the server rejected it: data too long", "time": "2026-01-02T03:04:05Z"},
		},
		{
			name: "webhook success, unsigned",
			p:    config.Notification{Type: config.Webhook},
			e:    success,
			path: "/hook",
			body: map[string]any{"app": "web", "environment": "prod", "revision": rev, "result": "succeeded", "duration": "1.5s", "durationSeconds": 1.5,
				"summary": "web delivered at 0123456789ab in 1.5s", "time": "2026-01-02T03:04:05Z"},
		},
		{
			name:     "slack failure",
			p:        config.Notification{Type: config.Slack, SecretRef: &config.SecretKeyRef{Name: "slack"}},
			e:        failure,
			path:     "/services/T0/B0/xyz",
			slackURL: true,
			body: map[string]any{"text": ":x: web failed to prod at 0123456789ab after 2s", "blocks": []any{
				map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": ":x: web failed to prod at 0123456789ab after 2s"}},
				map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*Object:* `ConfigMap/web/settings`\n*Reason:* the server rejected it: data too long"}},
			}},
		},
		{
			name:     "slack success",
			p:        config.Notification{Type: config.Slack, SecretRef: &config.SecretKeyRef{Name: "slack"}},
			e:        success,
			path:     "/services/T0/B0/xyz",
			slackURL: true,
			body: map[string]any{"text": ":white_check_mark: web delivered to prod at 0123456789ab in 1.5s", "blocks": []any{
				map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": ":white_check_mark: web delivered to prod at 0123456789ab in 1.5s"}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, http.StatusCreated)
			p := tt.p
			p.Name = "p"
			c := map[string]string{}
			for k, v := range creds {
				c[k] = v
			}
			switch {
			case tt.slackURL:
				c["slack/address"] = ep.URL + "/services/T0/B0/xyz"
			case p.Type == config.Webhook:
				p.Address = ep.URL + "/hook"
			default:
				p.Address = ep.URL
			}
			reg := prometheus.NewRegistry()
			n := notify.New(notify.Options{Secrets: secretMap(c), Registerer: reg})
			n.Notify([]config.Notification{p}, tt.e)
			closeNotifier(t, n)
			reqs := ep.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Method != http.MethodPost || req.Path != tt.path {
				t.Errorf("request %s %s, want POST %s", req.Method, req.Path, tt.path)
			}
			for k, v := range tt.headers {
				if got := req.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if p.Type == config.Webhook {
				sig := req.Header.Get(notify.SignatureHeader)
				if p.SecretRef == nil && sig != "" {
					t.Errorf("unsigned webhook has %s: %s", notify.SignatureHeader, sig)
				}
				if p.SecretRef != nil {
					mac := hmac.New(sha256.New, []byte(creds["hook/token"]))
					mac.Write(req.Body)
					if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); sig != want {
						t.Errorf("%s = %q, want %q", notify.SignatureHeader, sig, want)
					}
				}
			}
			var got any
			if err := json.Unmarshal(req.Body, &got); err != nil {
				t.Fatalf("body %s: %v", req.Body, err)
			}
			if diff := cmp.Diff(tt.body, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if s := counter(t, reg, "deliver_notify_sent_total", string(p.Type)); s != 1 {
				t.Errorf("sent = %v, want 1", s)
			}
		})
	}
}

// TestFilters: a provider is told only of the apps, environments and
// events it lists; a pending status goes only to commit statuses.
func TestFilters(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	hook := func(name string, apps, envs []string, events ...config.NotificationEvent) config.Notification {
		return config.Notification{Name: name, Type: config.Webhook, Address: ep.URL + "/" + name, Apps: apps, Environments: envs, Events: events}
	}
	providers := []config.Notification{
		hook("all", nil, nil),
		hook("db-only", []string{"db"}, nil),
		hook("failures", nil, nil, config.EventFailure),
		hook("staging", nil, []string{"staging"}),
	}
	n := notify.New(notify.Options{})
	n.Notify(providers, success) // web, prod
	n.Notify(providers, failure)
	n.Notify(providers, pending)
	closeNotifier(t, n)
	var got []string
	for _, r := range ep.Requests() {
		var p notify.Payload
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Path+" "+string(p.Result))
	}
	want := []string{"/all failed", "/all succeeded", "/failures failed"}
	if diff := cmp.Diff(want, slices.Sorted(slices.Values(got))); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestRetries: 5xx, 429 and network errors are retried with backoff up to
// MaxAttempts; another 4xx is not retried.
func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		codes                []int
		wantRequests         int
		wantSent, wantFailed float64
	}{
		{"500 then success", []int{500, 201}, 2, 1, 0},
		{"429 then success", []int{429, 503, 200}, 3, 1, 0},
		{"400 is not retried", []int{400, 201}, 1, 0, 1},
		{"404 is not retried", []int{404}, 1, 0, 1},
		{"500 until the last attempt", []int{500}, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, tt.codes...)
			reg := prometheus.NewRegistry()
			n := notify.New(notify.Options{Registerer: reg, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond, MaxAttempts: 3})
			n.Notify([]config.Notification{{Name: "hook", Type: config.Webhook, Address: ep.URL}}, failure)
			closeNotifier(t, n)
			if got := len(ep.Requests()); got != tt.wantRequests {
				t.Errorf("%d requests, want %d", got, tt.wantRequests)
			}
			if s, f := counter(t, reg, "deliver_notify_sent_total", "webhook"), counter(t, reg, "deliver_notify_failed_total", "webhook"); s != tt.wantSent || f != tt.wantFailed {
				t.Errorf("sent %v, failed %v; want %v, %v", s, f, tt.wantSent, tt.wantFailed)
			}
		})
	}
	t.Run("network error", func(t *testing.T) {
		t.Parallel()
		ep := newEndpoint(t)
		addr := ep.URL
		ep.Close() // nothing listens any more: connection refused
		reg := prometheus.NewRegistry()
		n := notify.New(notify.Options{Registerer: reg, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond, MaxAttempts: 2})
		n.Notify([]config.Notification{{Name: "hook", Type: config.Webhook, Address: addr}}, failure)
		closeNotifier(t, n)
		if f := counter(t, reg, "deliver_notify_failed_total", "webhook"); f != 1 {
			t.Errorf("failed = %v, want 1", f)
		}
	})
}

// TestNeverBlocks: with an endpoint that never answers, Notify still
// returns at once, the messages beyond the queue's size are dropped and
// counted, each attempt ends at its timeout, and Close returns when its
// context ends.
func TestNeverBlocks(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t)
	ep.Hang = true
	reg := prometheus.NewRegistry()
	n := notify.New(notify.Options{Registerer: reg, QueueSize: 2, Workers: 1, Timeout: time.Hour})
	p := []config.Notification{{Name: "hook", Type: config.Webhook, Address: ep.URL}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			n.Notify(p, failure)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a hanging endpoint")
	}
	<-ep.Got // the worker is stuck on the first message
	if d := counter(t, reg, "deliver_notify_dropped_total", "webhook"); d != 3 {
		t.Errorf("dropped = %v, want 3 (queue of 2)", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closed := make(chan struct{})
	go func() { n.Close(ctx); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after its context ended")
	}
	// The message under way is cancelled (failed), the one queued behind
	// it dropped unsent.
	if d, f := counter(t, reg, "deliver_notify_dropped_total", "webhook"), counter(t, reg, "deliver_notify_failed_total", "webhook"); d != 4 || f != 1 {
		t.Errorf("after close: dropped %v, failed %v; want 4, 1", d, f)
	}

	t.Run("attempt timeout", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := notify.New(notify.Options{Registerer: reg, Timeout: 50 * time.Millisecond, RetryBase: time.Millisecond, MaxAttempts: 2})
		n.Notify(p, failure)
		closeNotifier(t, n)
		if f := counter(t, reg, "deliver_notify_failed_total", "webhook"); f != 1 {
			t.Errorf("failed = %v, want 1 (two attempts that timed out)", f)
		}
	})

	t.Run("waiting for a retry at close", func(t *testing.T) {
		ep := newEndpoint(t, http.StatusServiceUnavailable)
		reg := prometheus.NewRegistry()
		n := notify.New(notify.Options{Registerer: reg, RetryBase: time.Hour})
		n.Notify([]config.Notification{{Name: "hook", Type: config.Webhook, Address: ep.URL}}, failure)
		<-ep.Got // the first attempt; the retry is an hour away
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		n.Close(ctx)
		if d := counter(t, reg, "deliver_notify_dropped_total", "webhook"); d != 1 {
			t.Errorf("dropped = %v, want 1", d)
		}
	})
}

// TestDescriptionLimit: a long reason is cut to GitHub's 140 characters,
// marked with an ellipsis; the webhook keeps it whole.
func TestDescriptionLimit(t *testing.T) {
	t.Parallel()
	gh, hook := newEndpoint(t, http.StatusCreated), newEndpoint(t)
	n := notify.New(notify.Options{Secrets: secretMap(map[string]string{"gh/token": "t0k3n-abc"})})
	e := failure
	e.Reason = strings.Repeat("é", 300)
	n.Notify([]config.Notification{
		{Name: "gh", Type: config.GitHub, Address: gh.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "gh"}},
		{Name: "hook", Type: config.Webhook, Address: hook.URL},
	}, e)
	closeNotifier(t, n)
	var s struct{ Description string }
	var p notify.Payload
	if len(gh.Requests()) != 1 || len(hook.Requests()) != 1 {
		t.Fatalf("requests: %d, %d; want 1 each", len(gh.Requests()), len(hook.Requests()))
	}
	if err := json.Unmarshal(gh.Requests()[0].Body, &s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(hook.Requests()[0].Body, &p); err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(s.Description); n != 140 || !strings.HasSuffix(s.Description, "…") {
		t.Errorf("description of %d characters: %q", n, s.Description)
	}
	if p.Reason != e.Reason {
		t.Errorf("webhook reason cut: %d characters", utf8.RuneCountInString(p.Reason))
	}
}

// TestRedaction: a secret value in the reason is masked in the payload;
// the token, echoed back by the endpoint, shows in no log line; a Slack
// URL, the credential itself, shows in no log line when unreachable.
func TestRedaction(t *testing.T) {
	t.Parallel()
	const leaked, token = "vault-value-0xdeadbeef", "ghp-secret-token-9876"
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	red.Add(leaked)
	ep := newEndpoint(t, http.StatusUnauthorized)
	ep.Body = `{"message":"Bad credentials","echo":"Bearer ` + token + `"}`
	gone := newEndpoint(t)
	slackURL := gone.URL + "/services/T0/B0/" + "slack-path-secret"
	gone.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := notify.New(notify.Options{
		Secrets:  secretMap(map[string]string{"gh/token": token, "slack/address": slackURL}),
		Redactor: red, Log: log, RetryBase: time.Millisecond, MaxAttempts: 2,
	})
	e := failure
	e.Reason = "value " + leaked + " rejected"
	n.Notify([]config.Notification{
		{Name: "gh", Type: config.GitHub, Address: ep.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "gh"}},
		{Name: "chat", Type: config.Slack, SecretRef: &config.SecretKeyRef{Name: "slack"}},
	}, e)
	closeNotifier(t, n)
	reqs := ep.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 (401 is not retried)", len(reqs))
	}
	if bytes.Contains(reqs[0].Body, []byte(leaked)) || !bytes.Contains(reqs[0].Body, []byte("value *** rejected")) {
		t.Errorf("body not redacted: %s", reqs[0].Body)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, s := range []string{token, leaked, "slack-path-secret"} {
		if strings.Contains(out, s) {
			t.Errorf("log shows %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"answer 401", "Bad credentials", "notification chat"} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestStatusOrder: the outcome of a delivery replaces its pending commit
// status when that was not sent yet or failed, so the last status on the
// commit is the outcome, whatever the timing of the retries.
func TestStatusOrder(t *testing.T) {
	t.Parallel()
	for _, codes := range [][]int{{201}, {500, 201}, {500, 500, 201}} {
		t.Run(fmt.Sprint(codes), func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, codes...)
			n := notify.New(notify.Options{Secrets: secretMap(map[string]string{"gh/token": "t0k3n-abc"}), RetryBase: time.Millisecond, Workers: 4})
			p := []config.Notification{{Name: "gh", Type: config.GitHub, Address: ep.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "gh"}}}
			start, done := pending, success
			start.Environment = "prod"
			n.Notify(p, start)
			n.Notify(p, done)
			closeNotifier(t, n)
			reqs := ep.Requests()
			if len(reqs) == 0 {
				t.Fatal("no request")
			}
			var last struct{ State string }
			if err := json.Unmarshal(reqs[len(reqs)-1].Body, &last); err != nil {
				t.Fatal(err)
			}
			if last.State != "success" {
				t.Errorf("last status %q, want success (%d requests)", last.State, len(reqs))
			}
		})
	}
}

// TestTemplates: a provider's template gives the commit status's
// description, the Slack message and the webhook's message field,
// rendered over the event's fields and redacted: a secret value in the
// reason shows as *** and nowhere in any request. A provider without a
// template sends deliver's own text and no message field.
func TestTemplates(t *testing.T) {
	t.Parallel()
	const canary = "canary-tmpl-4e1f0b9a"
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	red.Add(canary)
	gh, lab, chat, hook, plain := newEndpoint(t, http.StatusCreated), newEndpoint(t, http.StatusCreated), newEndpoint(t), newEndpoint(t), newEndpoint(t)
	const tmpl = "{{.Result}}: {{.App}} in {{.Environment}} at {{.ShortRevision}} after {{.Duration}}{{with .Object}} ({{.}}: {{$.Reason}}){{end}}"
	n := notify.New(notify.Options{Redactor: red, Secrets: secretMap(map[string]string{
		"gh/token": "t0k3n-gh", "lab/token": "t0k3n-lab", "chat/address": chat.URL + "/services/T0/B0/x"})})
	e := failure
	e.Reason = "value " + canary + " rejected"
	n.Notify([]config.Notification{
		{Name: "gh", Type: config.GitHub, Address: gh.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "gh"}, Template: tmpl},
		{Name: "lab", Type: config.GitLab, Address: lab.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "lab"}, Template: tmpl},
		{Name: "chat", Type: config.Slack, SecretRef: &config.SecretKeyRef{Name: "chat"}, Template: tmpl},
		{Name: "hook", Type: config.Webhook, Address: hook.URL, Template: tmpl},
		{Name: "plain", Type: config.Webhook, Address: plain.URL},
	}, e)
	closeNotifier(t, n)
	const want = "failed: web in prod at 0123456789ab after 2s (ConfigMap/web/settings: value *** rejected)"
	body := func(rec *testenv.Recorder, v any) {
		t.Helper()
		reqs := rec.Requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1", len(reqs))
		}
		if bytes.Contains(reqs[0].Body, []byte(canary)) {
			t.Errorf("the canary is in the body: %s", reqs[0].Body)
		}
		if err := json.Unmarshal(reqs[0].Body, v); err != nil {
			t.Fatal(err)
		}
	}
	var ghs, labs struct{ Description string }
	body(gh, &ghs)
	body(lab, &labs)
	var sl struct {
		Text   string
		Blocks []struct{ Text struct{ Text string } }
	}
	body(chat, &sl)
	var hp, pp map[string]any
	body(hook, &hp)
	body(plain, &pp)
	got := map[string]any{"github": ghs.Description, "gitlab": labs.Description, "slack": sl.Text, "webhook": hp["message"]}
	for k, v := range got {
		if v != want {
			t.Errorf("%s: text %q, want %q", k, v, want)
		}
	}
	if len(sl.Blocks) != 1 || sl.Blocks[0].Text.Text != want {
		t.Errorf("slack blocks %+v, want one section with the text", sl.Blocks)
	}
	if _, ok := pp["message"]; ok || !strings.HasPrefix(pp["summary"].(string), "web failed at 0123456789ab") {
		t.Errorf("webhook without a template: %v", pp)
	}
}

// TestRotatedTokenUsedAtOnce: the credential is read at each send, so a
// token rotated in its Secret is used by the next notification, without a
// restart.
func TestRotatedTokenUsedAtOnce(t *testing.T) {
	t.Parallel()
	gh := newEndpoint(t, http.StatusCreated, http.StatusCreated)
	var mu sync.Mutex
	token := "ghp-before-rotation"
	n := notify.New(notify.Options{Secrets: func(context.Context, string, string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return token, nil
	}})
	providers := []config.Notification{{Name: "gh", Type: config.GitHub, Address: gh.URL, Repository: "acme/deploy", SecretRef: &config.SecretKeyRef{Name: "gh"}}}
	n.Notify(providers, failure)
	testenv.Eventually(t, 10*time.Second, 10*time.Millisecond, "the first notification", func() bool { return len(gh.Requests()) == 1 })
	mu.Lock()
	token = "ghp-after-rotation"
	mu.Unlock()
	n.Notify(providers, success)
	closeNotifier(t, n)
	reqs := gh.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, want := range []string{"Bearer ghp-before-rotation", "Bearer ghp-after-rotation"} {
		if got := reqs[i].Header.Get("Authorization"); got != want {
			t.Errorf("request %d: Authorization %q, want %q", i, got, want)
		}
	}
}
