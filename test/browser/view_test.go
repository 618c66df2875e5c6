package browser

import (
	"context"
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
	r     *reconcile.Reconciler
	url   string
	appNS string
	invNS string
	red   *secrets.Redactor
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
	vopts := ui.ViewOptions{Reconcile: ropts, Guard: ui.LocalGuard{}, Actions: vo.Actions, ClusterName: "test", PollInterval: 200 * time.Millisecond}
	if vo.Token {
		vopts.Guard = nil // --ui-auth token, as deliver reconcile --ui-addr
	}
	rv, err := ui.NewReconcilerView(vopts)
	if err != nil {
		t.Fatal(err)
	}
	r := rv.Reconcilers()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rv.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	// The Server mounts the token guard's sign-in pages itself.
	hs := httptest.NewServer(rv.Handler())
	t.Cleanup(func() {
		// An open page keeps its event stream: end it, or Close waits
		// for the browser, which the test closes only after.
		hs.CloseClientConnections()
		hs.Close()
	})
	return &view{r: r, url: hs.URL, appNS: appNS, invNS: invNS, red: red}
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
