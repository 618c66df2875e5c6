package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/ui"
)

// reconcilerView is a reconciler of repoURL delivering into invNS and the
// view it serves, as `deliver reconcile --ui-addr` wires them; stop ends
// the reconciler (a restart starts another on the same inventories).
type reconcilerView struct {
	r    *reconcile.Reconciler
	base string
	stop func()
}

func startReconcilerView(t *testing.T, repoURL, invNS string) *reconcilerView {
	t.Helper()
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	ropts := reconcile.Options{
		Pipeline: pipeline.Options{
			Repo: repoURL, Ref: "main", CacheDir: filepath.Join(t.TempDir(), "cache"), Redactor: red,
			Apply: apply.Options{InventoryNamespace: invNS},
		},
		Config:      env.Config,
		Interval:    300 * time.Millisecond,
		RetryBase:   time.Minute,
		RetryMax:    time.Minute,
		DriftSettle: 200 * time.Millisecond,
	}
	rv, err := ui.NewReconcilerView(ui.ViewOptions{Reconcile: ropts, Guard: ui.LocalGuard{}, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := rv.Reconcilers()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rv.Run(ctx, nil) }()
	hs := httptest.NewServer(rv.Handler())
	stop := func() { cancel(); <-done; hs.Close() }
	t.Cleanup(stop)
	var once bool
	return &reconcilerView{r: r, base: hs.URL, stop: func() {
		if !once {
			once = true
			stop()
		}
	}}
}

// localView is `deliver ui`'s view of invNS: ui.NewCluster without Live.
func localView(t *testing.T, invNS string) string {
	t.Helper()
	src, err := ui.NewCluster(ui.ClusterOptions{Config: env.Config, InventoryNamespace: invNS})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ui.New(ui.Options{Guard: ui.LocalGuard{}, Source: src, PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// planOf is the "last plan" section of the page of app at base.
func planOf(t *testing.T, base, app string) string {
	t.Helper()
	code, page := get(t, base, "/apps/_/"+app)
	if code != http.StatusOK {
		t.Fatalf("GET /apps/_/%s = %d:\n%s", app, code, page)
	}
	_, after, _ := strings.Cut(page, `<section id="plan">`)
	plan, _, _ := strings.Cut(after, "</section>")
	return plan
}

// TestStoredPlanView: the last plan that changed an app survives the
// process that made it. `deliver ui` (a view without the reconciler's
// memory) shows the plan of the reconciler's run from the inventory
// Secret, saying so; the reconciler's own view shows its run's, from its
// memory; a restarted reconciler's view shows the plan from before the
// restart, from the inventory; the next change replaces it in both views,
// and the newer plan of the reconciler's memory wins on its view. An
// inventory without the plan key (an older deliver's) shows no plan and
// the rest of the page. No plan shows the Secret's value.
func TestStoredPlanView(t *testing.T) {
	t.Parallel()
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns, invNS := env.Namespace(t), env.Namespace(t)
	repo, repoURL, _ := appsRepo(t, ns)
	first := repo.Head()
	rv := startReconcilerView(t, repoURL, invNS)
	testenv.Eventually(t, 90*time.Second, time.Second/4, "web delivered and db failed", func() bool {
		return appStatus(rv.r, "web").Result == apply.ResultSucceeded && appStatus(rv.r, "db").Result == apply.ResultFailed
	})
	local := localView(t, invNS)
	where := invNS + "/" + apply.InventoryName("web")
	createWeb := regexp.MustCompile(`(?s)revision ` + first[:12] + `, [^:]* ago \(succeeded\): [0-9] to create.*create ConfigMap/` + ns + `/web.*color: blue`)

	// The reconciler's view: its own run, from its memory.
	if plan := planOf(t, rv.base, "web"); !createWeb.MatchString(plan) || !strings.Contains(plan, "from this reconciler&#39;s run") {
		t.Errorf("the reconciler's view of web's plan:\n%s", plan)
	}
	// `deliver ui`: the same run's plan, from the inventory Secret.
	plan := planOf(t, local, "web")
	if !createWeb.MatchString(plan) || !strings.Contains(plan, "from the inventory Secret "+where+", run ended ") {
		t.Errorf("deliver ui's view of web's plan:\n%s", plan)
	}
	if !strings.Contains(plan, "create Secret/"+ns+"/web") || strings.Contains(plan, canary) {
		t.Errorf("deliver ui's view of web's plan does not show the Secret masked:\n%s", plan)
	}
	// db's migration failed: the plan of what its run tried to change.
	if plan := planOf(t, local, "db"); !strings.Contains(plan, "(failed)") || !strings.Contains(plan, "from the inventory Secret") {
		t.Errorf("deliver ui's view of db's failed run's plan:\n%s", plan)
	}

	// db's inventory as an older deliver left it, without the plan key:
	// the page says no plan is stored and shows the rest.
	nullPlan := []byte(`{"data":{"plan.json.gz":null}}`)
	if _, err := env.Client().CoreV1().Secrets(invNS).Patch(context.Background(), apply.InventoryName("db"), types.MergePatchType, nullPlan, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, page := get(t, local, "/apps/_/db"); code != http.StatusOK || !strings.Contains(page, "no plan stored") || !strings.Contains(page, `class="result r-failed">failed</td>`) || strings.Contains(page, `class="problem"`) {
		t.Errorf("deliver ui's page of db without a stored plan (HTTP %d):\n%s", code, page)
	}

	// A restart: the new reconciler has made no run that changed web;
	// its view shows the plan from before the restart.
	rv.stop()
	rv2 := startReconcilerView(t, repoURL, invNS)
	testenv.Eventually(t, 60*time.Second, time.Second/4, "the restarted reconciler's look at web", func() bool {
		a := appStatus(rv2.r, "web")
		return a.Result == apply.ResultSucceeded && a.Revision == first
	})
	if plan := planOf(t, rv2.base, "web"); !createWeb.MatchString(plan) || !strings.Contains(plan, "from the inventory Secret "+where) {
		t.Errorf("the restarted reconciler's view of web's plan:\n%s", plan)
	}

	// The next change replaces it: the restarted reconciler shows its
	// own run's, `deliver ui` the one stored by it.
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	head := repo.CommitAll("green")
	testenv.Eventually(t, 60*time.Second, time.Second/4, "web at "+head, func() bool {
		a := appStatus(rv2.r, "web")
		return a.Result == apply.ResultSucceeded && a.Revision == head
	})
	updateWeb := regexp.MustCompile(`(?s)revision ` + head[:12] + `, [^:]* ago \(succeeded\): 0 to create, 1 to change, 0 to delete.*update ConfigMap/` + ns + `/web.*-  color: blue\n&#43;  color: green`) // + is escaped in the page
	if _, ok := testenv.Until(30*time.Second, time.Second/4, func() bool {
		plan := planOf(t, rv2.base, "web")
		return updateWeb.MatchString(plan) && strings.Contains(plan, "from this reconciler&#39;s run")
	}); !ok {
		t.Errorf("the restarted reconciler's view of web's plan after the change:\n%s", planOf(t, rv2.base, "web"))
	}
	if plan := planOf(t, local, "web"); !updateWeb.MatchString(plan) || !strings.Contains(plan, "from the inventory Secret") {
		t.Errorf("deliver ui's view of web's plan after the change:\n%s", plan)
	}
}
