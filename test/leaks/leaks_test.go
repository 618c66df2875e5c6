// Package leaks plants a canary secret in every way a secret enters
// deliver (SOPS manifests, SOPS Helm values, Vault refs in values, in
// manifests and in a label the apiserver rejects, a kustomize
// secretGenerator fed by a SOPS env file) and credentials (Vault token,
// age key, git password, webhook secret), drives the real binary through
// render, diff, apply, a secret rotation, a server rejection, failing
// hooks, status and a reconciler with drift and webhooks, and then scans
// every output for every canary: stdout and stderr, the reconciler's JSON
// logs and HTTP answers (/metrics), every Event of the cluster, every
// object of the cluster (inventories and status ConfigMap decoded; only
// the data of the apps' own Secrets may hold a value), and every file
// deliver left behind.
package leaks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/restart"
)

var (
	env        *testenv.Cluster
	vlt        *testenv.Vault
	deliverBin string
)

// TestMain builds the binary while Vault and the control plane start.
func TestMain(m *testing.M) {
	// -short: no cluster, no binary; only the scanner's self-check runs.
	os.Exit(testenv.RunE2E(m, &env, testenv.E2EOptions{Deliver: &deliverBin, Vault: &vlt}))
}

// TestNoSecretLeaks is the canary scan over every output of deliver.
func TestNoSecretLeaks(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	start := time.Now()

	// The test's own files (keys, the webhook secret) are outside out/,
	// which holds everything deliver may write and is scanned.
	l := newLeakRun(t)
	c, sc, base, out, vc := l.c, l.sc, l.base, l.out, l.vc
	webhookFile := writeFile(t, filepath.Join(base, "keys", "webhook-secret"), c.webhookSecret.Value+"\n")
	putVault := func(path, key, value string) {
		t.Helper()
		if _, err := vc.KVv2("secret").Put(ctx, path, map[string]any{key: value}); err != nil {
			t.Fatal(err)
		}
	}
	putVault("leaks/web", "apiKey", c.vaultValues.Value)
	putVault("leaks/plain", "token", c.vaultManifest.Value)
	putVault("leaks/reject", "label", c.vaultLabel.Value)
	putVault("leaks/hook", "token", c.vaultHook.Value)
	putVault("leaks/worker", "token", c.vaultWorkload.Value)

	f := l.serveFixture(t, "three apps", nil)
	r, repo, url, ns, inv := f.r, f.repo, f.url, f.ns, f.inv

	// 1. The CLI, every output path.
	id := func(kind, name string) string { return kind + "/" + ns + "/" + name }
	// adopt lets the next run of another environment or deliver.yaml
	// take app over, which is otherwise refused (apply.IdentityError):
	// the failhook environment delivers app web too, and reject.yaml app
	// reject before the second commit's deliver.yaml.
	adopt := func(app string) func() {
		return func() {
			patch := []byte(`{"metadata":{"annotations":{"` + apply.AnnotationAdopt + `":"true"}}}`)
			if _, err := env.Client().CoreV1().Secrets(inv).Patch(ctx, apply.InventoryName(app), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name   string
		before func()
		args   []string
		code   int
		want   []string
	}{
		{name: "render", args: []string{"render"}, want: []string{"kind: Secret", "'***'"}},
		// render -o json prints a v1 List: masked as the YAML is.
		{name: "render -o json", args: []string{"render", "-o", "json"}, want: []string{`"kind": "List"`, `"***"`}},
		{name: "render -v --log-format json", args: []string{"render", "-v", "--log-format", "json"}},
		// Post-renderers change the Secret holding the canaries, or fail
		// on it.
		{name: "render with post-renderers", args: []string{"render", "--config", "postrender.yaml"}, want: []string{"postrendered: \"yes\"", "team: leaks", "'***'"}},
		{name: "render with a failing post-renderer", args: []string{"render", "--config", "postrender-fail.yaml"}, code: 1, want: []string{"postRenderers[0].kustomize.patches[1]"}},
		// The ConfigMap copying the Secret web's chart looks up: its
		// value shows masked.
		{name: "diff", args: []string{"diff"}, code: 2, want: []string{id("Secret", "plain-sops") + " create", id("Secret", "web-credentials") + " create", "will run: first run",
			id("Secret", "plain-sops") + " will be ready when health check current", id("ConfigMap", lookupConfigMap) + " create", "UPSTREAM_TOKEN: ***"}},
		{name: "diff -o json", args: []string{"diff", "-o", "json"}, code: 2, want: []string{`"changes": true`}},
		{name: "apply", args: []string{"apply", "-v", "--diff"}, want: []string{"hook " + id("Job", "web-migrate") + " (pre-apply) hook-ran", id("Secret", "plain-sops") + " created",
			id("Secret", "plain-sops") + " health Current: health check current", "UPSTREAM_TOKEN: ***"}},
		{name: "diff after apply", args: []string{"diff"}, want: []string{"0 to create, 0 to change, 0 to delete"}},
		{
			// The ConfigMaps a lookup and a post-build substitution
			// copied the Secret's value into: their live value is the
			// old one, which this run's redactor never saw.
			name:   "diff of the upstream Secret rotated",
			before: func() { rotateLookupSecret(t, ns, c) },
			args:   []string{"diff"}, code: 2,
			want: []string{id("ConfigMap", lookupConfigMap) + " update", id("ConfigMap", postBuildConfigMap) + " update", "UPSTREAM_TOKEN: '*** (before)'", "UPSTREAM_TOKEN: '*** (after)'"},
		},
		{
			name:   "diff of a secret rotated in Vault",
			before: func() { putVault("leaks/web", "apiKey", c.vaultRotated.Value) },
			args:   []string{"diff"}, code: 2,
			want: []string{id("Secret", "web-credentials") + " update", "spec or referenced config changed"},
		},
		{name: "diff -o json of the rotation", args: []string{"diff", "-o", "json"}, code: 2, want: []string{`"changes": true`}},
		{name: "apply of the rotation", args: []string{"apply", "-o", "json", "-v", "--log-format", "json"}, want: []string{`"configured"`}},
		{
			// The apiserver's validation error quotes the label from
			// Vault.
			name: "apply rejected by the apiserver", args: []string{"apply", "--config", "reject.yaml", "-v"}, code: 1,
			want: []string{id("ConfigMap", "reject"), "metadata.labels", "***"},
		},
		{name: "apply -o json rejected by the apiserver", args: []string{"apply", "--config", "reject.yaml", "-o", "json"}, code: 1, want: []string{"metadata.labels"}},
		// diff does not validate a new object: the label shows, masked.
		{name: "diff of the object the apiserver rejects", args: []string{"diff", "--config", "reject.yaml"}, code: 2, want: []string{"tier: ***"}},
		{name: "diff -o json of the object the apiserver rejects", args: []string{"diff", "--config", "reject.yaml", "-o", "json"}, code: 2, want: []string{`tier: ***`}},
		{name: "apply with a failing hook", before: adopt("web"), args: []string{"apply", "--env", "failhook", "-v"}, code: 1, want: []string{"adopted the app from no environment", "hook " + id("Job", "web-migrate"), "failed"}},
		{name: "apply -o json with a failing hook", args: []string{"apply", "--env", "failhook", "-o", "json"}, code: 1, want: []string{"web-migrate"}},
		{name: "status", args: []string{"status"}, want: []string{"web", "failed"}},
		{name: "status -o json", args: []string{"status", "-o", "json"}, want: []string{`"app": "plain"`}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		r.run(s.name, s.code, s.want, s.args...)
	}

	// 2. The reconciler, following a second commit with two more apps,
	// both failing.
	head := commitSecond(t, repo, ns)
	// Back from the failhook environment, and from reject.yaml, which
	// delivered app reject before deliver.yaml does.
	adopt("web")()
	adopt("reject")()
	rec := startReconciler(t, r.environ, url, inv, filepath.Join(out, "reconcile-cache"), webhookFile)
	cs := env.Client()
	statuses := func() map[string]reconcile.AppStatus {
		cm, err := cs.CoreV1().ConfigMaps(inv).Get(ctx, reconcile.StatusConfigMap, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		st := map[string]reconcile.AppStatus{}
		for app, data := range cm.Data {
			var a reconcile.AppStatus
			if json.Unmarshal([]byte(data), &a) == nil {
				st[app] = a
			}
		}
		return st
	}
	reasons := func() map[string]bool {
		list, err := cs.CoreV1().Events(inv).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, e := range list.Items {
			out[e.Reason] = true
		}
		return out
	}
	rec.waitFor("every app run at the new commit, with its Events", 90*time.Second, func() bool {
		st := statuses()
		for _, app := range []string{"plain", "web", "worker"} {
			if a := st[app]; a.Result != apply.ResultSucceeded || a.Revision != head {
				return false
			}
		}
		for _, app := range []string{"reject", "hookfail"} {
			if st[app].Result != apply.ResultFailed {
				return false
			}
		}
		got := reasons()
		for _, want := range []string{reconcile.ReasonApplied, reconcile.ReasonApplyFailed, reconcile.ReasonHookSucceeded, reconcile.ReasonHookFailed} {
			if !got[want] {
				return false
			}
		}
		return true
	})

	// Drift: a Secret's value edited in the cluster, reverted by the
	// reconciler.
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "plain-sops", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["password"] = []byte("edited-by-hand")
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor("the drift reverted", 60*time.Second, func() bool {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "plain-sops", metav1.GetOptions{})
		return err == nil && string(s.Data["password"]) == c.sopsManifest.Value && reasons()[reconcile.ReasonDriftDetected]
	})

	// Webhooks: a forged GitLab token, then a signed GitHub push.
	rec.post("webhook with a wrong GitLab token", http.StatusUnauthorized, []byte(`{"ref":"refs/heads/main"}`),
		"X-Gitlab-Token", c.webhookWrong.Value, "X-Gitlab-Event", "Push Hook")
	body := []byte(`{"ref":"refs/heads/main","after":"` + head + `"}`)
	sig := hmac.New(sha256.New, []byte(c.webhookSecret.Value))
	sig.Write(body)
	rec.post("webhook signed push", http.StatusAccepted, body,
		"X-Hub-Signature-256", "sha256="+hex.EncodeToString(sig.Sum(nil)), "X-GitHub-Delivery", randomHex(8), "X-GitHub-Event", "push")
	for _, p := range []string{"/healthz", "/readyz"} {
		rec.get(p)
	}
	metrics := rec.get("/metrics")
	for _, want := range []string{
		`deliver_reconcile_runs_total{app="reject",result="failed"}`,
		`deliver_reconcile_hook_runs_total{app="hookfail",result="failed"}`,
		`deliver_reconcile_drift_detected_total{app="plain"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	rec.stop()
	r.run("status after the reconciler", 0, []string{"reject", "hookfail"}, "status")
	r.run("status -o json after the reconciler", 0, []string{`"reconciler"`}, "status", "-o", "json")

	// 3. Apps that left deliver.yaml: delete names their objects (the
	// ConfigMaps of web and worker hold the looked-up Secret's value,
	// which git does not name); one is removed after the scan of the
	// objects below.
	repo.WriteFile("deliver.yaml", config(strings.ReplaceAll(plainApp, "$NS", ns), strings.ReplaceAll(rejectApp, "$NS", ns)))
	repo.CommitAll("web, worker and hookfail leave")
	r.run("delete --dry-run", 2, []string{"== app web", id("ConfigMap", lookupConfigMap) + ": to delete", "== app worker", id("ConfigMap", postBuildConfigMap) + ": to delete"}, "delete", "--dry-run")
	r.run("delete --dry-run -o json", 2, []string{`"delete": [`}, "delete", "--dry-run", "-o", "json")
	t.Logf("deliver runs took %s", time.Since(start).Round(time.Millisecond))

	// 4. The scan. The key of the config digests joins the canaries: it
	// may be in its own Secret only.
	keySecret, err := cs.CoreV1().Secrets(inv).Get(ctx, apply.DigestKeyName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the config digest key: %v", err)
	}
	sc = newScanner(append(c.all(), canary{Name: digestKeyCanary, Value: string(keySecret.Data["key"])})...)
	mask = sc.mask
	for _, d := range []string{"web", "worker"} {
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, d, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := dep.Spec.Template.Annotations[restart.Annotation]; !strings.HasPrefix(v, "hmac-sha256:") {
			t.Errorf("Deployment %s/%s: %s = %q, want an HMAC: the scan would not cover it", ns, d, restart.Annotation, v)
		}
	}
	report := func(t *testing.T, hits []hit) {
		t.Helper()
		for _, h := range hits {
			why := ""
			if strings.Contains(h.Where, "Secret "+inv+"/"+apply.InventoryName("")) {
				why = " (an inventory must hold digests, not values)"
			}
			t.Errorf("LEAK %s%s", h, why)
		}
	}
	t.Run("command output", func(t *testing.T) {
		for _, o := range r.outputs {
			report(t, sc.scan(o.where, o.data))
		}
	})
	t.Run("reconciler logs and HTTP answers", func(t *testing.T) {
		for _, o := range rec.outputs() {
			report(t, sc.scan(o.where, o.data))
		}
		// The rejection's message went through the log, masked.
		if !strings.Contains(rec.stderr.String(), `Invalid value: \"***\"`) {
			t.Errorf("the reconciler's log lacks the masked rejection of app reject")
		}
	})
	t.Run("events", func(t *testing.T) {
		n, redacted := 0, false
		for _, o := range clusterEvents(t) {
			n++
			redacted = redacted || bytes.Contains(o.data, []byte("ApplyFailed")) && bytes.Contains(o.data, []byte("***"))
			report(t, sc.scan(o.where, o.data))
		}
		t.Logf("%d Events scanned", n)
		if !redacted {
			t.Errorf("no ApplyFailed Event with a masked value: the rejection did not reach the Events")
		}
	})
	t.Run("objects", func(t *testing.T) {
		objs, appSecrets := clusterObjects(t, ns, c.vaultWorkload.Name)
		t.Logf("%d objects scanned", len(objs))
		workloadSeen, keySeen, lookupSeen, postBuildSeen := false, false, false, false
		for _, o := range objs {
			hits := sc.scan(o.where, o.data)
			// Rotated by then: the value after the rotation.
			if o.where == "ConfigMap "+ns+"/"+lookupConfigMap {
				for _, h := range hits {
					lookupSeen = lookupSeen || h.Canary == c.lookupRotated.Name
				}
			}
			if o.where == "ConfigMap "+ns+"/"+postBuildConfigMap {
				for _, h := range hits {
					postBuildSeen = postBuildSeen || h.Canary == c.lookupRotated.Name
				}
			}
			if o.where == "Secret "+inv+"/"+apply.DigestKeyName {
				for _, h := range hits {
					keySeen = keySeen || h.Canary == digestKeyCanary
				}
			}
			if o.where == "Deployment "+ns+"/worker" {
				for _, h := range hits {
					workloadSeen = workloadSeen || h.Canary == c.vaultWorkload.Name
				}
			}
			report(t, o.allowed(hits))
		}
		if !keySeen {
			t.Errorf("Secret %s/%s: the digest key not found in its data: the scanner misses it", inv, apply.DigestKeyName)
		}
		if !lookupSeen {
			t.Errorf("ConfigMap %s/%s: canary %s not found in its data: the chart's lookup did not read the Secret %s through deliver, or the scanner misses it", ns, lookupConfigMap, c.lookupRotated.Name, lookupSecret)
		}
		if !postBuildSeen {
			t.Errorf("ConfigMap %s/%s: canary %s not found in its data: the post-build substitution did not read the Secret %s through deliver, or the scanner misses it", ns, postBuildConfigMap, c.lookupRotated.Name, lookupSecret)
		}
		if !workloadSeen {
			t.Errorf("Deployment %s/worker: canary %s not found in its env: the value did not go through deliver, or the scanner misses it", ns, c.vaultWorkload.Name)
		}
		// The only place a value may be: the apps' own Secrets. The
		// scanner finds each there, which proves it would elsewhere.
		want := map[string][]string{
			"plain-sops":      {c.sopsManifest.Name},
			"plain-vault":     {c.vaultManifest.Name},
			"web-credentials": {c.sopsValues.Name, c.vaultRotated.Name, c.valuesFrom.Name},
			"worker-env":      {c.sopsEnv.Name},
			"hookfail-creds":  {c.vaultHook.Name},
		}
		for name, canaries := range want {
			var got []string
			for secret, data := range appSecrets {
				if secret == name || strings.HasPrefix(secret, name+"-") { // kustomize's hash suffix
					for _, h := range sc.scan(secret, data) {
						got = append(got, h.Canary)
					}
				}
			}
			for _, cn := range canaries {
				if !slices.Contains(got, cn) {
					t.Errorf("Secret %s/%s: canary %s not found in its data: the value did not go through deliver, or the scanner misses it", ns, name, cn)
				}
			}
		}
	})
	// The removal of an app, after the objects were scanned (its Secret
	// is one of those checked above): its output is scanned as every
	// command's.
	t.Run("delete output", func(t *testing.T) {
		n := len(r.outputs)
		r.run("delete hookfail", 0, []string{id("Secret", "hookfail-creds") + " deleted", "inventory deleted"}, "delete", "hookfail", "-v")
		for _, o := range r.outputs[n:] {
			report(t, sc.scan(o.where, o.data))
		}
	})
	t.Run("files left behind", func(t *testing.T) {
		perDir := map[string]int{}
		for _, o := range files(t, out, repo.Dir) {
			rel, _ := filepath.Rel(base, strings.TrimPrefix(o.where, "file "))
			perDir[strings.Join(strings.SplitN(filepath.ToSlash(rel), "/", 3)[:2], "/")]++
			report(t, sc.scan(o.where, o.data))
		}
		t.Logf("files scanned per folder: %v", perDir)
		if perDir["out/git-cache"] == 0 || perDir["out/reconcile-cache"] == 0 {
			t.Errorf("no file in the git caches: the scan would miss what deliver writes there")
		}
	})
}

// digestKeyCanary names the key of the config digests among the canaries.
const digestKeyCanary = "config-digest-key"

// commitSecond commits the reconciler's revision: a new web image (its
// migration runs again), and two apps that fail: reject (the apiserver
// refuses a label from Vault) and hookfail (a hook that fails).
func commitSecond(t *testing.T, repo *gitserver.Repo, ns string) string {
	t.Helper()
	web := strings.ReplaceAll(strings.ReplaceAll(webApp, "$NS", ns), "$IMAGE", "registry.example/web:1.1.0")
	apps := []string{plainApp, web, workerApp, rejectApp, hookApp}
	for i := range apps {
		apps[i] = strings.ReplaceAll(apps[i], "$NS", ns)
	}
	repo.WriteFile("deliver.yaml", config(apps...))
	return repo.CommitAll("web 1.1.0, reject and hookfail")
}

// reconciler is a running `deliver reconcile`.
type reconciler struct {
	t              *testing.T
	cmd            *exec.Cmd
	addr           string
	stdout, stderr bytes.Buffer
	exited         chan error
	http           []output
}

func startReconciler(t *testing.T, environ []string, url, inv, cache, webhookFile string) *reconciler {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rec := &reconciler{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan error, 1)}
	rec.cmd = exec.Command(deliverBin, "reconcile", "--repo", url, "--ref", "main", "--interval", "1s", "--retry-max", "2s",
		"--listen", rec.addr, "--webhook-secret-file", webhookFile, "--leader-elect", "--inventory-namespace", inv,
		"--cache-dir", cache, "--kubeconfig", env.Kubeconfig, "--timeout", "30s")
	rec.cmd.Env = environ
	rec.cmd.Stdout, rec.cmd.Stderr = &rec.stdout, &rec.stderr
	if err := rec.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { rec.exited <- rec.cmd.Wait() }()
	t.Cleanup(func() {
		if rec.cmd.ProcessState == nil {
			_ = rec.cmd.Process.Kill()
			<-rec.exited
		}
	})
	return rec
}

// waitFor polls cond; on a timeout it fails with the reconciler's log,
// canaries masked.
func (rec *reconciler) waitFor(what string, timeout time.Duration, cond func() bool) {
	rec.t.Helper()
	if _, ok := testenv.Until(timeout, 200*time.Millisecond, cond); !ok {
		rec.stop()
		rec.t.Fatalf("reconciler: timed out waiting for %s; log with canaries masked:\n%s", what, mask.Replace(rec.stderr.String()))
	}
}

func (rec *reconciler) do(req *http.Request) (int, string) {
	rec.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rec.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	rec.http = append(rec.http, output{where: fmt.Sprintf("reconciler %s %s (HTTP %d)", req.Method, req.URL.Path, resp.StatusCode), data: b})
	return resp.StatusCode, string(b)
}

func (rec *reconciler) get(path string) string {
	rec.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+rec.addr+path, nil)
	code, body := rec.do(req)
	if code != http.StatusOK {
		rec.t.Errorf("GET %s: %d", path, code)
	}
	return body
}

