package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestSuspend: the annotation on an inventory Secret (Suspend sets it)
// pauses one app (a new commit is not applied) until it is removed
// (Resume); Options.Suspend pauses an app that has no inventory yet,
// which Suspend refuses, naming it.
func TestSuspend(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: paused, namespace: $NS, manifests: {path: paused}}"),
		"web/cm.yaml":    configMap("web", map[string]string{"color": "blue"}),
		"paused/cm.yaml": configMap("paused", map[string]string{"a": "b"}),
	})
	opts := options(t, repo, env.Config)
	opts.Suspend = []string{"paused"}
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	ropts := reconcile.RequestOptions{InventoryNamespace: inv}
	if err := reconcile.Suspend(ctx, env.Client(), []string{"web"}, ropts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "web suspended", func() bool { return appStatus(r, "web").Suspended })

	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	waitFor(t, 10*time.Second, "fetch of the new commit", func() bool { return r.Status().Revision == head })
	time.Sleep(3 * opts.Interval)
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("suspended app applied: color = %s, want blue", got)
	}
	if a := appStatus(r, "paused"); !a.Suspended || a.Revision != "" {
		t.Errorf("app paused by Options.Suspend: %+v, want suspended and never delivered", a)
	}
	if cmData(t, ns, "paused") != nil {
		t.Errorf("app paused by Options.Suspend was applied")
	}

	if err := reconcile.Suspend(ctx, env.Client(), []string{"nosuch", "paused"}, ropts); !errors.Is(err, reconcile.ErrNoInventory) ||
		!strings.Contains(err.Error(), "suspend app nosuch: Secret/"+inv+"/deliver-inventory-nosuch") {
		t.Errorf("Suspend of apps never delivered: %v, want ErrNoInventory naming the Secret", err)
	}
	if err := reconcile.Resume(ctx, env.Client(), []string{"web"}, ropts); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "resumed app applied", func() bool {
		return cmData(t, ns, "web")["color"] == "green" && appStatus(r, "web").Revision == head && !appStatus(r, "web").Suspended
	})
}

// TestEvents: applies, failures and drift are recorded as Events on the
// app's inventory Secret, and a secret value read from Vault never shows
// in one, even when the API server quotes it in an error.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)            // first: skipped with -short before Vault starts
	const canary = "CANARY/ev-7c41e2" // a slash: an invalid label value the server quotes
	v, err := testenv.StartVault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	vc, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.Token)
	if _, err := vc.KVv2("secret").Put(ctx, "ev", map[string]any{"key": canary}); err != nil {
		t.Fatal(err)
	}

	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: leaky, namespace: $NS, manifests: {path: leaky}}"),
		"web/cm.yaml": configMap("web", map[string]string{"color": "blue"}),
		"web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\n" +
			"stringData: {apiKey: \"ref+vault://secret/data/ev#/key\"}\n",
		"leaky/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaky\n" +
			"  labels: {key: \"ref+vault://secret/data/ev#/key\"}\ndata: {a: b}\n",
	})
	opts := options(t, repo, env.Config)
	opts.Pipeline.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.Token}[k]
	}
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })
	waitFor(t, 30*time.Second, "leaky app failed", func() bool { return appStatus(r, "leaky").Failures >= 1 })

	events := func(app string) []corev1.Event {
		list, err := env.Client().CoreV1().Events(inv).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=deliver-inventory-" + app,
		})
		if err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	has := func(app, reason, text string) bool {
		for _, e := range events(app) {
			if e.Reason == reason && strings.Contains(e.Message, text) {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, "Applied event", func() bool { return has("web", reconcile.ReasonApplied, "2 created") })
	waitFor(t, 10*time.Second, "ApplyFailed event", func() bool { return has("leaky", reconcile.ReasonApplyFailed, "Invalid value") })

	// A kubectl edit: DriftDetected, then Applied with the revert.
	patch := []byte(`{"data":{"color":"red"}}`)
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "DriftDetected and revert events", func() bool {
		return has("web", reconcile.ReasonDriftDetected, "ConfigMap/"+ns+"/web") && has("web", reconcile.ReasonApplied, "1 configured")
	})

	// The Events name the inventory Secret exactly (with its UID), so
	// kubectl describe shows them.
	secret, err := env.Client().CoreV1().Secrets(inv).Get(ctx, "deliver-inventory-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events("web") {
		if e.InvolvedObject.UID != secret.UID || e.Source.Component != "deliver-reconcile" {
			t.Errorf("event %s: involved object %+v, source %+v; want the inventory Secret's UID %s", e.Reason, e.InvolvedObject, e.Source, secret.UID)
		}
	}
	all, err := env.Client().CoreV1().Events(inv).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all.Items {
		if strings.Contains(e.Message, canary) || strings.Contains(e.Message, "ev-7c41e2") {
			t.Errorf("event %s leaks the secret value: %s", e.Reason, e.Message)
		}
	}
	if a := appStatus(r, "leaky"); a.Result != apply.ResultFailed || strings.Contains(a.Message, "ev-7c41e2") {
		t.Errorf("leaky status = %+v, want failed without the secret value", a)
	}
}

