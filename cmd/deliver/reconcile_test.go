package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestReconcileCommand runs deliver reconcile as a process: it delivers
// the repository, serves probes and metrics, follows a new commit, and
// stops cleanly on SIGTERM.
func TestReconcileCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	repo, url, root := webRepo(t, ns)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := startReconcile(t, "deliver reconcile", nil, "--repo", url, "--ref", "main", "--interval", "300ms",
		"--listen", addr, "--leader-elect", "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"))
	wait := func(what string, cond func() bool) { t.Helper(); eventually(t, 30*time.Second, what, cond) }
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	wait("first apply", func() bool { return color(ns) == "blue" })
	setColor(repo, "green")
	head := repo.CommitAll("green")
	wait("new commit applied", func() bool { return color(ns) == "green" })
	wait("readyz", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, `deliver_reconcile_runs_total{app="web",result="succeeded"}`) {
		t.Errorf("GET /metrics: %d:\n%.1000s", code, body)
	}
	wait("status ConfigMap", func() bool {
		cm, err := env.Client().CoreV1().ConfigMaps(inv).Get(ctx, reconcile.StatusConfigMap, metav1.GetOptions{})
		if err != nil {
			return false
		}
		var st reconcile.AppStatus
		return json.Unmarshal([]byte(cm.Data["web"]), &st) == nil && st.Revision == head
	})

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	// The Lease was released: no holder left for a standby to wait out.
	lease, err := env.Client().CoordinationV1().Leases(inv).Get(ctx, "deliver-reconcile", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %q after SIGTERM", *h)
	}
	for _, want := range []string{`"msg":"leading"`, `"msg":"run succeeded"`} {
		if !strings.Contains(p.logs.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

// TestReconcileOnceCommand: deliver reconcile --once delivers what is due
// and exits 0, or 1 naming the app that failed.
func TestReconcileOnceCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	repo, url, root := webRepo(t, ns)
	once := func() (string, int) {
		return run(t, "reconcile", "--once", "--kubeconfig", env.Kubeconfig, "--repo", url, "--ref", "main",
			"--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"))
	}
	if out, code := once(); code != 0 || color(ns) != "blue" {
		t.Fatalf("first pass: exit %d, color %q:\n%s", code, color(ns), out)
	}
	if out, code := once(); code != 0 || strings.Contains(out, `"msg":"run"`) {
		t.Errorf("no-op pass: exit %d, want 0 without a run:\n%s", code, out)
	}
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: [not, a, string]}\n")
	repo.CommitAll("broken")
	if out, code := once(); code != 1 || !strings.Contains(out, "app web") {
		t.Errorf("pass over a broken commit: exit %d, want 1 naming app web:\n%s", code, out)
	}
}

// TestReconcileOnceSummary: deliver reconcile --once prints a summary
// that lists, besides the counts, the app a deny window active now held
// (which window, until when, the revision it stays at) and the pinned
// app it did not advance to the head; the third app is delivered at the
// head, the held and the pinned ones stay where they were.
func TestReconcileOnceSummary(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	config := "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
		"- {name: web, namespace: " + ns + ", manifests: {path: web}}\n" +
		"- {name: api, namespace: " + ns + ", manifests: {path: api}}\n" +
		"- {name: db, namespace: " + ns + ", manifests: {path: db}}\n"
	release := func(r, windows string) string {
		repo.WriteFile("deliver.yaml", config+windows)
		for _, app := range []string{"web", "api", "db"} {
			repo.WriteFile(app+"/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+app+"}\ndata: {release: \""+r+"\"}\n")
		}
		return repo.CommitAll("release " + r)
	}
	first := release("1", "")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	base := []string{"--kubeconfig", env.Kubeconfig, "--repo", url, "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache")}
	once := func() (string, int) {
		return run(t, append([]string{"reconcile", "--once", "--ref", "main"}, base...)...)
	}
	if out, code := once(); code != 0 || !strings.Contains(out, "revision "+first[:12]+": 3 apps: 3 succeeded, 0 held by a change window, 0 pinned behind the head") {
		t.Fatalf("first pass: exit %d:\n%s", code, out)
	}
	if out, code := run(t, append([]string{"pin", "api", "--revision", first, "--reason", "hold api for the audit"}, base...)...); code != 0 {
		t.Fatalf("pin: exit %d:\n%s", code, out)
	}
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	head := release("2", fmt.Sprintf("windows:\n- {kind: deny, schedule: \"%d %d * * *\", duration: 1h, apps: [web]}\n", start.Minute(), start.Hour()))
	out, code := once()
	if code != 0 {
		t.Fatalf("second pass: exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"revision " + head[:12] + ": 3 apps: 3 succeeded, 1 held by a change window, 1 pinned behind the head",
		"held by a change window, not delivered:\n  web: held by windows[0] (deny",
		"until " + start.Add(time.Hour).Format(time.RFC3339) + " (at " + first[:12] + ")",
		"pinned, not advanced to " + head[:12] + ":\n  api: at " + first[:12] + ", pinned to " + first[:12] + " by ",
		": hold api for the audit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for app, want := range map[string]string{"web": "1", "api": "1", "db": "2"} {
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), app, metav1.GetOptions{})
		if err != nil || cm.Data["release"] != want {
			t.Errorf("%s: release %v (%v), want %s", app, cm.Data, err, want)
		}
	}
}