func (rec *reconciler) post(what string, wantCode int, body []byte, headers ...string) {
	rec.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+rec.addr+"/webhook", bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if code, _ := rec.do(req); code != wantCode {
		rec.t.Errorf("%s: HTTP %d, want %d", what, code, wantCode)
	}
}

// stop ends the reconciler with SIGTERM, as Kubernetes does.
func (rec *reconciler) stop() {
	if rec.cmd.ProcessState != nil {
		return
	}
	_ = rec.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-rec.exited:
		if err != nil {
			rec.t.Errorf("reconciler exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = rec.cmd.Process.Kill()
		<-rec.exited
		rec.t.Errorf("reconciler did not stop within 30s of SIGTERM")
	}
}

func (rec *reconciler) outputs() []output {
	return append([]output{
		{where: "deliver reconcile (stdout)", data: rec.stdout.Bytes()},
		{where: "deliver reconcile (stderr, JSON logs)", data: rec.stderr.Bytes()},
	}, rec.http...)
}

// clusterEvents returns every Event of the cluster, through both APIs
// (core/v1 and events.k8s.io/v1 show them with different fields), as
// JSON: message, note, reason, annotations and all.
func clusterEvents(t *testing.T) []output {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	var out []output
	core, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range core.Items {
		b, _ := json.Marshal(e)
		out = append(out, output{where: fmt.Sprintf("Event %s/%s (core/v1, reason %s, about %s/%s)", e.Namespace, e.Name, e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name), data: b})
	}
	ev, err := cs.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ev.Items {
		b, _ := json.Marshal(e)
		out = append(out, output{where: fmt.Sprintf("Event %s/%s (events.k8s.io/v1, reason %s, about %s/%s)", e.Namespace, e.Name, e.Reason, e.Regarding.Kind, e.Regarding.Name), data: b})
	}
	return out
}

// workloadKinds hold the pod template, and so the env values, the user
// wrote in a Deployment.
var workloadKinds = []string{"Deployment", "ReplicaSet", "Pod"}

// clusterObjects returns every object of every listable kind of the
// cluster as JSON (Secrets' data decoded by the scan), except the values
// of the Secrets deliver applied for an app in ns, which it returns apart
// (name to JSON data) for the scanner's live self-check. Their metadata
// (labels, annotations, managed fields) is scanned like everything else.
// The workloads of ns may hold the canary workloadCanary in their spec,
// where the user put it; their metadata may not. So with the Secrets the
// fixture's chart looks up and its valuesFrom reads (the test's own: their
// metadata only) and the
// ConfigMap the chart copies its value into (the canary helmLookup may be
// in its data, not in its metadata).
func clusterObjects(t *testing.T, ns, workloadCanary string) (objs []output, appSecrets map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		t.Fatal(err)
	}
	// The namespaces of the tests that ended are being deleted, with
	// objects that hold their own runs' canaries (which this test's
	// scanner flags as mangled canaries): they are not this test's output.
	ended := map[string]bool{}
	nss, err := env.Client().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nss.Items {
		if n.DeletionTimestamp != nil {
			ended[n.Name] = true
		}
	}
	appSecrets = map[string][]byte{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			if strings.Contains(res.Name, "/") || !slices.Contains(res.Verbs, "list") {
				continue
			}
			list, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Errorf("list %s: %v", res.Name, err)
				continue
			}
			for _, u := range list.Items {
				if ended[u.GetNamespace()] {
					continue
				}
				where := fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
				if u.GetNamespace() != "" {
					where = fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
				}
				obj := u.Object
				if gv.Group == "" && res.Name == "secrets" && u.GetNamespace() == ns && u.GetLabels()[apply.LabelApp] != "" {
					data, _ := json.Marshal(map[string]any{"data": u.Object["data"], "stringData": u.Object["stringData"]})
					appSecrets[u.GetName()] = data
					obj = stripSecretData(&u)
					where += " (metadata only: the app's own Secret)"
				}
				b, _ := json.Marshal(obj)
				if gv.Group == "" && res.Name == "secrets" && u.GetName() == apply.DigestKeyName {
					objs = append(objs, output{where: where, data: b, except: []string{digestKeyCanary}})
					continue
				}
				if u.GetNamespace() == ns && slices.Contains(workloadKinds, u.GetKind()) {
					meta, _ := json.Marshal(u.Object["metadata"])
					objs = append(objs, output{where: where + " (metadata)", data: meta},
						output{where: where, data: b, except: []string{workloadCanary}})
					continue
				}
				if gv.Group == "" && u.GetNamespace() == ns && (res.Name == "secrets" && (u.GetName() == lookupSecret || u.GetName() == valuesSecret) || res.Name == "configmaps" && (u.GetName() == lookupConfigMap || u.GetName() == postBuildConfigMap)) {
					meta, _ := json.Marshal(stripSecretData(&u))
					objs = append(objs, output{where: where + " (metadata)", data: meta})
					if res.Name == "configmaps" {
						objs = append(objs, output{where: where, data: b, except: []string{helmLookupCanary, lookupRotatedCanary}})
					}
					continue
				}
				objs = append(objs, output{where: where, data: b})
			}
		}
	}
	if len(appSecrets) == 0 {
		t.Errorf("no Secret of the apps found in %s", ns)
	}
	return objs, appSecrets
}

func stripSecretData(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	delete(c.Object, "data")
	delete(c.Object, "stringData")
	return c.Object
}

// files returns every regular file under the folders deliver may write
// (and the repository's working tree, which it must not write).
func files(t *testing.T, dirs ...string) []output {
	t.Helper()
	var out []output
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				t.Errorf("walk %s: %v", p, err)
				return nil
			}
			if !e.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("read %s: %v", p, err)
				return nil
			}
			out = append(out, output{where: "file " + p, data: data})
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	return out
}
