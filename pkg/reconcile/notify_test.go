package reconcile_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/notify"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestNotifications: a reconcile pass over two apps, one delivered and
// one the API server rejects, sets each app's GitHub commit status
// (pending, then success or failure naming the object), posts a Slack
// message per outcome and a signed JSON webhook, with the credentials
// read from a real Secret in the reconciler's namespace; the retries of
// the failed app tell nothing more.
func TestNotifications(t *testing.T) {
	ns := env.Namespace(t)
	gh, slack, hook := testenv.NewRecorder(t, http.StatusCreated), testenv.NewRecorder(t, http.StatusOK), testenv.NewRecorder(t, http.StatusOK)
	const token, hmacKey = "ghp-notify-test-token-0001", "webhook-hmac-key-0002"
	notifications := fmt.Sprintf(`notifications:
- {name: gh, type: github, address: %q, repository: acme/deploy, secretRef: {name: deliver-notify}}
- {name: chat, type: slack, secretRef: {name: deliver-notify, key: slack}}
- {name: hook, type: webhook, address: %q, secretRef: {name: deliver-notify, key: hmac}}
`, gh.URL, hook.URL+"/deliver")
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: bad, namespace: $NS, manifests: {path: bad}}") + notifications,
		"web/cm.yaml": configMap("web", map[string]string{"color": "blue"}),
		"bad/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {color: [not, a, string]}\n",
	})
	opts := options(t, repo, env.Config)
	_, err := env.Client().CoreV1().Secrets(opts.Pipeline.Apply.InventoryNamespace).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "deliver-notify"},
		StringData: map[string]string{"token": token, "slack": slack.URL + "/services/T0/B0/secret", "hmac": hmacKey},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, stop := start(t, opts)
	// bad is retried (backoff 0.2 s, then 0.4 s): its failure is told
	// once, not at each retry.
	waitFor(t, 60*time.Second, "web delivered and bad retried twice", func() bool {
		return appStatus(r, "web").Result == "succeeded" && appStatus(r, "bad").Failures >= 3
	})
	stop() // Run returns once the notifications queued are sent
	body := metricsBody(t, r)
	for _, m := range []string{`deliver_notify_sent_total{type="slack"} 2`, `deliver_notify_sent_total{type="webhook"} 2`} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// A pending status still queued when the outcome comes is replaced by
	// it (see notify.Notifier): 2 to 4 GitHub statuses, as the machine's
	// load orders the worker and the run.
	if got := body; !strings.Contains(got, `deliver_notify_sent_total{type="github"} 2`) &&
		!strings.Contains(got, `deliver_notify_sent_total{type="github"} 3`) && !strings.Contains(got, `deliver_notify_sent_total{type="github"} 4`) {
		t.Errorf("/metrics: want 2 to 4 GitHub statuses sent")
	}
	head := repo.Head()
	badObject := "ConfigMap/" + ns + "/bad"

	// GitHub: per app, pending then the outcome, on the delivered commit.
	statuses := map[string][]string{}
	for _, r := range gh.Requests() {
		if want := "/repos/acme/deploy/statuses/" + head; r.Path != want {
			t.Errorf("GitHub path %s, want %s", r.Path, want)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+token {
			t.Errorf("GitHub Authorization %q", got)
		}
		var s struct{ State, Context, Description string }
		if err := json.Unmarshal(r.Body, &s); err != nil {
			t.Fatal(err)
		}
		statuses[s.Context] = append(statuses[s.Context], s.State+": "+s.Description)
	}
	want := map[string][]string{
		"deliver/web": {"pending: delivering web at " + head[:12], "success: web delivered at " + head[:12]},
		"deliver/bad": {"pending: delivering bad at " + head[:12], "failure: bad failed at " + head[:12] + ": " + badObject + ": "},
	}
	for ctxName, w := range want {
		got := statuses[ctxName]
		if len(got) == 1 { // the pending was replaced before it went out
			w = w[1:]
		}
		if len(got) != len(w) {
			t.Errorf("GitHub statuses of %s: %q, want %d", ctxName, got, len(w))
			continue
		}
		for i := range w {
			if !strings.HasPrefix(got[i], w[i]) {
				t.Errorf("GitHub status %d of %s: %q, want it to start with %q", i, ctxName, got[i], w[i])
			}
		}
	}

	// Slack: one message per outcome, the failure naming the object.
	var texts []string
	for _, r := range slack.Requests() {
		if r.Path != "/services/T0/B0/secret" {
			t.Errorf("Slack path %s", r.Path)
		}
		var m struct {
			Text   string
			Blocks []struct{ Text struct{ Text string } }
		}
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		all := m.Text
		for _, b := range m.Blocks {
			all += "\n" + b.Text.Text
		}
		texts = append(texts, all)
	}
	if len(texts) != 2 || !containsOne(texts, ":white_check_mark: web delivered at "+head[:12]) || !containsOne(texts, "*Object:* `"+badObject+"`") {
		t.Errorf("Slack messages: %q", texts)
	}

	// Webhook: one signed JSON document per outcome.
	results := map[string]notify.Payload{}
	for _, r := range hook.Requests() {
		mac := hmac.New(sha256.New, []byte(hmacKey))
		mac.Write(r.Body)
		if got, want := r.Header.Get(notify.SignatureHeader), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
			t.Errorf("webhook signature %q, want %q", got, want)
		}
		var p notify.Payload
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		results[p.App] = p
	}
	if p := results["web"]; len(results) != 2 || p.Result != notify.Succeeded || p.Revision != head || p.DurationSeconds <= 0 {
		t.Errorf("webhook payloads: %+v", results)
	}
	if p := results["bad"]; p.Result != notify.Failed || p.Object != badObject || !strings.Contains(p.Reason, "string") {
		t.Errorf("webhook payload of bad: %+v", p)
	}
}

