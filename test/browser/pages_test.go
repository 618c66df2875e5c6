package browser

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/ui"
)

// domTimeout bounds every wait for the page to show something. It is a
// deadline for a condition polled in the page, never a pause: the live
// updates usually land within a second or two.
const domTimeout = 60 * time.Second

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// open navigates tab to url.
func open(t *testing.T, tab context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// waitDOM evaluates the JavaScript predicate expr in the page every
// 100 ms until it holds, or fails the test after domTimeout saying what it
// waited for, with a screenshot and the page's text. It polls from Go, not
// in the page, so that it outlives the navigations a click starts.
func waitDOM(t *testing.T, tab context.Context, what, expr string) {
	t.Helper()
	var lastErr error
	_, ok := testenv.Until(domTimeout, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		lastErr = err
		return err == nil && v
	})
	if !ok {
		screenshot(t, tab, "failed-"+strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
		body, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if len(body) > 3000 {
			body = body[:3000] + "..."
		}
		t.Fatalf("the page never showed %s (last evaluation error: %v)\npage text:\n%s", what, lastErr, body)
	}
}

// bodyText is the page's visible text.
func bodyText(t *testing.T, tab context.Context) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pageHTML is the page's DOM as HTML, scripts' changes included.
func pageHTML(t *testing.T, tab context.Context) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fill sets the value of the form field sel selects and clicks the
// element click selects (none when ""), in one evaluation in the page.
// chromedp's SetValue and Click resolve a node id first and act on it
// after: a live update that replaces the node in between fails them with
// "Could not find node with given id". A selector is resolved when it is
// used instead, and a field or button not (yet) on the page is waited for
// like any other condition.
func fill(t *testing.T, tab context.Context, sel, value, click string) {
	t.Helper()
	script := `(() => {
		const f = ` + js(sel) + ` === "" ? null : document.querySelector(` + js(sel) + `);
		const b = ` + js(click) + ` === "" ? null : document.querySelector(` + js(click) + `);
		if ((` + js(sel) + ` !== "" && !f) || (` + js(click) + ` !== "" && !b)) return false;
		if (f) f.value = ` + js(value) + `;
		if (b) b.click();
		return true;
	})()`
	done := false
	_, ok := testenv.Until(domTimeout, 100*time.Millisecond, func() bool {
		v, err := chromedp.Run(tab, chromedp.Evaluate[bool](script))
		if err != nil {
			t.Fatalf("fill %q, click %q: %v", sel, click, err)
		}
		done = v
		return v
	})
	if !ok || !done {
		screenshot(t, tab, "failed-"+strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
		t.Fatalf("the page never had %q and %q to fill and click", sel, click)
	}
}

// click clicks the element sel selects; see fill.
func click(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	fill(t, tab, "", "", sel)
}

func appURL(v *view, app string) string {
	return v.url + ui.AppPath(ui.AppRef{Name: app})
}

// (a) An app whose pre-apply hook failed shows the hook as failed, with
// the reason the Job's Failed condition gives, on the app's page; the page
// of all apps shows it failed next to the app that succeeded. The apps
// page's screenshot is the README's (-update).
func TestBrowserFailingHookShowsReason(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	v := startView(t, viewOptions{})
	v.waitRun(t, "web", apply.ResultSucceeded)
	v.waitRun(t, "db", apply.ResultFailed)

	// The reason the page must show is the cluster's, read here.
	jobs, err := env.Client().BatchV1().Jobs(v.appNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	for _, j := range jobs.Items {
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				reason = c.Reason
			}
		}
	}
	if reason == "" {
		t.Fatalf("no failed hook Job in %s: the fixture did not fail as meant", v.appNS)
	}

	open(t, tab, appURL(v, "db"))
	// The Job of this test's app: the namespace tells it from the hooks of
	// other tests' apps named db.
	waitDOM(t, tab, "the failed hook with its reason "+reason, `[...document.querySelectorAll("#hooks .hook")].some(h =>
		h.dataset.id.includes(`+js("/"+v.appNS+"/")+`) &&
		h.querySelector(".status").textContent.trim() === "Failed" &&
		h.querySelector(".reason").textContent.includes(`+js(reason)+`))`)
	waitDOM(t, tab, "the app's failed result", `document.getElementById("result").textContent.trim() === "failed"`)
	if strings.Contains(pageHTML(t, tab), canary) {
		t.Errorf("the app page shows the canary")
	}
	screenshot(t, tab, "app-failing-hook")

	open(t, tab, v.url+"/")
	waitDOM(t, tab, "web succeeded and db failed", `(() => {
		const r = n => document.querySelector("#apps tr.app[data-name=" + JSON.stringify(n) + "] td.result");
		return r("web") && r("web").textContent.trim() === "succeeded" && r("db") && r("db").textContent.trim() === "failed";
	})()`)
	png := screenshot(t, tab, "apps")
	if *update {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "docs", "ui-apps.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// (b) A drift appears on the open page of the app, without a reload,
// within seconds of a `kubectl edit` (self-heal off, so it stays).
func TestBrowserDriftAppearsLive(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	v := startView(t, viewOptions{NoSelfHeal: true, Actions: true})
	v.waitRun(t, "web", apply.ResultSucceeded)

	open(t, tab, appURL(v, "web"))
	waitDOM(t, tab, "web succeeded and no drift", `document.getElementById("result").textContent.trim() === "succeeded" && !document.getElementById("drift")`)
	// A mark on the page: a reload or navigation would lose it, so its
	// presence at the end proves the drift came by the live update. A pin
	// reason typed before the update must survive it.
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.deliverTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	fill(t, tab, `#pin-reason`, "typed before the update", "")

	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	// A real `kubectl edit`, its editor a sed that changes the colour.
	cmd := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "-n", v.appNS, "edit", "configmap", "web")
	cmd.Env = append(os.Environ(), "KUBE_EDITOR=sed -i s/blue/red/")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl edit: %v\n%s", err, out)
	}
	waitDOM(t, tab, "the drift of ConfigMap web", `(() => {
		const d = document.getElementById("drift");
		return !!d && d.textContent.includes("ConfigMap") && d.textContent.includes("web") && window.deliverTestMark === true;
	})()`)
	waitDOM(t, tab, "health drifted", `document.getElementById("health").textContent.trim() === "drifted"`)
	waitDOM(t, tab, "the pin reason typed before the update", `document.getElementById("pin-reason").value === "typed before the update"`)
	screenshot(t, tab, "app-drift")
}

// (d) "reconcile now" asks the running reconciler for a run of the app:
// the page it lands on says the request waits, and then, by the live
// update alone, that it was served. The answer to the click is a new page:
// the events of a run that ends before that page's stream opens are
// replayed from the page's cursor, or it would say "waiting" for ever.
func TestBrowserReconcileNow(t *testing.T) {
	t.Parallel()
	tab := newBrowser(t)
	v := startView(t, viewOptions{Actions: true})
	v.waitRun(t, "web", apply.ResultSucceeded)

	open(t, tab, appURL(v, "web"))
	waitDOM(t, tab, "no run request yet", `document.getElementById("request").textContent.trim() === "-"`)
	click(t, tab, `#reconcile-now`)
	waitDOM(t, tab, "the request, on the page the click led to", `document.getElementById("request").textContent.trim() !== "-"`)
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.deliverTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, tab, "the request served, without a reload", `document.getElementById("request").textContent.includes(": served") && window.deliverTestMark === true`)
	var served string
	for _, a := range v.r.Status().Apps {
		if a.App == "web" {
			served = a.LastHandledRequest
		}
	}
	if served == "" || !strings.Contains(bodyText(t, tab), served+": served") {
		t.Errorf("the page says %q; the reconciler last handled request %q", bodyText(t, tab), served)
	}
	screenshot(t, tab, "app-reconcile-now")
}

