package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestApplyWindows runs deliver against the real control plane with a
// deny window of app web active now (in Asia/Kolkata, a zone the binary
// carries itself): apply refuses, naming the app, the window and when it
// opens, and writes nothing, not even the other app; diff is not refused
// and notes the hold; apply --ignore-windows applies both.
func TestApplyWindows(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	// Activated a minute ago, for an hour: active for the whole test.
	start := time.Now().In(kolkata).Truncate(time.Minute).Add(-time.Minute)
	until := start.Add(time.Hour).UTC().Format(time.RFC3339)
	// A window of every app that is not active: from 6h on, in UTC.
	later := time.Now().UTC().Add(6 * time.Hour)
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{
		"deliver.yaml": fmt.Sprintf(`apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- {name: web, namespace: %[1]s, manifests: {path: web}}
- {name: api, namespace: %[1]s, manifests: {path: api}}
windows:
- {kind: deny, schedule: "0 %[4]d * * *", duration: 1h}
- {kind: deny, schedule: "%[2]d %[3]d * * *", duration: 1h, timeZone: Asia/Kolkata, apps: [web]}
`, ns, start.Minute(), start.Hour(), later.Hour()),
		"web/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n",
		"api/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata: {color: red}\n",
	})
	base := []string{"--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", ns}
	exists := func(name string) bool {
		_, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
		return err == nil
	}

	out, code := run(t, append([]string{"apply"}, base...)...)
	if code != 1 {
		t.Fatalf("apply in a window: exit %d, want 1:\n%s", code, out)
	}
	note := "held by windows[1] (deny \"" + fmt.Sprintf("%d %d * * *", start.Minute(), start.Hour()) + "\" for 1h0m0s, Asia/Kolkata) until " + until
	held := "app web: " + note
	for _, want := range []string{"held by a change window", held, "--ignore-windows"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply's refusal lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "app api:") {
		t.Errorf("apply's refusal names app api, which no window holds:\n%s", out)
	}
	if exists("web") || exists("api") {
		t.Errorf("apply refused in a window wrote ConfigMaps (web %v, api %v)", exists("web"), exists("api"))
	}
	if s, err := env.Client().CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{}); err != nil || len(s.Items) != 0 {
		t.Errorf("apply refused in a window wrote %d Secrets (inventories) (%v)", len(s.Items), err)
	}

	out, code = run(t, append([]string{"diff"}, base...)...)
	if code != 2 || !strings.Contains(out, "== app web (namespace "+ns+")\n"+note+": apply refuses it\n") {
		t.Errorf("diff in a window: exit %d, want 2 and a note %q:\n%s", code, held, out)
	}
	out, code = run(t, append([]string{"diff", "-o", "json"}, base...)...)
	var got struct {
		Apps []struct{ Name, Held string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 2 {
		t.Fatalf("diff -o json: exit %d, %v:\n%s", code, err, out)
	}
	if len(got.Apps) != 2 || got.Apps[0].Held != note || got.Apps[1].Held != "" {
		t.Errorf("diff -o json: held = %+v", got.Apps)
	}

	out, code = run(t, append([]string{"apply", "--ignore-windows"}, base...)...)
	if code != 0 {
		t.Fatalf("apply --ignore-windows: exit %d:\n%s", code, out)
	}
	if !exists("web") || !exists("api") || !strings.Contains(out, note+": applied with --ignore-windows") {
		t.Errorf("apply --ignore-windows: web %v, api %v:\n%s", exists("web"), exists("api"), out)
	}
}

// TestStatusShowsHeld: deliver reconcile holds the app of an active deny
// window (on the real clock) and delivers the other; deliver status
// shows the hold, the window and its end, in the table and in JSON.
func TestStatusShowsHeld(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns, inv := env.Namespace(t), env.Namespace(t)
	repo, url, root := webRepo(t, ns)
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	schedule := fmt.Sprintf("%d %d * * *", start.Minute(), start.Hour())
	note := fmt.Sprintf("held by windows[0] (deny %q for 1h0m0s, UTC) until %s", schedule, start.Add(time.Hour).Format(time.RFC3339))
	repo.WriteFile("deliver.yaml", fmt.Sprintf(`apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- {name: web, namespace: %[1]s, manifests: {path: web}}
- {name: api, namespace: %[1]s, manifests: {path: api}}
windows:
- {kind: deny, schedule: %[2]q, duration: 1h, apps: [web]}
`, ns, schedule))
	repo.WriteFile("api/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata: {color: red}\n")
	head := repo.CommitAll("windows")
	startReconcile(t, "reconcile", nil, "--repo", url, "--ref", "main", "--interval", "300ms",
		"--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"))
	eventually(t, 30*time.Second, "api delivered and web held in the status ConfigMap", func() bool {
		cm, err := env.Client().CoreV1().ConfigMaps(inv).Get(context.Background(), reconcile.StatusConfigMap, metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["api"], head) && strings.Contains(cm.Data["web"], `"heldUntil"`)
	})
	if color(ns) != "" {
		t.Errorf("web delivered in its deny window: color %q", color(ns))
	}
	out, code := run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 0 {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "web ") {
			row = l
		}
	}
	if !strings.Contains(row, "pending,held") || !strings.Contains(row, note) {
		t.Errorf("status row of web %q, want pending,held and %q:\n%s", row, note, out)
	}
	out, code = run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv, "--app", "web", "-o", "json")
	var got struct {
		Apps []struct {
			Reconciler *reconcile.AppStatus `json:"reconciler"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("status -o json: exit %d, %v:\n%s", code, err, out)
	}
	if len(got.Apps) != 1 || got.Apps[0].Reconciler == nil || got.Apps[0].Reconciler.Held != note || !got.Apps[0].Reconciler.HeldUntil.Equal(start.Add(time.Hour)) {
		t.Errorf("status -o json of web: %+v, want held %q", got.Apps, note)
	}
}

// TestRollbackWindows: a rollback is a change like an apply. With a deny
// window of app web active now in deliver.yaml at the head (and in no
// older revision), deliver rollback refuses, naming the window, and
// writes nothing: no pin, the app's objects as they were; with
// --ignore-windows it pins and applies the previous revision.
func TestRollbackWindows(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns, inv := env.Namespace(t), env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	config := "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: " + ns + ", manifests: {path: web}}\n"
	release := func(r, windows string) string {
		repo.WriteFile("deliver.yaml", config+windows)
		repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {release: \""+r+"\"}\n")
		return repo.CommitAll("release " + r)
	}
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	base := []string{"--repo", url, "--cache-dir", filepath.Join(root, "cache"), "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}
	deliver := func(wantCode int, args ...string) string {
		t.Helper()
		return runExpect(t, wantCode, args, base...)
	}
	state := func() (string, *apply.Pin) {
		t.Helper()
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := env.Client().CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["release"], apply.PinOf(s.Annotations)
	}
	first := release("1", "")
	deliver(0, "apply", "--timeout", "1m")
	release("2", "")
	deliver(0, "apply", "--timeout", "1m")
	// The freeze, at the head only: active from a minute ago for an hour.
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	repo.WriteFile("deliver.yaml", config+fmt.Sprintf("windows:\n- {kind: deny, schedule: \"%d %d * * *\", duration: 1h}\n", start.Minute(), start.Hour()))
	repo.CommitAll("freeze")

	out := deliver(1, "rollback", "web", "--reason", "release 2 is bad", "--timeout", "1m")
	for _, want := range []string{"rollback app web: held by a change window: held by windows[0] (deny", "until " + start.Add(time.Hour).Format(time.RFC3339), "nothing pinned or applied", "--ignore-windows"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback in a window: output lacks %q:\n%s", want, out)
		}
	}
	if r, p := state(); r != "2" || p != nil {
		t.Fatalf("after the refused rollback: release %s, pin %+v; want release 2 and no pin", r, p)
	}

	out = deliver(0, "rollback", "web", "--reason", "release 2 is bad", "--ignore-windows", "--timeout", "1m")
	if !strings.Contains(out, "rolled back app web from") {
		t.Errorf("rollback --ignore-windows:\n%s", out)
	}
	if r, p := state(); r != "1" || p == nil || p.Revision != first {
		t.Errorf("after rollback --ignore-windows: release %s, pin %+v; want release 1 pinned to %s", r, p, first)
	}
}
