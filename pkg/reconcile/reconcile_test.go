package reconcile_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

var env *testenv.Cluster

func TestMain(m *testing.M) {
	// No rollouts needed: ConfigMaps only, so no controllers or kwok.
	os.Exit(testenv.Run(m, &env, testenv.Options{NoControllers: true}))
}

// gitRepo is a repository of deliver apps served over smart HTTP.
type gitRepo struct {
	*gitserver.Repo
	URL   string
	cache string
}

func newGitRepo(tb testing.TB, files map[string]string) *gitRepo {
	tb.Helper()
	root := tb.TempDir()
	repo := gitserver.NewRepo(tb, filepath.Join(root, "deploy"))
	for name, content := range files {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("first")
	srv := gitserver.NewHTTP(tb, root, gitserver.HTTPOptions{})
	return &gitRepo{Repo: repo, URL: srv.RepoURL("deploy"), cache: filepath.Join(root, "cache")}
}

// webRepo is a repository with one app, web, in ns: a ConfigMap web with
// data.color blue.
func webRepo(t *testing.T, ns string) *gitRepo {
	t.Helper()
	return newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}"),
		"web/cm.yaml":  configMap("web", map[string]string{"color": "blue"}),
	})
}

// secretFile writes a webhook secret to a file of the test.
func secretFile(tb testing.TB, secret []byte) string {
	tb.Helper()
	f := filepath.Join(tb.TempDir(), "secret")
	if err := os.WriteFile(f, append(secret, '\n'), 0o600); err != nil {
		tb.Fatal(err)
	}
	return f
}

// replica is one reconciler of an elected pair.
type replica struct {
	*reconcile.Reconciler
	stop func()
}

// electedPair starts two reconcilers of base with leader election and
// fast Lease timings, and returns them once one leads.
func electedPair(t *testing.T, base reconcile.Options) (leader, standby replica) {
	t.Helper()
	le := reconcile.LeaderElection{Enabled: true, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond}
	var rs [2]replica
	for i, id := range []string{"replica-a", "replica-b"} {
		o := base
		o.LeaderElection = le
		o.LeaderElection.Identity = id
		rs[i].Reconciler, rs[i].stop = start(t, o)
	}
	waitFor(t, 30*time.Second, "a leader", func() bool {
		switch {
		case rs[0].Status().Leader:
			leader, standby = rs[0], rs[1]
		case rs[1].Status().Leader:
			leader, standby = rs[1], rs[0]
		}
		return leader.Reconciler != nil
	})
	return leader, standby
}

func deliverYAML(ns string, apps ...string) string {
	return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" + strings.ReplaceAll(strings.Join(apps, "\n"), "$NS", ns) + "\n"
}

func configMap(name string, data map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata:\n", name)
	for k, v := range data {
		fmt.Fprintf(&b, "  %s: %q\n", k, v)
	}
	return b.String()
}

// options returns reconciler options for repo with fast timings.
func options(t *testing.T, repo *gitRepo, cfg *rest.Config) reconcile.Options {
	inv := env.Namespace(t)
	return reconcile.Options{
		Pipeline: pipeline.Options{
			Repo: repo.URL, Ref: "main", CacheDir: repo.cache,
			Apply: apply.Options{InventoryNamespace: inv},
		},
		Config:      cfg,
		Interval:    300 * time.Millisecond,
		RetryBase:   200 * time.Millisecond,
		RetryMax:    time.Second,
		DriftSettle: 200 * time.Millisecond,
		Log:         testLogger(t),
	}
}

// start runs a reconciler until the test ends or stop is called.
func start(t *testing.T, opts reconcile.Options) (r *reconcile.Reconciler, stop func()) {
	t.Helper()
	r, err := reconcile.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// waitFor polls cond until it holds or timeout passes, and returns how
// long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return testenv.Eventually(t, timeout, 50*time.Millisecond, what, cond)
}

// runPass runs one reconcile --once pass with opts (Once set here) and
// returns the reconciler, whose status is the pass's, and Run's error.
func runPass(t *testing.T, opts reconcile.Options) (*reconcile.Reconciler, error) {
	t.Helper()
	opts.Once = true
	r, err := reconcile.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return r, r.Run(ctx)
}

