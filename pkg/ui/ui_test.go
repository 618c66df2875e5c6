package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/ui"
)

var env *testenv.Cluster

// The hooks are Jobs whose Pods must run and fail: controllers and kwok.
func TestMain(m *testing.M) { os.Exit(testenv.Run(m, &env, testenv.Options{})) }

// canary is a Secret value of the web app; no page may show it.
const canary = "canary-ui-7f3a9c2e51"

// appsRepo is a repository with two apps in ns: web (a ConfigMap, a
// Secret holding canary, a Deployment) and db, whose pre-apply migration
// Job fails.
func appsRepo(t *testing.T, ns string) (*gitserver.Repo, string, string) {
	t.Helper()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	files := testenv.ViewApps(ns, canary, "  healthChecks: [{apiVersion: v1, kind: ConfigMap, current: \"has(self.data.color)\"}]\n")
	for name, content := range files {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("first")
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{})
	return repo, srv.RepoURL("deploy"), filepath.Join(root, "cache")
}

// view is a running reconciler and the web view it serves.
type view struct {
	r     *reconcile.Reconciler
	srv   *ui.Server
	http  *httptest.Server
	invNS string
	appNS string
	repo  *gitserver.Repo
	red   *secrets.Redactor
}

// startView starts a reconciler of appsRepo with its view, as
// `deliver reconcile --ui-addr` wires them, actions on.
func startView(t *testing.T) *view {
	t.Helper()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	repo, repoURL, cache := appsRepo(t, ns)
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	v := &view{invNS: invNS, appNS: ns, repo: repo, red: red}
	ropts := reconcile.Options{
		Pipeline: pipeline.Options{
			Repo: repoURL, Ref: "main", CacheDir: cache, Redactor: red,
			Apply: apply.Options{InventoryNamespace: invNS},
		},
		Config:      env.Config,
		Interval:    300 * time.Millisecond,
		RetryBase:   time.Minute, // db fails once and stays failed during the test
		RetryMax:    time.Minute,
		DriftSettle: 200 * time.Millisecond,
		// Drift is reported, not reverted, so that the pages can show it.
		DisableSelfHeal: true,
	}
	rv, err := ui.NewReconcilerView(ui.ViewOptions{
		Reconcile: ropts, Guard: ui.LocalGuard{}, Actions: true, ClusterName: "test", PollInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, srv := rv.Reconcilers()[0], rv.Server()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rv.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	v.r, v.srv = r, srv
	v.http = httptest.NewServer(srv)
	t.Cleanup(v.http.Close)
	return v
}

func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func appStatus(r *reconcile.Reconciler, app string) reconcile.AppStatus {
	for _, a := range r.Status().Apps {
		if a.App == app {
			return a
		}
	}
	return reconcile.AppStatus{}
}

// sseClient reads the view's event stream into a channel.
func sseClient(t *testing.T, base string) <-chan map[string]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: content type %q", ct)
	}
	out := make(chan map[string]string, 256)
	var mu sync.Mutex
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, canary) {
				mu.Lock()
				t.Errorf("event stream shows the canary: %s", line)
				mu.Unlock()
			}
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			var raw map[string]any
			if json.Unmarshal([]byte(data), &raw) == nil {
				e := map[string]string{}
				for k, v := range raw {
					e[k] = fmt.Sprint(v)
				}
				select {
				case out <- e:
				default:
				}
			}
		}
	}()
	return out
}

