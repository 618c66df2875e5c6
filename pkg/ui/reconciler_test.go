package ui_test

import (
	"context"
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
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/ui"
)

// TestReconcilerViewTwoClusters: one reconciler delivers environment a
// to its own cluster, b to a second control plane (its kubeconfig
// Secret) and c to a cluster that does not answer, and serves one view
// of them with --ui-auth token. The page of all apps lists a's and b's
// web, and names c's cluster problem instead of going blank; each app's
// page shows the objects of its own cluster (only-b exists in b's
// alone); a pin through the view lands on b's inventory in the second
// cluster and not on a's; and a user whose token the reconciler's cluster
// authenticates, allowed to get the inventories in the second cluster
// only, sees b's web and not a's: the SubjectAccessReview is asked of the
// cluster holding the inventory. A standby replica's view shows the same
// apps and objects. When the second cluster's API server stops, the page
// still lists a's web and names b's problem.
func TestReconcilerViewTwoClusters(t *testing.T) {
	second := testenv.StartSecond(t, false)
	ctx := context.Background()
	kc1, kc2 := env.Client(), second.Client()
	ns, inv := env.Namespace(t), env.Namespace(t)
	for _, name := range []string{ns, inv} {
		if _, err := kc2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kcB, err := second.KubeconfigFor("cluster-2")
	if err != nil {
		t.Fatal(err)
	}
	kcC, err := env.UnreachableKubeconfig("gone")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"cluster-b": kcB, "cluster-c": kcC} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: inv}, Data: map[string][]byte{"value": data}}
		if _, err := kc1.CoreV1().Secrets(inv).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"environments:\n  a: {}\n  b:\n    kubeconfigSecret: {name: cluster-b}\n    apps:\n      web: {path: web-b}\n  c:\n    kubeconfigSecret: {name: cluster-c}\n")
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n")
	repo.WriteFile("web-b/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	repo.WriteFile("web-b/only-b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-b}\ndata: {here: b}\n")
	repo.CommitAll("first")
	repoURL := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")

	// startView starts a replica (leader election on, as in the
	// Deployment) and its view; the returned func stops both.
	startView := func(replica string) (*ui.ReconcilerView, *httptest.Server, func()) {
		t.Helper()
		rv, err := ui.NewReconcilerView(ui.ViewOptions{
			Reconcile: reconcile.Options{
				Pipeline: pipeline.Options{Repo: repoURL, Ref: "main", CacheDir: filepath.Join(root, "cache-"+replica), Apply: apply.Options{InventoryNamespace: inv}},
				Config:   env.Config, Interval: 300 * time.Millisecond, RetryBase: time.Second, RetryMax: 5 * time.Second,
				LeaderElection: reconcile.LeaderElection{Enabled: true, Identity: replica},
			},
			Environments: []string{"a", "b", "c"}, Auth: ui.ViewAuthToken, Actions: true, PollInterval: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(rv.Handler())
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rv.Run(runCtx, nil) }()
		var once sync.Once
		end := func() { once.Do(func() { hs.CloseClientConnections(); hs.Close(); stop(); <-done }) }
		t.Cleanup(end)
		return rv, hs, end
	}
	rv, hs, _ := startView("leader")

	// operator may get and patch the inventories in both clusters; viewer
	// may get them in the second only. Both are ServiceAccounts of the
	// reconciler's cluster, which authenticates their tokens.
	token := func(sa string) string {
		t.Helper()
		tr, err := kc1.CoreV1().ServiceAccounts(inv).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	operator, viewer := env.ServiceAccount(t, inv, "operator"), env.ServiceAccount(t, inv, "viewer")
	env.Grant(t, inv, inv, "operator", []string{"get", "patch"}, "secrets")
	second.Grant(t, inv, inv, "operator", []string{"get", "patch"}, "secrets")
	second.Grant(t, inv, inv, "viewer", []string{"get"}, "secrets")
	env.WaitAllowed(t, operator, "patch", "secrets", inv, true)
	second.WaitAllowed(t, operator, "patch", "secrets", inv, true)
	second.WaitAllowed(t, viewer, "get", "secrets", inv, true)
	opToken, viewToken := token("operator"), token("viewer")

	doOn := func(hs *httptest.Server, method, path, tok string, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, hs.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", hs.URL)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	do := func(method, path, tok string, form url.Values) (int, string) {
		t.Helper()
		return doOn(hs, method, path, tok, form)
	}
	delivered := func(kc kubernetes.Interface, color string) bool {
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && cm.Data["color"] == color
	}
	testenv.Eventually(t, 90*time.Second, time.Second/4, "web delivered to both clusters", func() bool {
		return delivered(kc1, "blue") && delivered(kc2, "green")
	})

	rowRE := func(env string) *regexp.Regexp {
		return regexp.MustCompile(`<tr class="app" data-name="web" data-env="` + env + `"[^>]*>\s*<td>` + env + `</td>`)
	}
	var page string
	testenv.Eventually(t, 60*time.Second, time.Second/4, "both environments' web succeeded on the page, c's problem named", func() bool {
		var code int
		code, page = do(http.MethodGet, "/", opToken, nil)
		return code == http.StatusOK && rowRE("a").MatchString(page) && rowRE("b").MatchString(page) &&
			strings.Count(page, `r-succeeded`) >= 2 && strings.Contains(page, `class="problem">environment c: `)
	})
	if !regexp.MustCompile(`data-env="b"[^>]*>\s*<td>b</td>\s*<td><a[^>]*>web</a></td>\s*<td>Secret ` + regexp.QuoteMeta(inv+"/cluster-b")).MatchString(page) {
		t.Errorf("b's row does not name its cluster %s/cluster-b:\n%s", inv, page)
	}

	// Each app page reads its own cluster.
	onlyB := regexp.MustCompile(`class="object s-Current" data-id="ConfigMap/` + ns + `/only-b"`)
	_, pageB := do(http.MethodGet, "/apps/b/web", opToken, nil)
	if !onlyB.MatchString(pageB) || !strings.Contains(pageB, `data-id="ConfigMap/`+ns+`/web"`) {
		t.Errorf("b's web page does not show only-b as current in the second cluster:\n%s", pageB)
	}
	_, pageA := do(http.MethodGet, "/apps/a/web", opToken, nil)
	if strings.Contains(pageA, "only-b") || !strings.Contains(pageA, `class="object s-Current" data-id="ConfigMap/`+ns+`/web"`) {
		t.Errorf("a's web page does not show its own cluster's objects alone:\n%s", pageA)
	}
	// c's cluster never answered: its page is its status and the reason.
	if code, pageC := do(http.MethodGet, "/apps/c/web", opToken, nil); code != http.StatusNotFound {
		t.Errorf("GET /apps/c/web = %d (c's inventories cannot be checked, so a token user may not see it):\n%s", code, pageC)
	}

	// A standby replica's view: its engines run no app (the leader's
	// hold each environment's Lease), so it reads the apps from the
	// status ConfigMaps the leader writes, and each app's objects in the
	// environment's own cluster, as the leader's view does.
	standby, shs, stopStandby := startView("standby")
	testenv.Eventually(t, 60*time.Second, time.Second/4, "both environments' web succeeded on the standby's page", func() bool {
		code, page := doOn(shs, http.MethodGet, "/", opToken, nil)
		return code == http.StatusOK && rowRE("a").MatchString(page) && rowRE("b").MatchString(page) &&
			strings.Count(page, `r-succeeded`) >= 2 && strings.Contains(page, `class="problem">environment c: `)
	})
	if code, page := doOn(shs, http.MethodGet, "/apps/b/web", opToken, nil); code != http.StatusOK || !onlyB.MatchString(page) {
		t.Errorf("the standby's page of b's web (%d) does not show only-b as current in the second cluster:\n%s", code, page)
	}
	for i, st := range standby.Statuses() {
		if st.Leader {
			t.Errorf("the standby leads environment %d: the test meant it to stand by", i)
		}
	}
	for i, st := range rv.Statuses()[:2] {
		if !st.Leader {
			t.Errorf("the first replica does not lead environment %d", i)
		}
	}
	stopStandby()

	// Pin b's web through the view: the second cluster's inventory.
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(pageB)
	if csrf == nil {
		t.Fatalf("b's web page has no action form:\n%s", pageB)
	}
	if code, body := do(http.MethodPost, "/apps/b/web/pin", opToken, url.Values{"csrf": {csrf[1]}, "reason": {"hold b"}}); code != http.StatusOK || !strings.Contains(body, "done: pin") {
		t.Fatalf("pin b's web = %d:\n%s", code, body)
	}
	pinIn := func(kc kubernetes.Interface) *apply.Pin {
		t.Helper()
		s, err := kc.CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return apply.PinOf(s.Annotations)
	}
	if p := pinIn(kc2); p == nil || p.Reason != "hold b" || p.By != operator {
		t.Errorf("the second cluster's inventory of web has pin %+v, want one by %s: hold b", p, operator)
	}
	if p := pinIn(kc1); p != nil {
		t.Errorf("pinning b's web pinned a's, in the reconciler's cluster: %+v", p)
	}

	// viewer may get the inventories of the second cluster only.
	code, vpage := do(http.MethodGet, "/", viewToken, nil)
	if code != http.StatusOK || !rowRE("b").MatchString(vpage) || rowRE("a").MatchString(vpage) {
		t.Errorf("viewer's page of all apps = %d, want b's web and not a's:\n%s", code, vpage)
	}
	if code, _ := do(http.MethodGet, "/apps/a/web", viewToken, nil); code != http.StatusNotFound {
		t.Errorf("viewer GET /apps/a/web = %d, want 404", code)
	}
	if code, _ := do(http.MethodGet, "/apps/b/web", viewToken, nil); code != http.StatusOK {
		t.Errorf("viewer GET /apps/b/web = %d, want 200", code)
	}

	// The second cluster goes away: a's web stays, b's problem is named.
	second.StopAPIServer()
	testenv.Eventually(t, 60*time.Second, time.Second/4, "b's problem named, a's web still listed", func() bool {
		code, page := do(http.MethodGet, "/", opToken, nil)
		return code == http.StatusOK && rowRE("a").MatchString(page) && strings.Contains(page, `class="problem">environment b: `)
	})
}
