package browser

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/ui"
)

// canary is the value of a Secret the app web delivers: no page may show
// it.
const canary = "canary-browser-5d1e8b7a93"

// appsRepo is a repository with two apps in ns: web (a ConfigMap, a
// Secret holding canary, a Deployment) and db, whose pre-apply migration
// Job fails (its Pod carries testenv.FailLabel, which kwok ends with exit
// code 1).
func appsRepo(t *testing.T, ns string) (repoURL, cacheDir string) {
	t.Helper()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	files := testenv.ViewApps(ns, canary, "")
	for name, content := range files {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("first")
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{})
	return srv.RepoURL("deploy"), filepath.Join(root, "cache")
}

// viewOptions say how startView wires the view.
type viewOptions struct {
	// Token makes the view the in-cluster one: a TokenGuard, with the
	// sign-in page mounted. Default: LocalGuard, as `deliver ui`.
	Token bool
	// Actions turns the guarded buttons on.
	Actions bool
	// NoSelfHeal keeps a drift in place, so the page can show it.
	NoSelfHeal bool
}

// view is a running reconciler of appsRepo and the web view it serves,
// wired as `deliver reconcile` wires them: the view reads the
// reconciler's memory and publishes its runs.
type view struct {
	r      *reconcile.Reconciler
	url    string
	appNS  string
	invNS  string
	red    *secrets.Redactor
	source *ui.Cluster
}

func startView(t *testing.T, vo viewOptions) *view {
	t.Helper()
	appNS, invNS := env.Namespace(t), env.Namespace(t)
	repoURL, cache := appsRepo(t, appNS)
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	ropts := reconcile.Options{
		Pipeline: pipeline.Options{
			Repo: repoURL, Ref: "main", CacheDir: cache, Redactor: red,
			Apply: apply.Options{InventoryNamespace: invNS},
		},
		Config:          env.Config,
		Interval:        300 * time.Millisecond,
		RetryBase:       time.Minute, // db fails once and stays failed during the test
		RetryMax:        time.Minute,
		DriftSettle:     200 * time.Millisecond,
		DisableSelfHeal: vo.NoSelfHeal,
	}
	var srv *ui.Server
	ropts.OnRun = func(e reconcile.RunEvent) { srv.ReconcilerHook("", invNS)(e) }
	r, err := reconcile.New(ropts)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: invNS, ClusterName: "test", Live: r.Status})
	if err != nil {
		t.Fatal(err)
	}
	var guard ui.Guard = ui.LocalGuard{}
	var login ui.LoginGuard
	if vo.Token {
		g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: env.Client()})
		if err != nil {
			t.Fatal(err)
		}
		guard, login = g, g
	}
	uopts := ui.Options{Guard: guard, Source: src, Redactor: red, PollInterval: 200 * time.Millisecond}
	if vo.Actions {
		uopts.Actions = src
	}
	srv, err = ui.New(uopts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	go srv.Watch(ctx)
	t.Cleanup(func() { cancel(); <-done })

	mux := http.NewServeMux()
	if login != nil {
		mux.Handle(ui.LoginPath, login.LoginHandler())
		mux.Handle(ui.LogoutPath, login.LogoutHandler())
	}
	mux.Handle("/", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		// An open page keeps its event stream: end it, or Close waits
		// for the browser, which the test closes only after.
		hs.CloseClientConnections()
		hs.Close()
	})
	return &view{r: r, url: hs.URL, appNS: appNS, invNS: invNS, red: red, source: src}
}

// waitRun waits until the reconciler reports app's run ended with result.
func (v *view) waitRun(t *testing.T, app, result string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, 100*time.Millisecond, "app "+app+" "+result, func() bool {
		for _, a := range v.r.Status().Apps {
			if a.App == app {
				return a.Result == result
			}
		}
		return false
	})
}
