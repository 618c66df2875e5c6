package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
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
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n")
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n")
	repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(deliverBin, "reconcile", "--repo", url, "--ref", "main", "--interval", "300ms",
		"--listen", addr, "--leader-elect", "--inventory-namespace", inv,
		"--cache-dir", filepath.Join(root, "cache"), "--kubeconfig", env.Kubeconfig)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("deliver reconcile output:\n%s", logs.String())
		}
	}()

	color := func() string {
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["color"]
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	wait("first apply", func() bool { return color() == "blue" })
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	head := repo.CommitAll("green")
	wait("new commit applied", func() bool { return color() == "green" })
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("deliver reconcile did not stop within 20s of SIGTERM")
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
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
}
