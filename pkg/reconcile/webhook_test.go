package reconcile

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWebhook(t *testing.T) {
	secret := []byte("s3cret-webhook-key")
	const canary = "CANARY-body-7c2e"
	push := []byte(`{"ref":"refs/heads/main","note":"` + canary + `"}`)
	other := []byte(`{"ref":"refs/heads/feature","note":"` + canary + `"}`)
	hubSig := func(key, body []byte) string {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	giteaSig := func(key, body []byte) string { return strings.TrimPrefix(hubSig(key, body), "sha256=") }

	type step struct {
		name    string
		body    []byte
		headers map[string]string
		code    int
		trigger bool
	}
	steps := []step{
		{"unsigned", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "1"}, 401, false},
		{"github bad signature", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "1", "X-Hub-Signature-256": hubSig([]byte("wrong"), push)}, 401, false},
		{"github malformed signature", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "1", "X-Hub-Signature-256": "sha1=abc"}, 401, false},
		{"github no delivery id", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": hubSig(secret, push)}, 401, false},
		{"github push", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "1", "X-Hub-Signature-256": hubSig(secret, push)}, 202, true},
		{"github replayed delivery id", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "1", "X-Hub-Signature-256": hubSig(secret, push)}, 401, false},
		{"github replayed body, new id", push, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "2", "X-Hub-Signature-256": hubSig(secret, push)}, 401, false},
		{"github push of another branch", other, map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "3", "X-Hub-Signature-256": hubSig(secret, other)}, 200, false},
		{"github ping", []byte(`{"zen":"x"}`), map[string]string{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "4", "X-Hub-Signature-256": hubSig(secret, []byte(`{"zen":"x"}`))}, 200, false},
		{"gitlab bad token", []byte(`{"ref":"refs/heads/main","n":1}`), map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, 401, false},
		{"gitlab push", []byte(`{"ref":"refs/heads/main","n":1}`), map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret), "X-Gitlab-Event-UUID": "u1"}, 202, true},
		{"gitlab replayed uuid", []byte(`{"ref":"refs/heads/main","n":2}`), map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": string(secret), "X-Gitlab-Event-UUID": "u1"}, 401, false},
		{"gitea bad signature", []byte(`{"ref":"refs/heads/main","n":3}`), map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "g1", "X-Gitea-Signature": giteaSig([]byte("x"), []byte(`{"ref":"refs/heads/main","n":3}`))}, 401, false},
		{"gitea push", []byte(`{"ref":"refs/heads/main","n":3}`), map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "g1", "X-Gitea-Signature": giteaSig(secret, []byte(`{"ref":"refs/heads/main","n":3}`))}, 202, true},
	}
	var logs bytes.Buffer
	triggers := 0
	h := newWebhook(secret, "main", func() { triggers++ }, slog.New(slog.NewJSONHandler(&logs, nil)))
	for _, s := range steps {
		before := triggers
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(s.body))
		for k, v := range s.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := struct {
			Code    int
			Trigger bool
		}{rec.Code, triggers > before}
		want := struct {
			Code    int
			Trigger bool
		}{s.code, s.trigger}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("logs contain the request body:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "webhook rejected") {
		t.Errorf("rejections not logged:\n%s", logs.String())
	}
}

func TestWebhookRemembersBoundedDeliveries(t *testing.T) {
	h := newWebhook([]byte("k"), "", func() {}, slog.New(slog.DiscardHandler))
	for i := range seenCapacity + 10 {
		if !h.remember("github/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)) {
			t.Fatalf("delivery %d taken for a replay", i)
		}
	}
	if len(h.seen) > seenCapacity {
		t.Errorf("remembers %d deliveries, want at most %d", len(h.seen), seenCapacity)
	}
	if !h.remember("github/a") {
		t.Errorf("the oldest delivery is still remembered after %d newer ones", seenCapacity)
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, backoff(n, 10*time.Second, 5*time.Minute))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	for range 100 {
		if d := jittered(time.Minute, 0.1); d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("jittered(1m, 0.1) = %s, want within ±10%%", d)
		}
	}
}

// TestWebhookFollows: a push wakes the reconciler when its ref is the one
// followed, however the ref is written in the options (git's expansion
// rules), and not for another branch or tag.
func TestWebhookFollows(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		followed, pushed string
		want             bool
	}{
		{"", "refs/heads/anything", true},
		{"main", "refs/heads/main", true},
		{"heads/main", "refs/heads/main", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"v1.2.0", "refs/tags/v1.2.0", true},
		{"tags/v1.2.0", "refs/tags/v1.2.0", true},
		{"main", "refs/heads/main-2", false},
		{"main", "refs/heads/feature/main", false},
		{"heads/main", "refs/heads/other", false},
		{"v1.2.0", "refs/heads/v1.2.1", false},
	} {
		h := &webhook{ref: tt.followed}
		if got := h.follows(tt.pushed); got != tt.want {
			t.Errorf("following %q, a push of %q wakes: %v, want %v", tt.followed, tt.pushed, got, tt.want)
		}
	}
}
