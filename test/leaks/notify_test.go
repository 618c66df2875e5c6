package leaks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/notify"
)

// TestNotifyNoLeaks: `deliver reconcile --once` delivers the fixture's
// five apps (three succeed; reject fails on a label from Vault that the
// API server quotes, hookfail on a failing hook) with a provider of each
// type, and one more whose endpoint refuses the token and echoes it, all
// pointing at local servers that record every request. No canary shows
// in any request (body, headers, URL) but the credential each endpoint
// must get, where it must be (the token in GitHub's Authorization header,
// GitLab's PRIVATE-TOKEN, the Slack URL's path); none shows in the
// reconciler's log, the notification credentials included. The webhook
// and Slack providers have a template quoting the reason: the message it
// renders is scanned too.
func TestNotifyNoLeaks(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	ghToken, glToken, hmacKey, slackPath := newCanary("notify-github-token"), newCanary("notify-gitlab-token"), newCanary("notify-hmac-key"), newCanary("notify-slack-path")
	l := newLeakRun(t, ghToken, glToken, hmacKey, slackPath)
	c, sc, recipient, base, ageFile, out := l.c, l.sc, l.recipient, l.base, l.ageFile, l.out
	l.putVault(ctx, t, map[string][2]string{
		"leaks/web": {"apiKey", c.vaultValues.Value}, "leaks/plain": {"token", c.vaultManifest.Value},
		"leaks/reject": {"label", c.vaultLabel.Value}, "leaks/hook": {"token", c.vaultHook.Value},
		"leaks/worker": {"token", c.vaultWorkload.Value},
	})

	// The endpoints; echo refuses the token and quotes it back, so that
	// the reconciler logs the answer.
	gh, gl, hook, slack := testenv.NewRecorder(t, http.StatusCreated), testenv.NewRecorder(t, http.StatusCreated), testenv.NewRecorder(t), testenv.NewRecorder(t)
	echo := testenv.NewRecorder(t, http.StatusUnauthorized)
	echo.Body = `{"message":"Bad credentials: Bearer ` + ghToken.Value + `"}`
	notifications := fmt.Sprintf(`notifications:
- {name: gh, type: github, address: %q, repository: acme/deploy, secretRef: {name: deliver-notify, key: github}}
- {name: lab, type: gitlab, address: %q, repository: acme/deploy, secretRef: {name: deliver-notify, key: gitlab}}
- {name: hook, type: webhook, address: %q, secretRef: {name: deliver-notify, key: hmac}, template: "{{.Result}} {{.App}}: {{.Object}} {{.Reason}}"}
- {name: chat, type: slack, secretRef: {name: deliver-notify, key: slack}, template: "{{.App}} {{.Result}} at {{.ShortRevision}}{{with .Reason}}: {{.}}{{end}}"}
- {name: echo, type: github, address: %q, repository: acme/deploy, secretRef: {name: deliver-notify, key: github}}
`, gh.URL, gl.URL, hook.URL+"/deliver", echo.URL)

	ns, inv := env.Namespace(t), env.Namespace(t)
	gitRoot := filepath.Join(base, "git")
	repo := gitserver.NewRepo(t, filepath.Join(gitRoot, "deploy"))
	writeRepo(t, repo, ns, recipient, c)
	apps := []string{plainApp, webApp, workerApp, rejectApp, hookApp}
	for i := range apps {
		apps[i] = strings.ReplaceAll(strings.ReplaceAll(apps[i], "$NS", ns), "$IMAGE", "registry.example/web:1.0.0")
	}
	repo.WriteFile("deliver.yaml", config(apps...)+notifications)
	head := repo.CommitAll("five apps, notified")
	url := gitserver.NewHTTP(t, gitRoot, gitserver.HTTPOptions{Username: "deliver", Password: c.gitPassword.Value}).RepoURL("deploy")
	if _, err := env.Client().CoreV1().Secrets(inv).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "deliver-notify"},
		StringData: map[string]string{"github": ghToken.Value, "gitlab": glToken.Value, "hmac": hmacKey.Value, "slack": slack.URL + "/services/" + slackPath.Value},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, deliverBin, "reconcile", "--once", "--repo", url, "--ref", "main",
		"--inventory-namespace", inv, "--cache-dir", filepath.Join(out, "reconcile-cache"), "--kubeconfig", env.Kubeconfig, "--timeout", "30s")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(out, "home"),
		"TMPDIR=" + filepath.Join(out, "tmp"),
		"XDG_CACHE_HOME=" + filepath.Join(out, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(out, "config"),
		"SOPS_AGE_KEY_FILE=" + ageFile,
		"VAULT_ADDR=" + vlt.Addr,
		"VAULT_TOKEN=" + vlt.Token,
		"DELIVER_GIT_USERNAME=deliver",
		"DELIVER_GIT_PASSWORD=" + c.gitPassword.Value,
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 {
		t.Errorf("reconcile --once: exit %d, want 1 (reject and hookfail fail); log with canaries masked:\n%s", code, mask.Replace(stderr.String()))
	}

	// Proof that the paths under test were taken: every app's outcome
	// reached every endpoint, and the reject's reason, which quotes the
	// Vault label, reached them masked.
	results := map[string]notify.Result{}
	for _, r := range hook.Requests() {
		var p notify.Payload
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		results[p.App] = p.Result
		if p.App == "reject" && (!strings.Contains(p.Reason, "***") || p.Object != "ConfigMap/"+ns+"/reject") {
			t.Errorf("webhook payload of reject: object %q, reason %q: want the ConfigMap and a masked label", p.Object, mask.Replace(p.Reason))
		}
		// The template's message, the reason in it masked too.
		if p.App == "reject" && (!strings.HasPrefix(p.Message, "failed reject: ConfigMap/"+ns+"/reject ") || !strings.Contains(p.Message, "***")) {
			t.Errorf("webhook message of reject %q: want the template rendered with a masked label", mask.Replace(p.Message))
		}
		if p.Revision != head {
			t.Errorf("webhook payload of %s: revision %s, want %s", p.App, p.Revision, head)
		}
	}
	want := map[string]notify.Result{"plain": notify.Succeeded, "web": notify.Succeeded, "worker": notify.Succeeded, "reject": notify.Failed, "hookfail": notify.Failed}
	for app, r := range want {
		if results[app] != r {
			t.Errorf("webhook: app %s: %q, want %q (all: %v)", app, results[app], r, results)
		}
	}
	// Pending and the outcome per app on GitHub and GitLab, an outcome per
	// app on Slack; echo refused every one. (An outcome replaces a
	// pending status not sent yet: 5 to 10 statuses.)
	for _, e := range []struct {
		name     string
		rec      *testenv.Recorder
		min, max int
	}{{"GitHub", gh, 5, 10}, {"GitLab", gl, 5, 10}, {"Slack", slack, 5, 5}, {"webhook", hook, 5, 5}, {"echo", echo, 5, 10}} {
		if got := len(e.rec.Requests()); got < e.min || got > e.max {
			t.Errorf("%s: %d requests, want %d to %d", e.name, got, e.min, e.max)
		}
	}
	if !strings.Contains(stderr.String(), "Bad credentials: Bearer ***") {
		t.Errorf("the log lacks echo's answer with the token masked")
	}

	report := func(t *testing.T, hits []hit) {
		t.Helper()
		for _, h := range hits {
			t.Errorf("LEAK %s", h)
		}
	}
	t.Run("requests", func(t *testing.T) {
		for _, e := range []struct {
			name string
			rec  *testenv.Recorder
			// header and url are the canaries the endpoint must get.
			header, url []string
		}{
			{"github", gh, []string{ghToken.Name}, nil}, {"gitlab", gl, []string{glToken.Name}, nil},
			{"webhook", hook, nil, nil}, {"slack", slack, nil, []string{slackPath.Name}}, {"echo", echo, []string{ghToken.Name}, nil},
		} {
			seen := 0 // hits of the credential where it must be: the scan sees it
			for i, r := range e.rec.Requests() {
				where := fmt.Sprintf("%s request %d", e.name, i)
				var hdr strings.Builder
				for k, vs := range r.Header {
					fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ", "))
				}
				report(t, sc.scan(where+" body", r.Body))
				hh, uh := sc.scan(where+" headers", []byte(hdr.String())), sc.scan(where+" URL", []byte(r.URL))
				seen += len(hh) + len(uh)
				report(t, output{except: e.header}.allowed(hh))
				report(t, output{except: e.url}.allowed(uh))
			}
			if len(e.header)+len(e.url) > 0 && seen == 0 {
				t.Errorf("%s: the credential not found in its requests: the scan would miss it", e.name)
			}
		}
	})
	t.Run("reconciler log", func(t *testing.T) {
		report(t, sc.scan("deliver reconcile --once (stdout)", []byte(stdout.String())))
		report(t, sc.scan("deliver reconcile --once (stderr, JSON logs)", []byte(stderr.String())))
	})
}
