package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestExamplePin runs examples/pin from a git repository against the real
// control plane as its README says: release 1.0 is delivered, then a bad
// 1.1; deliver rollback pins the app to 1.0's commit and applies it at
// once, the migration hook of 1.0 run again; status shows the pin, who
// set it, when and why; a second rollback finds nothing older; a pin of
// an unknown revision fails naming it; unpin removes the pin; an apply of
// another revision than the pin's is refused.
func TestExamplePin(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	inv := env.Namespace(t)
	const ns = "pin-demo"
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	if out, err := exec.Command("cp", "-r", "../../examples/pin/.", repo.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v %s", err, out)
	}
	good := repo.CommitAll("release 1.0")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	source := []string{"--repo", url, "--cache-dir", filepath.Join(root, "cache"), "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}
	deliver := func(wantCode int, args ...string) string {
		t.Helper()
		return runExpect(t, wantCode, args, source...)
	}
	has := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	release := func() (config, image, migration string) {
		t.Helper()
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j, err := env.Client().BatchV1().Jobs(ns).Get(ctx, "web-migrate", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["release"], d.Spec.Template.Spec.Containers[0].Image, strings.Join(j.Spec.Template.Spec.Containers[0].Args, " ")
	}
	hookRan := "hook Job/" + ns + "/web-migrate (pre-apply) hook-ran"

	has(deliver(0, "apply", "--timeout", "1m"), hookRan)
	for _, f := range []string{"web/config.yaml", "web/deployment.yaml", "web/migrate.yaml"} {
		data, err := os.ReadFile(filepath.Join(repo.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		repo.WriteFile(f, strings.ReplaceAll(string(data), "1.0", "1.1"))
	}
	bad := repo.CommitAll("release 1.1")
	has(deliver(0, "apply", "--timeout", "1m"), hookRan)
	if c, i, m := release(); c != "1.1" || i != "registry.example/web:1.1" || m != "migrate --to 1.1" {
		t.Fatalf("after 1.1: release %s, image %s, migration %q", c, i, m)
	}

	out := deliver(0, "rollback", "web", "--reason", "1.1 returns 500s, INC-1234", "--timeout", "1m")
	has(out, "rolled back app web from "+bad[:12]+" to "+good[:12], "pinned by ", "1.1 returns 500s, INC-1234",
		hookRan, "ConfigMap/"+ns+"/web-config configured", "Deployment/"+ns+"/web configured")
	if c, i, m := release(); c != "1.0" || i != "registry.example/web:1.0" || m != "migrate --to 1.0" {
		t.Errorf("after the rollback: release %s, image %s, migration %q; want 1.0's", c, i, m)
	}
	secret, err := env.Client().CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := apply.PinOf(secret.Annotations)
	if p == nil || p.Revision != good || p.By == "" || p.At.IsZero() || p.Reason != "1.1 returns 500s, INC-1234" {
		t.Fatalf("pin on the inventory Secret: %+v; want %s with who, when and why", p, good)
	}

	status, code := run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 0 {
		t.Fatalf("status: exit %d:\n%s", code, status)
	}
	has(status, "web pinned to "+good[:12]+" by "+p.By+" at "+p.At.UTC().Format("2006-01-02T15:04:05Z")+": 1.1 returns 500s, INC-1234")
	js, code := run(t, "status", "-o", "json", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	var sv statusView
	if code != 0 || json.Unmarshal([]byte(js), &sv) != nil || len(sv.Apps) != 1 || sv.Apps[0].Pin == nil || sv.Apps[0].Pin.Revision != good {
		t.Errorf("status -o json: exit %d, want app web with its pin:\n%s", code, js)
	}

	// 1.0 is the oldest revision in the history: nothing before it.
	has(deliver(1, "rollback", "web", "--reason", "again"), "app web at "+good[:12]+": no previous successful revision")
	has(deliver(1, "pin", "web", "--revision", "no-such-branch", "--reason", "x"), `app web: revision "no-such-branch" not found`)
	has(deliver(1, "pin", "web", "--revision", bad[:10]), `required flag(s) "reason" not set`)

	out, code = run(t, "unpin", "web", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 0 || !strings.Contains(out, "unpinned app web (was pinned to "+good[:12]+")") {
		t.Fatalf("unpin: exit %d:\n%s", code, out)
	}
	status, _ = run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if strings.Contains(status, "pinned to") {
		t.Errorf("status after unpin still shows a pin:\n%s", status)
	}
	// Pinned again, to the bad revision by its abbreviated SHA (the full
	// SHA is recorded), as another user: who is the API server's answer,
	// the impersonated user, not the kubeconfig's.
	has(deliver(0, "pin", "web", "--revision", bad[:10], "--reason", "test", "--as", "alice@example.com", "--as-group", "system:masters"),
		"pinned app web to "+bad, "pinned by alice@example.com at ")
	// CI applying a newer revision of a pinned app is refused.
	repo.WriteFile("web/config.yaml", strings.ReplaceAll(readFile(t, filepath.Join(repo.Dir, "web/config.yaml")), "1.1", "1.2"))
	repo.CommitAll("release 1.2")
	has(deliver(1, "apply", "--timeout", "1m"), "pinned to "+bad[:12]+" by alice@example.com", "deliver unpin web first")
	if c, _, _ := release(); c != "1.0" {
		t.Errorf("release %s after the refused apply, want 1.0 still", c)
	}

	// Still pinned: a commit that brings web's files back to what the
	// rollback delivered (1.0) and adds another app. The apply finds web
	// unchanged (its inputs those its inventory records, its objects as
	// left), writes nothing of it and passes; the other app is delivered.
	repo.Git("checkout", good, "--", "web/")
	repo.WriteFile("deliver.yaml", readFile(t, filepath.Join(repo.Dir, "deliver.yaml"))+"  - name: other\n    namespace: pin-demo\n    manifests: {path: other}\n")
	repo.WriteFile("other/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {k: v}\n")
	repo.CommitAll("web back to 1.0, another app")
	out = deliver(0, "apply", "--timeout", "1m")
	has(out, unchangedNote, "ConfigMap/"+ns+"/other created")
	if strings.Contains(out, "Deployment/"+ns+"/web configured") || strings.Contains(out, "pinned to") {
		t.Errorf("the unchanged pinned app was written or refused:\n%s", out)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{}); err != nil {
		t.Errorf("the other app of the run: %v", err)
	}

	// unpin finds the app through deliver.yaml's environment even when the
	// app is no longer in it.
	repo.WriteFile("deliver.yaml", strings.Replace(readFile(t, filepath.Join(repo.Dir, "deliver.yaml")), "  - name: web\n    namespace: pin-demo\n    manifests: {path: web}\n", "", 1))
	repo.CommitAll("web leaves deliver.yaml")
	has(deliver(0, "unpin", "web"), "unpinned app web (was pinned to "+bad[:12]+")")
	if p := pinOf(t, inv, "web"); p != nil {
		t.Errorf("pin after unpin of an app gone from deliver.yaml: %+v", p)
	}
}

// pinOf returns the pin on app's inventory Secret in inv, nil without one.
func pinOf(t *testing.T, inv, app string) *apply.Pin {
	t.Helper()
	s, err := env.Client().CoreV1().Secrets(inv).Get(context.Background(), apply.InventoryName(app), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return apply.PinOf(s.Annotations)
}

// TestRollbackApplyFailsKeepsPin: a rollback whose apply fails (here a
// ResourceQuota refuses the ConfigMap the older revision had and the
// newer one pruned) exits 1 saying the app is pinned but the apply
// failed; the pin stays on the inventory, so that the reconciler retries
// that revision instead of delivering the newer one.
func TestRollbackApplyFailsKeepsPin(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns, inv := env.Namespace(t), env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	cm := func(name, release string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {release: \"" + release + "\"}\n"
	}
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n")
	repo.WriteFile("web/config.yaml", cm("web-config", "1.0"))
	repo.WriteFile("web/legacy.yaml", cm("web-legacy", "1.0"))
	good := repo.CommitAll("release 1.0")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	source := []string{"--repo", url, "--cache-dir", filepath.Join(root, "cache"), "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}
	deliver := func(wantCode int, args ...string) string {
		t.Helper()
		return runExpect(t, wantCode, args, source...)
	}
	deliver(0, "apply", "--timeout", "1m")
	repo.WriteFile("web/config.yaml", cm("web-config", "1.1"))
	if err := os.Remove(filepath.Join(repo.Dir, "web/legacy.yaml")); err != nil {
		t.Fatal(err)
	}
	repo.CommitAll("release 1.1")
	deliver(0, "apply", "--timeout", "1m")

	// Room for the ConfigMaps there are, none for the one the rollback
	// brings back.
	cms, err := env.Client().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/configmaps": *resource.NewQuantity(int64(len(cms.Items)), resource.DecimalSI)}}}
	if _, err := env.Client().CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, 100*time.Millisecond, "the quota's usage counted", func() bool {
		q, err := env.Client().CoreV1().ResourceQuotas(ns).Get(ctx, "configmaps", metav1.GetOptions{})
		return err == nil && q.Status.Used != nil
	})

	out := deliver(1, "rollback", "web", "--reason", "1.1 is broken", "--timeout", "1m")
	for _, want := range []string{"rollback app web to " + good[:12] + ": pinned, but the apply failed", "ConfigMap/" + ns + "/web-legacy", "exceeded quota"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback output lacks %q:\n%s", want, out)
		}
	}
	if p := pinOf(t, inv, "web"); p == nil || p.Revision != good || p.Reason != "1.1 is broken" {
		t.Errorf("pin after the failed rollback: %+v, want it at %s", p, good)
	}
}