// serviceAccountToken creates the ServiceAccount name in ns, lets it use
// verbs on Secrets there (none: no Role), and returns a token for it.
func serviceAccountToken(t *testing.T, ns, name string, verbs ...string) string {
	t.Helper()
	env.ServiceAccount(t, ns, name)
	if len(verbs) > 0 {
		env.Grant(t, ns, ns, name, verbs, "secrets")
		for _, verb := range verbs[1:] {
			env.WaitAllowed(t, "system:serviceaccount:"+ns+":"+name, verb, "secrets", ns, true)
		}
	}
	tr, err := env.Client().CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// signIn pastes token in the view's sign-in page and submits it.
func signIn(t *testing.T, tab context.Context, v *view, token string) {
	t.Helper()
	open(t, tab, v.url+ui.LoginPath)
	fill(t, tab, `#login textarea[name=token]`, token, `#login button[type=submit]`)
}

func pinOf(t *testing.T, v *view, app string) *apply.Pin {
	t.Helper()
	s, err := env.Client().CoreV1().Secrets(v.invNS).Get(context.Background(), apply.InventoryName(app), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return apply.PinOf(s.Annotations)
}

// suspendOf is the suspend annotation of app's inventory Secret.
func suspendOf(t *testing.T, v *view, app string) string {
	t.Helper()
	s, err := env.Client().CoreV1().Secrets(v.invNS).Get(context.Background(), apply.InventoryName(app), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Annotations[reconcile.AnnotationSuspend]
}

// (c) With actions on, a user whose token may patch the app's inventory
// pins and unpins it through the page; the pin records who; and suspends
// and resumes it. A user who may only read it is refused, and nothing is
// written.
func TestBrowserPinAndUnpin(t *testing.T) {
	t.Parallel()
	v := startView(t, viewOptions{Token: true, Actions: true})
	operator := serviceAccountToken(t, v.invNS, "operator", "get", "patch")
	viewer := serviceAccountToken(t, v.invNS, "viewer", "get")
	v.waitRun(t, "web", apply.ResultSucceeded)

	t.Run("operator", func(t *testing.T) {
		tab := newBrowser(t)
		signIn(t, tab, v, operator)
		waitDOM(t, tab, "the apps, signed in", `!!document.querySelector("#apps tr.app[data-name=web]")`)
		open(t, tab, appURL(v, "web"))
		waitDOM(t, tab, "web not pinned", `document.querySelector("dd#pin").textContent.trim() === "not pinned"`)
		fill(t, tab, `#pin-reason`, "frozen by the browser test", `#actions form[action$="/pin"] button`)
		waitDOM(t, tab, "web pinned", `document.querySelector("dd#pin") !== null && document.querySelector("dd#pin").textContent.includes("frozen by the browser test")`)
		screenshot(t, tab, "app-pinned")
		p := pinOf(t, v, "web")
		if p == nil {
			t.Fatal("the page says pinned, the inventory Secret has no pin")
		}
		if want := "system:serviceaccount:" + v.invNS + ":operator"; p.By != want || p.Reason != "frozen by the browser test" {
			t.Errorf("pin by %q reason %q; want by %q and the reason typed", p.By, p.Reason, want)
		}
		click(t, tab, `#actions form[action$="/unpin"] button`)
		waitDOM(t, tab, "web unpinned", `document.querySelector("dd#pin") !== null && document.querySelector("dd#pin").textContent.trim() === "not pinned"`)
		if p := pinOf(t, v, "web"); p != nil {
			t.Errorf("the page says not pinned, the inventory still holds %+v", p)
		}

		click(t, tab, `#actions form[action$="/suspend"] button`)
		waitDOM(t, tab, "web suspended", `document.querySelector("dd#suspended") !== null && document.querySelector("dd#suspended").textContent.trim() === "yes"`)
		if got := suspendOf(t, v, "web"); got != "true" {
			t.Errorf("the page says suspended, the inventory's %s is %q", reconcile.AnnotationSuspend, got)
		}
		click(t, tab, `#actions form[action$="/resume"] button`)
		waitDOM(t, tab, "web resumed", `document.querySelector("dd#suspended") !== null && document.querySelector("dd#suspended").textContent.trim() === "no"`)
		if got := suspendOf(t, v, "web"); got != "" {
			t.Errorf("the page says resumed, the inventory's %s is %q", reconcile.AnnotationSuspend, got)
		}
	})
	t.Run("viewer", func(t *testing.T) {
		tab := newBrowser(t)
		signIn(t, tab, v, viewer)
		waitDOM(t, tab, "the apps, signed in", `!!document.querySelector("#apps tr.app[data-name=web]")`)
		open(t, tab, appURL(v, "web"))
		fill(t, tab, `#pin-reason`, "not allowed", `#actions form[action$="/pin"] button`)
		waitDOM(t, tab, "the refusal", `document.body.innerText.includes("forbidden")`)
		if p := pinOf(t, v, "web"); p != nil {
			t.Errorf("a viewer's pin was written: %+v", p)
		}
		open(t, tab, appURL(v, "web"))
		click(t, tab, `#actions form[action$="/suspend"] button`)
		waitDOM(t, tab, "the refusal of suspend", `document.body.innerText.includes("forbidden: suspend")`)
		if got := suspendOf(t, v, "web"); got != "" {
			t.Errorf("a viewer's suspend was written: %q", got)
		}
	})
}

// An unauthorised token sees nothing: a valid token without rights signs
// in but sees no app, and no app's page; an invalid one is refused at the
// sign-in page, and without a token every page is 401.
func TestBrowserUnauthorisedTokenSeesNothing(t *testing.T) {
	t.Parallel()
	v := startView(t, viewOptions{Token: true, Actions: true})
	nobody := serviceAccountToken(t, v.invNS, "nobody")
	v.waitRun(t, "web", apply.ResultSucceeded)
	v.waitRun(t, "db", apply.ResultFailed)

	t.Run("no rights", func(t *testing.T) {
		tab := newBrowser(t)
		signIn(t, tab, v, nobody)
		waitDOM(t, tab, "an empty list", `!!document.querySelector("#apps") && document.querySelectorAll("#apps tr.app").length === 0`)
		for _, app := range []string{"web", "db"} {
			open(t, tab, appURL(v, app))
			waitDOM(t, tab, "no page for "+app, `document.body.innerText.includes("no such app")`)
			if html := pageHTML(t, tab); strings.Contains(html, v.appNS) || strings.Contains(html, canary) {
				t.Errorf("the page refusing %s tells about it:\n%s", app, html)
			}
		}
	})
	t.Run("invalid token", func(t *testing.T) {
		tab := newBrowser(t)
		signIn(t, tab, v, "not-a-token")
		waitDOM(t, tab, "the sign-in error", `!!document.getElementById("login-error")`)
		open(t, tab, v.url+"/")
		waitDOM(t, tab, "401 without a token", `document.body.innerText.includes("unauthorized")`)
		if strings.Contains(bodyText(t, tab), "web") {
			t.Errorf("the 401 page names an app")
		}
	})
}