// metricsBody is what r's /metrics serves.
func metricsBody(t *testing.T, r *reconcile.Reconciler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

func appStatus(r *reconcile.Reconciler, app string) reconcile.AppStatus {
	for _, a := range r.Status().Apps {
		if a.App == app {
			return a
		}
	}
	return reconcile.AppStatus{}
}

func cmData(t *testing.T, ns, name string) map[string]string {
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return cm.Data
}

// TestCommitDriftAndRetry: a new commit is applied, a kubectl edit is
// reverted within 5 s (with a drift settle of 0.2 s), a failing app is
// retried with backoff while the others go on, and the status is readable
// from a ConfigMap.
func TestCommitDriftAndRetry(t *testing.T) {
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: base, namespace: $NS, manifests: {path: base}}",
			"- {name: web, namespace: $NS, dependsOn: [base], manifests: {path: web}}",
			"- {name: broken, namespace: $NS, manifests: {path: broken}}"),
		"base/cm.yaml":   configMap("base", map[string]string{"tier": "base"}),
		"web/cm.yaml":    configMap("web", map[string]string{"color": "blue"}),
		"broken/cm.yaml": configMap("Not_A_Valid_Name", map[string]string{"a": "b"}),
	})
	opts := options(t, repo, env.Config)
	r, _ := start(t, opts)

	waitFor(t, 30*time.Second, "first apply", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && cmData(t, ns, "web")["color"] == "blue"
	})

	// A commit moved: applied at the next fetch.
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	pushed := time.Now()
	head := repo.CommitAll("green")
	waitFor(t, 20*time.Second, "commit applied", func() bool {
		return cmData(t, ns, "web")["color"] == "green" && appStatus(r, "web").Revision == head
	})
	t.Logf("commit to applied (polling every %s): %s", opts.Interval, time.Since(pushed).Round(time.Millisecond))

	// kubectl edit: another field manager changes a field deliver owns.
	patch := []byte(`{"data":{"color":"red"}}`)
	_, err := env.Client().CoreV1().ConfigMaps(ns).Patch(context.Background(), "web", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	waitFor(t, 15*time.Second, "drift reverted", func() bool { return cmData(t, ns, "web")["color"] == "green" })
	reverted := time.Since(edited)
	t.Logf("kubectl edit reverted in %s (drift settle %s)", reverted.Round(time.Millisecond), opts.DriftSettle)
	// The settle delay, then one run of a one-object app: seconds at most
	// even on a loaded machine, where a missed watch event would only be
	// caught by the next full resync.
	if reverted > 5*time.Second {
		t.Errorf("kubectl edit reverted in %s, want under 5s with a drift settle of %s", reverted.Round(time.Millisecond), opts.DriftSettle)
	}

	// A deleted object comes back too.
	if err := env.Client().CoreV1().ConfigMaps(ns).Delete(context.Background(), "base", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "deleted object restored", func() bool { return cmData(t, ns, "base")["tier"] == "base" })

	// The broken app fails and is retried, with a growing delay, while the
	// others were delivered.
	// Read between two retries: a retry that is running says so.
	var b reconcile.AppStatus
	waitFor(t, 15*time.Second, "broken app retried", func() bool {
		b = appStatus(r, "broken")
		return b.Failures >= 2 && b.Result != reconcile.ResultRunning
	})
	if b.Result != apply.ResultFailed || b.NextRetry.IsZero() || !strings.Contains(b.Message, "Not_A_Valid_Name") {
		t.Errorf("broken app status = %+v, want failed with a next retry and a message naming the object", b)
	}

	// The status ConfigMap says the same.
	waitFor(t, 10*time.Second, "status ConfigMap", func() bool {
		cm, err := env.Client().CoreV1().ConfigMaps(opts.Pipeline.Apply.InventoryNamespace).Get(context.Background(), reconcile.StatusConfigMap, metav1.GetOptions{})
		if err != nil {
			return false
		}
		var web reconcile.AppStatus
		if json.Unmarshal([]byte(cm.Data["web"]), &web) != nil {
			return false
		}
		return web.Revision == head && web.Result == apply.ResultSucceeded && cm.Annotations[reconcile.AnnotationRevision] == head &&
			strings.Contains(cm.Data["broken"], `"result":"failed"`)
	})
}

// countingTransport counts the API requests of a client.
type countingTransport struct {
	rt http.RoundTripper
	n  *atomic.Int64
	mu *sync.Mutex
	// last records the last requests, for a failure message.
	last *[]string
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	*c.last = append(*c.last, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
	c.mu.Unlock()
	return c.rt.RoundTrip(req)
}

type requestCounter struct {
	n    atomic.Int64
	mu   sync.Mutex
	last []string
}

func (rc *requestCounter) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{rt: rt, n: &rc.n, mu: &rc.mu, last: &rc.last}
	})
	return cfg
}

func (rc *requestCounter) reset() {
	rc.mu.Lock()
	rc.last = nil
	rc.n.Store(0)
	rc.mu.Unlock()
}