// TestReconcilerView drives the view a running reconciler serves: the
// page of all apps lists both apps with their results, a live event
// tells the page of a run, the failing migration's reason shows on its
// app's page with its hook run and history, the web app's tree has its
// objects by stage with the verdicts of its CEL check (ConfigMaps) and
// kstatus (the rest), the last plan is the run's
// masked diff, a pin set with the button shows everywhere, and no page
// or event shows the Secret's value.
func TestReconcilerView(t *testing.T) {
	t.Parallel()
	v := startView(t)
	base := v.http.URL
	events := sseClient(t, base)

	testenv.Eventually(t, 90*time.Second, time.Second/4, "web delivered and db failed", func() bool {
		return appStatus(v.r, "web").Result == apply.ResultSucceeded && appStatus(v.r, "db").Result == apply.ResultFailed
	})

	// The stream told of web's run.
	var sawEnd bool
	deadline := time.After(30 * time.Second)
	for !sawEnd {
		select {
		case e := <-events:
			sawEnd = e["kind"] == "run-ended" && e["app"] == "web" && e["result"] == apply.ResultSucceeded && e["path"] == "/apps/_/web"
		case <-deadline:
			t.Fatal("no run-ended event of web on the stream")
		}
	}

	code, page := get(t, base, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d:\n%s", code, page)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)data-name="web".*?r-succeeded"[^>]*>succeeded<.*?h-healthy">healthy<`),
		regexp.MustCompile(`(?s)data-name="db".*?r-failed".*?>failed<.*?h-degraded">degraded<`),
	} {
		if !want.MatchString(page) {
			t.Errorf("GET / does not match %s:\n%s", want, page)
		}
	}
	// Filtered on the server: only the failed app.
	if _, page := get(t, base, "/?result=failed"); !strings.Contains(page, `data-name="db"`) || strings.Contains(page, `data-name="web"`) {
		t.Errorf("GET /?result=failed shows other apps than db:\n%s", page)
	}

	// The failing hook's reason, its Job and the failed run.
	code, page = get(t, base, "/apps/_/db")
	if code != http.StatusOK {
		t.Fatalf("GET /apps/_/db = %d:\n%s", code, page)
	}
	for _, want := range []string{
		`id="message"`, "hook Job/", "Job failed", "exited 1", // the run's error
		`class="hook s-Failed"`, "BackoffLimitExceeded", // the kept hook run
		`class="result r-failed">failed</td>`, // its row in the history
	} {
		if !strings.Contains(page, want) {
			t.Errorf("db page lacks %q:\n%s", want, page)
		}
	}

	code, page = get(t, base, "/apps/_/web")
	if code != http.StatusOK {
		t.Fatalf("GET /apps/_/web = %d:\n%s", code, page)
	}
	host, _ := os.Hostname()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)<summary>config \(2\)</summary>.*ConfigMap/[^ ]+/web.*Secret/[^ ]+/web.*<summary>workloads \(1\)</summary>.*class="object s-(Current|InProgress)" data-id="Deployment/`),
		regexp.MustCompile(`(?s)id="plan".*create ConfigMap/[^<]*/web.*color: blue`), // the run's diff
		// The app's CEL check decides for its ConfigMaps, kstatus for the rest.
		regexp.MustCompile(`data-id="ConfigMap/[^"]+/web"><span class="status">Current</span>[^\n]*\(current: has\(self.data.color\)\)`),
		regexp.MustCompile(`data-id="Secret/[^"]+/web"><span class="status">Current</span>[^\n]*\(kstatus\)`),
		regexp.MustCompile(`(?s)id="history".*r-succeeded">succeeded</td><td>[0-9.]+m?s</td><td>` + regexp.QuoteMeta(host) + `<`),
	} {
		if !want.MatchString(page) {
			t.Errorf("web page does not match %s:\n%s", want, page)
		}
	}

	// Pin with the button: the form's token, from the page's origin.
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("web page has no action form:\n%s", page)
	}
	post := func(action string, form url.Values, origin string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/apps/_/web/"+action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("pin", url.Values{"csrf": {csrf[1]}, "reason": {"freeze"}}, "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("pin from another origin = %d %s, want 403", code, body)
	}
	if code, body := post("pin", url.Values{"csrf": {"00"}, "reason": {"freeze"}}, base); code != http.StatusForbidden {
		t.Errorf("pin with a wrong token = %d %s, want 403", code, body)
	}
	if code, body := post("pin", url.Values{"csrf": {csrf[1]}, "reason": {"freeze for the audit"}}, base); code != http.StatusOK || !strings.Contains(body, "done: pin") {
		t.Fatalf("pin = %d:\n%s", code, body)
	}
	rev := appStatus(v.r, "web").Revision
	testenv.Eventually(t, 30*time.Second, time.Second/4, "pin shown on the page of all apps", func() bool {
		_, page := get(t, base, "/?pinned=1")
		return strings.Contains(page, `data-name="web"`) && strings.Contains(page, "pinned at "+rev[:12]) && !strings.Contains(page, `data-name="db"`)
	})
	if _, page := get(t, base, "/apps/_/web"); !strings.Contains(page, "by deliver reconcile --ui-addr") || !strings.Contains(page, "freeze for the audit") {
		t.Errorf("web page does not show who pinned and why:\n%s", page)
	}

	// kubectl edit: the drift shows on the page of all apps and on the
	// stream, as the reconciler notices it.
	patch := []byte(`{"data":{"color":"red"}}`)
	if _, err := env.Client().CoreV1().ConfigMaps(v.appNS).Patch(context.Background(), "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, time.Second/4, "drift on the page of all apps", func() bool {
		_, page := get(t, base, "/?drifted=1")
		return regexp.MustCompile(`(?s)data-name="web".*?h-drifted">drifted<.*?class="drift">1 object\(s\)<`).MatchString(page)
	})
	deadline = time.After(30 * time.Second)
	for sawDrift := false; !sawDrift; {
		select {
		case e := <-events:
			sawDrift = e["kind"] == "changed" && e["app"] == "web" && e["drift"] == "1"
		case <-deadline:
			t.Fatal("no change event of web's drift on the stream")
		}
	}
	if _, page := get(t, base, "/apps/_/web"); !regexp.MustCompile(`(?s)id="drift".*ConfigMap/` + v.appNS + `/web`).MatchString(page) {
		t.Errorf("web page does not name the drifted ConfigMap:\n%s", page)
	}

	// Nothing served shows the Secret's value.
	for _, p := range []string{"/", "/apps/_/web", "/apps/_/db", "/static/app.js"} {
		if _, page := get(t, base, p); strings.Contains(page, canary) {
			t.Errorf("GET %s shows the canary", p)
		}
	}
	if code, _ := get(t, base, "/apps/_/nosuch"); code != http.StatusNotFound {
		t.Errorf("GET an unknown app = %d, want 404", code)
	}
}