// TestSuspendInGit: suspend: true in deliver.yaml pauses an app from git.
// (First, the same app suspended in the cluster holds back a dependent
// even when it is itself at the commit.) A reconcile --once pass at the commit that suspends db and changes
// every app delivers web only; db is not run (its broken file fails
// nothing) and reports suspended, api, which depends on it, waits saying
// so, and the pass succeeds: that is what suspension asks for. The pass
// at the commit that resumes db delivers both.
func TestSuspendInGit(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	yaml := func(dbExtra string) string {
		return deliverYAML(ns,
			"- {name: db, namespace: $NS, manifests: {path: db}"+dbExtra+"}",
			"- {name: api, namespace: $NS, manifests: {path: api}, dependsOn: [db]}",
			"- {name: web, namespace: $NS, manifests: {path: web}}")
	}
	files := map[string]string{"deliver.yaml": yaml("")}
	apps := []string{"db", "api", "web"}
	for _, app := range apps {
		files[app+"/cm.yaml"] = configMap(app, map[string]string{"v": "one"})
	}
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	opts.Once = true
	once := func(what string) *reconcile.Reconciler {
		t.Helper()
		r, err := runPass(t, opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return r
	}
	once("first pass")

	// db suspended in the cluster, a commit that changes api only: db is
	// at the commit (its inputs did not change), and api waits all the
	// same, as a Flux Kustomization waits for a suspended dependency.
	ropts := reconcile.RequestOptions{InventoryNamespace: opts.Pipeline.Apply.InventoryNamespace}
	if err := reconcile.Suspend(context.Background(), env.Client(), []string{"db"}, ropts); err != nil {
		t.Fatal(err)
	}
	repo.WriteFile("api/cm.yaml", configMap("api", map[string]string{"v": "annotated"}))
	repo.CommitAll("api only")
	if r := once("pass with db suspended in the cluster"); !strings.Contains(appStatus(r, "api").Message, "suspended") {
		t.Errorf("api: %+v, want waiting for db, suspended", appStatus(r, "api"))
	}
	if got := cmData(t, ns, "api")["v"]; got != "one" {
		t.Errorf("db suspended in the cluster: api v = %q, want one", got)
	}
	if err := reconcile.Resume(context.Background(), env.Client(), []string{"db"}, ropts); err != nil {
		t.Fatal(err)
	}

	repo.WriteFile("deliver.yaml", yaml(", suspend: true"))
	for _, app := range apps {
		repo.WriteFile(app+"/cm.yaml", configMap(app, map[string]string{"v": "two"}))
	}
	repo.WriteFile("db/broken.yaml", "kind: [not, an, object\n")
	head := repo.CommitAll("suspend db, change everything")
	r := once("pass with db suspended")
	for app, want := range map[string]string{"db": "one", "api": "one", "web": "two"} {
		if got := cmData(t, ns, app)["v"]; got != want {
			t.Errorf("db suspended: %s v = %q, want %q", app, got, want)
		}
	}
	if a := appStatus(r, "db"); !a.Suspended || a.Revision == head {
		t.Errorf("db: %+v, want suspended, not at %s", a, head)
	}
	if a := appStatus(r, "api"); a.Result != reconcile.ResultWaiting || !strings.Contains(a.Message, "db") || !strings.Contains(a.Message, "suspended") {
		t.Errorf("api: result %s message %q, want waiting for db, suspended", a.Result, a.Message)
	}
	if a := appStatus(r, "web"); a.Revision != head || a.Result != apply.ResultSucceeded {
		t.Errorf("web: %+v, want succeeded at %s", a, head)
	}

	repo.WriteFile("deliver.yaml", yaml(""))
	repo.Git("rm", "-q", "db/broken.yaml")
	repo.CommitAll("resume db")
	once("pass after resume")
	for _, app := range apps {
		if got := cmData(t, ns, app)["v"]; got != "two" {
			t.Errorf("after resume: %s v = %q, want two", app, got)
		}
	}
}