// TestNoopReconcileRequests measures the API requests of no-op
// reconciles of an app of 100 objects: none, against at least one per
// object for a full dry run.
func TestNoopReconcileRequests(t *testing.T) {
	const objects = 100
	ns := env.Namespace(t)
	files := map[string]string{"deliver.yaml": deliverYAML(ns, "- {name: many, namespace: $NS, manifests: {path: m}}")}
	for i := range objects {
		files[fmt.Sprintf("m/cm-%03d.yaml", i)] = configMap(fmt.Sprintf("cm-%03d", i), map[string]string{"i": fmt.Sprint(i)})
	}
	repo := newGitRepo(t, files)
	var rc requestCounter
	opts := options(t, repo, rc.config())
	opts.Interval = 100 * time.Millisecond
	r, _ := start(t, opts)
	waitFor(t, 60*time.Second, "first apply", func() bool { return appStatus(r, "many").Revision == repo.Head() })
	// Let the informers' lists and the watch events of the apply settle.
	waitFor(t, 10*time.Second, "settled", func() bool {
		a := appStatus(r, "many")
		return a.UpToDateChecks >= 3 && len(a.Drift) == 0
	})

	rc.reset()
	before := appStatus(r, "many").UpToDateChecks
	waitFor(t, 10*time.Second, "10 no-op reconciles", func() bool { return appStatus(r, "many").UpToDateChecks >= before+10 })
	checks := appStatus(r, "many").UpToDateChecks - before
	got := rc.n.Load()
	rc.mu.Lock()
	last := append([]string(nil), rc.last...)
	rc.mu.Unlock()
	// A no-op pass reads only git and the informers' caches, and writes
	// the status ConfigMap only when it changes: no request at all. The
	// informers' watches stay open, but one that times out (after 5 to 10
	// minutes) is opened again whatever the passes do: not counted.
	var passes []string
	for _, req := range last {
		if !strings.Contains(req, "watch=true") {
			passes = append(passes, req)
		}
	}
	t.Logf("%d no-op reconciles of %d objects: %d API requests, %d of them watches opened again", checks, objects, got, int(got)-len(passes))
	if len(passes) != 0 {
		t.Errorf("%d no-op reconciles made %d API requests other than watches, want none:\n%s", checks, len(passes), strings.Join(passes, "\n"))
	}

	// What a reconciler that dry-runs everything (as Flux does) pays for
	// one reconcile of the same app.
	var full requestCounter
	po := opts.Pipeline
	po.FullDryRun = true
	cfg := full.config()
	po.Kube = func(string) (*rest.Config, error) { return cfg, nil }
	res, err := pipeline.Diff(context.Background(), po)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("one full dry-run reconcile of the same app: %d API requests", full.n.Load())
	if full.n.Load() < objects {
		t.Errorf("full dry run made %d requests, fewer than its %d objects: is it measured?", full.n.Load(), objects)
	}
}

func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// TestWebhookTrigger: with a one-hour poll, a signed push event gets a
// new commit applied within seconds; a bad signature is refused.
func TestWebhookTrigger(t *testing.T) {
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	secret := []byte("webhook-secret-4b1f")
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour
	opts.WebhookSecretFile = secretFile(t, secret)
	r, _ := start(t, opts)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, head))
	post := func(sig, delivery string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhook", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(sign([]byte("wrong"), body), "d-0"); code != http.StatusUnauthorized {
		t.Errorf("bad signature: status %d, want 401", code)
	}
	if code := post("", "d-0"); code != http.StatusUnauthorized {
		t.Errorf("unsigned: status %d, want 401", code)
	}
	time.Sleep(500 * time.Millisecond)
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("color = %s after refused webhooks, want blue (nothing triggered)", got)
	}
	if code := post(sign(secret, body), "d-1"); code != http.StatusAccepted {
		t.Fatalf("signed push: status %d, want 202", code)
	}
	took := waitFor(t, 10*time.Second, "webhook-triggered apply", func() bool { return cmData(t, ns, "web")["color"] == "green" })
	t.Logf("webhook to applied: %s", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("webhook to applied took %s, want about a second", took)
	}
	if code := post(sign(secret, body), "d-1"); code != http.StatusUnauthorized {
		t.Errorf("replayed delivery: status %d, want 401", code)
	}

	// Metrics and probes.
	for path, want := range map[string]string{
		"/metrics": `deliver_reconcile_runs_total{app="web",result="succeeded"}`,
		"/healthz": "ok",
		"/readyz":  "ok",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.2000s", path, resp.StatusCode, want, b.String())
		}
	}
}

// TestLeaderElection: of two reconcilers only the Lease holder delivers;
// when it stops, the other takes over within seconds.
func TestLeaderElection(t *testing.T) {
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	leader, standby := electedPair(t, options(t, repo, env.Config))
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(leader.Reconciler, "web").Revision == repo.Head() })
	for range 10 {
		if standby.Status().Leader || len(standby.Status().Apps) != 0 {
			t.Fatalf("standby leads or reconciles: %+v", standby.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}

	leader.stop()
	took := waitFor(t, 15*time.Second, "standby takes over", func() bool { return standby.Status().Leader })
	t.Logf("takeover %s after the leader stopped", took.Round(time.Millisecond))
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	waitFor(t, 20*time.Second, "new leader applies", func() bool {
		return cmData(t, ns, "web")["color"] == "green" && appStatus(standby.Reconciler, "web").Revision == head
	})
	if diff := cmp.Diff(false, leader.Status().Leader); diff != "" {
		t.Errorf("stopped leader still leads (-want +got):\n%s", diff)
	}
}
