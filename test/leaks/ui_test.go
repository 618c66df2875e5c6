package leaks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
	"github.com/deliverhq/deliver/pkg/ui"
)

// TestUINoSecretLeaks is the canary scan over the web view (issue 21),
// served by a reconciler of the leaks fixture as `deliver reconcile`
// serves it, to a user whose token may read and act on every app: the
// page of all apps and its filters, each app's page (objects, the last
// plan with the masked diff of a Secret rotated in Vault, as the
// reconciler keeps it, as the inventory Secret stores it (unzipped) and
// as `deliver ui`'s page shows it from there, hook runs and
// their Pods, history, Events), the event stream read while the runs
// happen, the static files, the sign-in page, and the error pages (401,
// 404, a refused action, an action that fails). No page may hold any
// canary in any form.
func TestUINoSecretLeaks(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	l := newLeakRun(t)
	c, sc := l.c, l.sc
	l.putVault(ctx, t, map[string][2]string{
		"leaks/web": {"apiKey", c.vaultValues.Value}, "leaks/plain": {"token", c.vaultManifest.Value},
		"leaks/reject": {"label", c.vaultLabel.Value}, "leaks/hook": {"token", c.vaultHook.Value},
		"leaks/worker": {"token", c.vaultWorkload.Value},
	})
	ns, inv := env.Namespace(t), env.Namespace(t)
	gitRoot := filepath.Join(l.base, "git")
	repo := gitserver.NewRepo(t, filepath.Join(gitRoot, "deploy"))
	writeRepo(t, repo, ns, l.recipient, c)
	repo.CommitAll("three apps")
	commitSecond(t, repo, ns) // and reject and hookfail, which fail
	repoURL := gitserver.NewHTTP(t, gitRoot, gitserver.HTTPOptions{Username: "deliver", Password: c.gitPassword.Value}).RepoURL("deploy")

	// The reconciler and its view, wired as `deliver reconcile` does.
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	environ := map[string]string{"VAULT_ADDR": vlt.Addr, "VAULT_TOKEN": vlt.Token}
	ropts := reconcile.Options{
		Pipeline: pipeline.Options{
			Repo: repoURL, Ref: "main", CacheDir: filepath.Join(l.out, "cache"),
			Auth:     source.Auth{Username: "deliver", Password: c.gitPassword.Value},
			Secrets:  pipeline.SecretsOptions{AgeKeyFiles: []string{l.ageFile}, Getenv: func(k string) string { return environ[k] }},
			Redactor: red,
			Apply:    apply.Options{InventoryNamespace: inv},
		},
		Config:      env.Config,
		Interval:    500 * time.Millisecond,
		RetryBase:   time.Minute, // the failing apps fail once during the test
		RetryMax:    time.Minute,
		DriftSettle: 200 * time.Millisecond,
	}
	// --ui-auth token, --ui-actions; the Server mounts the sign-in pages.
	rv, err := ui.NewReconcilerView(ui.ViewOptions{Reconcile: ropts, Actions: true, ClusterName: "leaks", PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := rv.Reconcilers()[0]
	hs := httptest.NewServer(rv.Handler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })

	// An operator of every app: get and patch on the inventories.
	env.ServiceAccount(t, inv, "operator")
	env.Grant(t, inv, inv, "operator", []string{"get", "patch"}, "secrets")
	env.WaitAllowed(t, "system:serviceaccount:"+inv+":operator", "patch", "secrets", inv, true)
	tr, err := env.Client().CoreV1().ServiceAccounts(inv).CreateToken(ctx, "operator", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	var outputs []output
	var outMu sync.Mutex
	keep := func(where string, data []byte) {
		outMu.Lock()
		defer outMu.Unlock()
		outputs = append(outputs, output{where: where, data: data})
	}
	do := func(method, path string, form url.Values, auth bool) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, hs.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// The view's redirects are followed: the page they lead to is
		// scanned as part of this answer.
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		keep(fmt.Sprintf("view %s %s (HTTP %d)", method, path, res.StatusCode), b)
		return res.StatusCode, string(b)
	}

	// The event stream, read from before the first run to the end.
	sctx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan struct{})
	var ended sync.Map // app -> true once a run-ended event came
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, hs.URL+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: HTTP %d", res.StatusCode)
	}
	endedRE := regexp.MustCompile(`"kind":"run-ended","env":"","app":"([a-z]+)"`)
	go func() {
		defer close(streamDone)
		defer res.Body.Close()
		var all strings.Builder
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			all.WriteString(line + "\n")
			if m := endedRE.FindStringSubmatch(line); m != nil {
				ended.Store(m[1], true)
			}
		}
		keep("view GET /events (the stream)", []byte(all.String()))
	}()

	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = rv.Run(runCtx, nil) }()
	t.Cleanup(func() { stopRun(); <-runDone })

	results := func() map[string]string {
		m := map[string]string{}
		for _, a := range r.Status().Apps {
			m[a.App] = a.Result
		}
		return m
	}
	want := map[string]string{"plain": "succeeded", "web": "succeeded", "worker": "succeeded", "reject": "failed", "hookfail": "failed"}
	settled := func() bool {
		got := results()
		for app, res := range want {
			if _, ok := ended.Load(app); !ok || got[app] != res {
				return false
			}
		}
		return true
	}
	if _, ok := testenv.Until(3*time.Minute, 200*time.Millisecond, settled); !ok {
		t.Fatalf("the apps never reached %v on the status and the stream; status: %v", want, results())
	}

	// A rotation in Vault and a new commit: web runs again and its plan,
	// kept for its page, holds the Secret's change (masked).
	l.putVault(ctx, t, map[string][2]string{"leaks/web": {"apiKey", c.vaultRotated.Value}})
	web := strings.ReplaceAll(strings.ReplaceAll(webApp, "$NS", ns), "$IMAGE", "registry.example/web:1.2.0")
	apps := []string{plainApp, web, workerApp, rejectApp, hookApp}
	for i := range apps {
		apps[i] = strings.ReplaceAll(apps[i], "$NS", ns)
	}
	repo.WriteFile("deliver.yaml", config(apps...))
	third := repo.CommitAll("web 1.2.0")
	webPath := ui.AppPath(ui.AppRef{Name: "web"})
	if _, ok := testenv.Until(3*time.Minute, 300*time.Millisecond, func() bool {
		a := appStatusOf(r, "web")
		if a.Revision != third || a.Result != "succeeded" {
			return false
		}
		_, page := do(http.MethodGet, webPath, nil, true)
		return strings.Contains(planSection(page), "Secret/"+ns+"/web-credentials")
	}); !ok {
		t.Fatalf("web's page never showed the plan of %s with its Secret", third)
	}

	// The plan web's run stored in its inventory Secret, unzipped, and the
	// page of `deliver ui` that shows it: a view without the reconciler's
	// memory and with a redactor of its own that knows no value from the
	// render (as `deliver ui` runs), so only what was stored stands
	// between the rotated value and the page.
	webInv, err := env.Client().CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored := unzipped(t, webInv.Data["plan.json.gz"])
	if !strings.Contains(string(stored), third) || !strings.Contains(string(stored), "Secret/"+ns+"/web-credentials") || !strings.Contains(string(stored), secrets.Mask) {
		t.Errorf("web's stored plan is not the plan of %s with the rotated Secret's masked diff: the scan would prove nothing; canaries masked:\n%s", third, mask.Replace(string(stored)))
	}
	keep("inventory Secret "+inv+"/"+apply.InventoryName("web")+" key plan.json.gz, unzipped", stored)
	localSrc, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: inv, ClusterName: "leaks"})
	if err != nil {
		t.Fatal(err)
	}
	localSrv, err := ui.New(ui.Options{Guard: ui.LocalGuard{}, Source: localSrc, Redactor: secrets.NewRedactor(secrets.RedactorOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	localReq := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+webPath, nil)
	localReq.RemoteAddr = "127.0.0.1:40000" // the local view serves loopback only
	localSrv.ServeHTTP(rec, localReq)
	localPage := rec.Body.Bytes()
	keep("deliver ui's view GET "+webPath, localPage)
	if plan := planSection(string(localPage)); !strings.Contains(plan, "from the inventory Secret") || !strings.Contains(plan, "Secret/"+ns+"/web-credentials") {
		t.Errorf("deliver ui's page of web (HTTP %d) does not show the stored plan with the Secret: the scan would prove nothing; plan, canaries masked:\n%s", rec.Code, mask.Replace(plan))
	}

	// Another tool quotes a value of app plain's Secret in an Event on
	// its inventory, which the app's page lists: only the view's own
	// redactor, which learns the app's Secrets as the page reads them,
	// stands between that value and the page.
	quoted := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "quoted-", Namespace: inv},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: inv, Name: apply.InventoryName("plain")},
		Reason:         "QuotedByATool", Type: corev1.EventTypeWarning, Count: 1,
		Message:        "a tool quoted the password: " + c.sopsManifest.Value,
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
		Source: corev1.EventSource{Component: "some-tool"},
	}
	if _, err := env.Client().CoreV1().Events(inv).Create(ctx, quoted, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, page := do(http.MethodGet, ui.AppPath(ui.AppRef{Name: "plain"}), nil, true); !strings.Contains(page, "QuotedByATool") {
		t.Errorf("plain's page does not list the Event quoting its Secret: the scan of Events would prove nothing")
	}

	// Every page an authorised user reaches.
	code, index := do(http.MethodGet, "/", nil, true)
	for app := range want {
		if code != http.StatusOK || !strings.Contains(index, `data-name="`+app+`"`) {
			t.Errorf("the apps page (HTTP %d) does not list %s: the scan would prove nothing", code, app)
		}
	}
	do(http.MethodGet, "/?q=web&result=succeeded", nil, true)
	do(http.MethodGet, "/?result=failed&health=degraded", nil, true)
	var csrf string
	for app := range want {
		code, page := do(http.MethodGet, ui.AppPath(ui.AppRef{Name: app}), nil, true)
		if code != http.StatusOK {
			t.Errorf("the page of %s: HTTP %d", app, code)
		}
		if m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page); m != nil {
			csrf = m[1]
		}
	}
	if _, page := do(http.MethodGet, ui.AppPath(ui.AppRef{Name: "hookfail"}), nil, true); !strings.Contains(page, "hookfail") || !strings.Contains(page, "Failed") {
		t.Errorf("hookfail's page shows no failed hook run: the scan of hook runs would prove nothing")
	}
	if _, page := do(http.MethodGet, webPath, nil, true); !strings.Contains(planSection(page), secrets.Mask) {
		t.Errorf("web's plan shows no masked value: the rotated Secret's diff is not on the page; plan, canaries masked:\n%s", mask.Replace(planSection(page)))
	}
	do(http.MethodGet, "/static/app.js", nil, true)
	do(http.MethodGet, "/static/style.css", nil, true)
	do(http.MethodGet, ui.LoginPath, nil, false)
	// Error pages.
	do(http.MethodGet, "/", nil, false)                                                                                     // 401
	do(http.MethodPost, ui.LoginPath, url.Values{"token": {"x"}}, false)                                                    // sign-in refused
	do(http.MethodGet, ui.AppPath(ui.AppRef{Name: "nosuch"}), nil, true)                                                    // 404
	do(http.MethodGet, "/static/nosuch.js", nil, true)                                                                      // 404
	do(http.MethodPost, webPath+"/pin", url.Values{"reason": {"x"}}, true)                                                  // 403: no CSRF token
	do(http.MethodPost, webPath+"/pin", url.Values{"csrf": {csrf}}, true)                                                   // 400: no reason
	do(http.MethodPost, ui.AppPath(ui.AppRef{Name: "reject"})+"/pin", url.Values{"csrf": {csrf}, "reason": {"hold"}}, true) // never delivered, or pinned
	do(http.MethodPost, webPath+"/reconcile", url.Values{"csrf": {csrf}}, true)                                             // 303 to the page
	if csrf == "" {
		t.Error("no app page had the action forms: the action pages were not reached")
	}

	stopStream()
	<-streamDone
	var leaks []hit
	for _, o := range outputs {
		leaks = append(leaks, o.allowed(sc.scan(o.where, o.data))...)
	}
	for _, h := range leaks {
		t.Errorf("leak: %s", h)
	}
	t.Logf("scanned %d answers of the view for %d canaries", len(outputs), len(c.all()))
}

// unzipped is gzipped data unzipped; the test fails when it is not
// gzip.
func unzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not gzip (%d bytes): %v", len(data), err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// planSection is the "last plan" section of an app's page.
func planSection(page string) string {
	_, after, _ := strings.Cut(page, `<section id="plan">`)
	plan, _, _ := strings.Cut(after, "</section>")
	return plan
}

func appStatusOf(r *reconcile.Reconciler, app string) reconcile.AppStatus {
	for _, a := range r.Status().Apps {
		if a.App == app {
			return a
		}
	}
	return reconcile.AppStatus{}
}
