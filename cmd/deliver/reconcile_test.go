package main

import (
	"context"
	"encoding/json"
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