// TestLocalView is `deliver ui`'s view, which reads the status the
// reconciler wrote to its ConfigMap rather than its memory: the apps and
// their results are the same, and an edit of a delivered object, which
// the reconciler reverts, reaches the open page's stream.
func TestLocalView(t *testing.T) {
	t.Parallel()
	v := startView(t)
	testenv.Eventually(t, 90*time.Second, time.Second/4, "web delivered and db failed", func() bool {
		return appStatus(v.r, "web").Result == apply.ResultSucceeded && appStatus(v.r, "db").Result == apply.ResultFailed
	})
	src, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: v.invNS})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ui.New(ui.Options{Guard: ui.LocalGuard{}, Source: src, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Watch(ctx)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	testenv.Eventually(t, 30*time.Second, time.Second/4, "the status ConfigMap's apps", func() bool {
		_, page := get(t, hs.URL, "/")
		return regexp.MustCompile(`(?s)data-name="db".*?>failed<.*data-name="web".*?>succeeded<`).MatchString(page)
	})
	// A standby replica's view: its memory knows no runs, the leader's
	// ConfigMap does.
	standby, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: v.invNS,
		Live: func() reconcile.Status { return reconcile.Status{Leader: false} }})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := standby.Apps(context.Background())
	if err != nil || len(rows) != 2 || rows[0].Name != "db" || rows[0].Result != apply.ResultFailed || rows[1].Result != apply.ResultSucceeded {
		t.Errorf("standby's view: %+v, %v; want db failed and web succeeded from the ConfigMap", rows, err)
	}

	// Read-only: no action form, and a POST is refused.
	_, page := get(t, hs.URL, "/apps/_/web")
	if strings.Contains(page, `id="actions"`) {
		t.Errorf("read-only view shows actions:\n%s", page)
	}
	resp, err := http.PostForm(hs.URL+"/apps/_/web/reconcile", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST reconcile on a read-only view = %d, want 404", resp.StatusCode)
	}

	// A new commit: its run reaches the stream through the status
	// ConfigMap (the poll), as a change of web.
	events := sseClient(t, hs.URL)
	v.repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	head := v.repo.CommitAll("green")
	deadline := time.After(60 * time.Second)
	for {
		select {
		case e := <-events:
			if e["kind"] == "changed" && e["app"] == "web" && e["revision"] == head {
				return
			}
		case <-deadline:
			t.Fatal(fmt.Sprintf("no change event of web at %s on the stream", head))
		}
	}
}
