package ui_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/ui"
)

// TestFilter: each query parameter keeps the apps it names; none keeps
// all.
func TestFilter(t *testing.T) {
	t.Parallel()
	rows := []ui.AppRow{
		{AppRef: ui.AppRef{Environment: "prod", Name: "web"}, Result: "succeeded", Health: ui.HealthHealthy},
		{AppRef: ui.AppRef{Environment: "prod", Name: "db"}, Result: "failed", Health: ui.HealthDegraded},
		{AppRef: ui.AppRef{Environment: "staging", Name: "web-api"}, Result: "succeeded", Health: ui.HealthDrifted, Drift: []string{"ConfigMap/a/b"}},
		{AppRef: ui.AppRef{Environment: "staging", Name: "cache"}, Result: "succeeded", Health: ui.HealthHealthy, Pin: &apply.Pin{Revision: "abc"}, Suspended: true},
		{AppRef: ui.AppRef{Environment: "staging", Name: "jobs"}, Result: "running", Health: ui.HealthProgressing, Held: "freeze until Monday"},
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"web", "db", "web-api", "cache", "jobs"}},
		{"env=prod", []string{"web", "db"}},
		{"q=WEB", []string{"web", "web-api"}},
		{"q=web&env=staging", []string{"web-api"}},
		{"result=failed", []string{"db"}},
		{"health=drifted", []string{"web-api"}},
		{"drifted=1", []string{"web-api"}},
		{"pinned=yes", []string{"cache"}},
		{"suspended=true", []string{"cache"}},
		{"held=on", []string{"jobs"}},
		{"held=no", []string{"web", "db", "web-api", "cache", "jobs"}},
		{"result=waiting", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range ui.ParseFilter(q).Apply(rows) {
				got = append(got, r.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("apps (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildTree: objects go to their apply stage, stages in apply order,
// each sorted by kind, namespace and name; empty stages are left out.
func TestBuildTree(t *testing.T) {
	t.Parallel()
	id := func(group, kind, ns, name string) ui.ObjectNode {
		return ui.ObjectNode{ID: object.ID{Group: group, Kind: kind, Namespace: ns, Name: name}}
	}
	in := []ui.ObjectNode{
		id("apps", "Deployment", "a", "web"),
		id("", "Service", "a", "web"),
		id("", "ConfigMap", "b", "z"),
		id("", "ConfigMap", "a", "z"),
		id("", "Namespace", "", "a"),
		id("networking.k8s.io", "Ingress", "a", "web"),
		id("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "", "hook"),
		id("batch", "Job", "a", "migrate"),
	}
	type stage struct {
		Name    string
		Objects []string
	}
	var got []stage
	for _, s := range ui.BuildTree(in) {
		st := stage{Name: s.Name}
		for _, o := range s.Objects {
			st.Objects = append(st.Objects, o.ID.String())
		}
		got = append(got, st)
	}
	want := []stage{
		{"definitions", []string{"Namespace/a"}},
		{"config", []string{"ConfigMap/a/z", "ConfigMap/b/z", "Service/a/web"}},
		{"workloads", []string{"Deployment/a/web", "Job/a/migrate"}},
		{"rest", []string{"Ingress/a/web"}},
		{"webhooks", []string{"ValidatingWebhookConfiguration/hook"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

// TestLocalGuard: the local user is served from and to loopback only; a
// request from elsewhere or naming another host (DNS rebinding) is
// refused.
func TestLocalGuard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		remote, host string
		ok           bool
	}{
		{"127.0.0.1:5000", "127.0.0.1:8080", true},
		{"[::1]:5000", "[::1]:8080", true},
		{"127.0.0.1:5000", "localhost:8080", true},
		{"10.1.2.3:5000", "127.0.0.1:8080", false},
		{"127.0.0.1:5000", "evil.example:8080", false},
		{"127.0.0.1:5000", "10.1.2.3", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		u, err := ui.LocalGuard{}.Identify(r)
		if (err == nil) != tc.ok {
			t.Errorf("remote %s host %s: err %v, want ok %v", tc.remote, tc.host, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ui.ErrNotLoopback) {
			t.Errorf("remote %s host %s: err %v, want ErrNotLoopback", tc.remote, tc.host, err)
		}
		if err == nil && u.Name != "" {
			t.Errorf("local user named %q", u.Name)
		}
	}
}

// fakeSource is a Source and Actions in memory, for the handlers' logic.
type fakeSource struct {
	rows   []ui.AppRow
	pinned []string
}

func (f *fakeSource) Apps(context.Context) ([]ui.AppRow, error) { return f.rows, nil }
func (f *fakeSource) App(_ context.Context, ref ui.AppRef, red *secrets.Redactor) (*ui.AppDetail, error) {
	for _, r := range f.rows {
		if r.AppRef == ref {
			red.Add("s3cr3t-value", `p&ss<w>'rd"+1`) // as Cluster does with an app's Secrets
			return &ui.AppDetail{AppRow: r, Hooks: []ui.HookRun{{Reason: "failed", Pods: []ui.HookPod{{Name: "p", LogTail: "password=s3cr3t-value token=p&ss<w>'rd\"+1"}}}}}, nil
		}
	}
	return nil, ui.ErrNotFound
}
func (f *fakeSource) RequestReconcile(context.Context, ui.AppRef) error { return nil }
func (f *fakeSource) Pin(_ context.Context, ref ui.AppRef, by, reason string) error {
	f.pinned = append(f.pinned, ref.Name+" by "+by+": "+reason)
	return nil
}
func (f *fakeSource) Unpin(context.Context, ui.AppRef) error { return nil }

func (f *fakeSource) Suspend(context.Context, ui.AppRef, bool) error { return nil }

// userGuard identifies the user by the header X-User ("" refused), lets
// alice read web only, and act only with ActionReconcile.
type userGuard struct{}

func (userGuard) Identify(r *http.Request) (ui.User, error) {
	if n := r.Header.Get("X-User"); n != "" {
		return ui.User{Name: n}, nil
	}
	return ui.User{}, errors.New("no user")
}
func (userGuard) MayRead(_ context.Context, u ui.User, app ui.AppRef) (bool, error) {
	return u.Name == "admin" || app.Name == "web", nil
}
func (userGuard) MayAct(_ context.Context, u ui.User, _ ui.AppRef, a ui.Action) (bool, error) {
	return u.Name == "admin" || a == ui.ActionReconcile, nil
}

// TestHandlersGuard: New refuses no guard; every handler answers 401
// without a user, shows and streams only the apps the guard lets the
// user read (an app it may not read is 404, like an unknown one), refuses
// an action the guard forbids, and masks a value the source registered.
func TestHandlersGuard(t *testing.T) {
	t.Parallel()
	src := &fakeSource{rows: []ui.AppRow{
		{AppRef: ui.AppRef{Name: "web"}, Result: "succeeded"},
		{AppRef: ui.AppRef{Name: "secret-app"}, Result: "failed"},
	}}
	if _, err := ui.New(ui.Options{Source: src}); !errors.Is(err, ui.ErrNoGuard) {
		t.Fatalf("New without a guard: %v, want ErrNoGuard", err)
	}
	srv, err := ui.New(ui.Options{Guard: userGuard{}, Source: src, Actions: src})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	do := func(user, method, path string, form url.Values) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(form.Encode()))
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", hs.URL)
		}
		if user != "" {
			req.Header.Set("X-User", user)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return resp.StatusCode, b.String()
	}
	for _, p := range []string{"/", "/apps/_/web", "/events"} {
		if code, body := do("", http.MethodGet, p, nil); code != http.StatusUnauthorized || strings.Contains(body, "web") {
			t.Errorf("GET %s without a user = %d %q, want 401 and nothing", p, code, body)
		}
	}
	code, page := do("alice", http.MethodGet, "/", nil)
	if code != http.StatusOK || !strings.Contains(page, `data-name="web"`) || strings.Contains(page, "secret-app") {
		t.Errorf("GET / as alice = %d, want web only:\n%s", code, page)
	}
	if code, body := do("alice", http.MethodGet, "/apps/_/secret-app", nil); code != http.StatusNotFound || strings.Contains(body, "failed") {
		t.Errorf("GET an app alice may not read = %d %q, want 404", code, body)
	}
	code, page = do("alice", http.MethodGet, "/apps/_/web", nil)
	// The page is escaped by html/template before it is redacted: the
	// escaped form of a value is masked too.
	if code != http.StatusOK || strings.Contains(page, "s3cr3t-value") || !strings.Contains(page, "password="+secrets.Mask+" token="+secrets.Mask) {
		t.Errorf("GET /apps/_/web = %d, want the log's secret masked:\n%s", code, page)
	}
	// Actions: the form's token is the user's.
	token := between(page, `name="csrf" value="`, `"`)
	if code, _ := do("alice", http.MethodPost, "/apps/_/web/pin", url.Values{"csrf": {token}, "reason": {"x"}}); code != http.StatusForbidden {
		t.Errorf("pin by alice = %d, want 403", code)
	}
	if code, _ := do("alice", http.MethodPost, "/apps/_/web/reconcile", url.Values{"csrf": {token}}); code != http.StatusSeeOther {
		t.Errorf("reconcile by alice = %d, want 303", code)
	}
	if code, _ := do("bob", http.MethodPost, "/apps/_/web/reconcile", url.Values{"csrf": {token}}); code != http.StatusForbidden {
		t.Errorf("reconcile by bob with alice's token = %d, want 403", code)
	}
	_, adminPage := do("admin", http.MethodGet, "/apps/_/web", nil)
	if code, _ := do("admin", http.MethodPost, "/apps/_/web/pin", url.Values{"csrf": {between(adminPage, `name="csrf" value="`, `"`)}, "reason": {"hold"}}); code != http.StatusSeeOther || !slices.Equal(src.pinned, []string{"web by admin: hold"}) {
		t.Errorf("pin by admin = %d, pins %v", code, src.pinned)
	}

	// The stream: alice gets web's events, not secret-app's.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/events", nil)
	req.Header.Set("X-User", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Scan() // the opening comment: subscribed
	srv.Publish(ui.Event{Kind: ui.EventRunEnded, App: ui.AppRef{Name: "secret-app"}, Result: "failed"})
	srv.Publish(ui.Event{Kind: ui.EventRunEnded, App: ui.AppRef{Name: "web"}, Result: "succeeded", Message: "s3cr3t-value"})
	var data []string
	for sc.Scan() && len(data) < 1 {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) != 1 || !strings.Contains(data[0], `"app":"web"`) || strings.Contains(data[0], "s3cr3t") {
		t.Errorf("alice's stream: %q, want web's event only, masked", data)
	}
}

// getAs GETs url as user (userGuard's X-User) and returns the status and
// the body.
func getAs(t *testing.T, url, user string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-User", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func between(s, from, to string) string {
	_, after, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(after, to)
	return v
}

// TestReconcilerHookKeepsPlansBounded: the plan of a run the reconciler
// reports is kept as the inventory stores it: a first apply of 200
// ConfigMaps of 2 KB each shows the first diffs, a note of how many more
// changed, and a page far below the plan's size; a plan that changes
// nothing leaves the last one.
func TestReconcilerHookKeepsPlansBounded(t *testing.T) {
	t.Parallel()
	ref := ui.AppRef{Name: "web", InventoryNamespace: "deliver-system", InventoryName: apply.InventoryName("web")}
	src := &fakeSource{rows: []ui.AppRow{{AppRef: ref, Result: "succeeded"}}}
	srv, err := ui.New(ui.Options{Guard: userGuard{}, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	p := &apply.Plan{App: "web", Revision: "r1"}
	for i := range 200 {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": fmt.Sprintf("cm-%03d", i), "namespace": "web"},
			"data":     map[string]any{"blob": strings.Repeat(fmt.Sprintf("line %d\n", i), 256)},
		}}
		p.Changes = append(p.Changes, &apply.Change{ID: object.IDOf(u), Type: apply.ChangeCreate, Desired: u})
	}
	hook := srv.ReconcilerHook("", "deliver-system")
	hook(reconcile.RunEvent{App: "web", Revision: "r1", Ended: true, Result: "succeeded", Plan: p})
	hook(reconcile.RunEvent{App: "web", Revision: "r2", Ended: true, Result: "succeeded", Plan: &apply.Plan{App: "web", Revision: "r2"}})

	hs := httptest.NewServer(srv)
	defer hs.Close()
	code, page := getAs(t, hs.URL+"/apps/_/web", "admin")
	if code != http.StatusOK || !strings.Contains(page, "cm-000") || !strings.Contains(page, "more objects changed") || !strings.Contains(page, "r1") {
		t.Fatalf("GET /apps/_/web = %d: want r1's plan, its first diffs and a note of the rest:\n%.2000s", code, page)
	}
	if strings.Contains(page, "cm-199") {
		t.Errorf("the page shows the 200th ConfigMap's diff: the plan kept in memory is not cut")
	}
	if len(page) > 4*apply.MaxPlanDiffBytes {
		t.Errorf("the page of a 200-object plan is %d bytes, want under %d", len(page), 4*apply.MaxPlanDiffBytes)
	}
}

// TestRunRequestShown: the app page tells a run request that waits from
// one the reconciler served.
func TestRunRequestShown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ requested, served, want string }{
		{"", "", `id="request">-<`},
		{"t2", "t1", `id="request">t2: waiting for the reconciler<`},
		{"t2", "t2", `id="request">t2: served<`},
	} {
		ref := ui.AppRef{Name: "web"}
		src := &fakeSource{rows: []ui.AppRow{{AppRef: ref, Requested: tc.requested, Served: tc.served}}}
		srv, err := ui.New(ui.Options{Guard: userGuard{}, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/apps/_/web", nil)
		req.Header.Set("X-User", "admin")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("requested %q, served %q: the page lacks %s:\n%s", tc.requested, tc.served, tc.want, w.Body.String())
		}
	}
}

// TestSecurityHeaders: every page of the view forbids loading anything
// from another origin, framing and content sniffing, and the pages
// themselves name nothing from elsewhere (no script, style, image, link
// or form target with a scheme or host of its own).
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	src := &fakeSource{rows: []ui.AppRow{{AppRef: ui.AppRef{Name: "web"}, Result: "succeeded"}}}
	srv, err := ui.New(ui.Options{Guard: userGuard{}, Source: src, Actions: src})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	elsewhere := regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?\s*([a-z][a-z0-9+.-]*:|//)`)
	for _, p := range []string{"/", "/apps/_/web", "/nope"} {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+p, nil)
		req.Header.Set("X-User", "alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for h, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s = %q, want %q", p, h, got, want)
			}
		}
		for _, m := range elsewhere.FindAllString(string(body), -1) {
			if !strings.Contains(m, "data:") {
				t.Errorf("GET %s: the page names something elsewhere: %s", p, m)
			}
		}
	}
}