func containsOne(texts []string, sub string) bool {
	for _, s := range texts {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestNotifyAfterRestart: a failing app's failure is told once, and a
// reconciler started anew on the same cluster (a restart, a new leader)
// does not tell it again, reading what was told from the status
// ConfigMap; the app's later success is still told.
func TestNotifyAfterRestart(t *testing.T) {
	ns := env.Namespace(t)
	hook := testenv.NewRecorder(t, http.StatusOK)
	notifications := fmt.Sprintf("notifications:\n- {name: hook, type: webhook, address: %q}\n", hook.URL)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: bad, namespace: $NS, manifests: {path: bad}}") + notifications,
		"bad/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {color: [not, a, string]}\n",
	})
	opts := options(t, repo, env.Config)
	results := func() []string {
		var out []string
		for _, r := range hook.Requests() {
			var p notify.Payload
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, string(p.Result)+" "+p.Revision)
		}
		return out
	}
	first := repo.Head()

	r1, stop1 := start(t, opts)
	waitFor(t, 60*time.Second, "bad failed and retried", func() bool { return appStatus(r1, "bad").Failures >= 2 })
	stop1() // sends what is queued
	if got, want := results(), []string{"failed " + first}; !slices.Equal(got, want) {
		t.Fatalf("before the restart: told %q, want %q", got, want)
	}
	var stored struct{ Notified *reconcile.Notified }
	if err := json.Unmarshal([]byte(cmData(t, opts.Pipeline.Apply.InventoryNamespace, reconcile.StatusConfigMap)["bad"]), &stored); err != nil {
		t.Fatal(err)
	}
	if n := stored.Notified; n == nil || n.Result != notify.Failed || n.Revision != first {
		t.Fatalf("status ConfigMap: notified %+v, want failed at %s", n, first)
	}

	r2, stop2 := start(t, opts)
	waitFor(t, 60*time.Second, "bad failed twice after the restart", func() bool { return appStatus(r2, "bad").Failures >= 2 })
	repo.WriteFile("bad/cm.yaml", configMap("bad", map[string]string{"color": "blue"}))
	fixed := repo.CommitAll("fix bad")
	waitFor(t, 60*time.Second, "bad delivered", func() bool { return appStatus(r2, "bad").Revision == fixed })
	stop2()
	if got, want := results(), []string{"failed " + first, "succeeded " + fixed}; !slices.Equal(got, want) {
		t.Errorf("after the restart: told %q, want %q", got, want)
	}
}
