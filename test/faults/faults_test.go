// Package faults kills real processes in the middle of an apply — the
// kube-apiserver, and deliver itself with SIGTERM and SIGKILL — and checks
// that deliver fails loudly, that the inventory still covers every object
// it created, and that the next run converges without orphans.
package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

var (
	env        *testenv.Cluster
	deliverBin string
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunE2E(m, &env, testenv.E2EOptions{Deliver: &deliverBin, Cluster: testenv.Options{NoControllers: true}}))
}

// manifests writes n ConfigMaps into a fresh folder.
func manifests(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		doc := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d}\ndata: {k: v}\n", i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("cm-%03d.yaml", i)), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start runs a slow apply (low client QPS) of dir into ns in the background.
func start(t *testing.T, dir, ns string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(deliverBin, "apply", "--path", dir, "-f", ".", "--app", ns, "-n", ns,
		"--kubeconfig", env.Kubeconfig, "--qps", "40", "--burst", "40", "--concurrency", "4", "--wait=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// run runs deliver to the end and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(deliverBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func countConfigMaps(t *testing.T, ns string) int {
	t.Helper()
	list, err := env.Client().CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: apply.LabelApp})
	if err != nil {
		return -1
	}
	return len(list.Items)
}

// waitCreated waits until at least n of the app's ConfigMaps exist.
func waitCreated(t *testing.T, ns string, n int) {
	t.Helper()
	if _, ok := testenv.Until(60*time.Second, 20*time.Millisecond, func() bool { return countConfigMaps(t, ns) >= n }); !ok {
		t.Fatalf("fewer than %d ConfigMaps after 60s", n)
	}
}

// checkInventoryCovers asserts that every ConfigMap of the app in the
// cluster is listed in the app's inventory: nothing deliver created is
// forgotten, so nothing can become an orphan.
func checkInventoryCovers(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	m, err := apply.New(env.Config, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range inv.Entries {
		listed[e.Name] = true
	}
	list, err := env.Client().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: apply.LabelApp})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range list.Items {
		if !listed[cm.Name] {
			t.Errorf("ConfigMap/%s/%s exists but the inventory (result %s) does not list it", ns, cm.Name, inv.Result)
		}
	}
}

// converge re-runs the apply and checks all n objects exist, then removes
// the last 10 from git and checks they, and only they, are pruned.
func converge(t *testing.T, dir, ns string, n int) {
	t.Helper()
	args := []string{"apply", "--path", dir, "-f", ".", "--app", ns, "-n", ns, "--kubeconfig", env.Kubeconfig, "--wait=false"}
	out, code := run(t, args...)
	if code != 0 {
		t.Fatalf("re-run: exit %d:\n%s", code, out)
	}
	if got := countConfigMaps(t, ns); got != n {
		t.Fatalf("after re-run: %d ConfigMaps, want %d", got, n)
	}
	for i := n - 10; i < n; i++ {
		if err := os.Remove(filepath.Join(dir, fmt.Sprintf("cm-%03d.yaml", i))); err != nil {
			t.Fatal(err)
		}
	}
	out, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "10 deleted") {
		t.Fatalf("prune run: exit %d, want 10 deleted:\n%s", code, out)
	}
	if got := countConfigMaps(t, ns); got != n-10 {
		t.Errorf("after prune: %d ConfigMaps, want %d", got, n-10)
	}
}

func TestAPIServerDiesMidApply(t *testing.T) {
	ns := env.Namespace(t)
	dir := manifests(t, 300)
	cmd, out := start(t, dir, ns)
	waitCreated(t, ns, 40)
	env.StopAPIServer()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("deliver hung with the apiserver down:\n%s", out)
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d with the apiserver down, want 1:\n%s", code, out)
	}
	if !strings.Contains(out.String(), "connection refused") {
		t.Errorf("the failure does not say why:\n%s", out)
	}
	if err := env.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInventoryCovers(t, ns)
	converge(t, dir, ns, 300)
}

func TestDeliverKilledMidApply(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			ns := env.Namespace(t)
			dir := manifests(t, 300)
			cmd, out := start(t, dir, ns)
			waitCreated(t, ns, 40)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if sig == syscall.SIGTERM {
				// Interrupted, not crashed: it says so and records the
				// run as failed rather than leaving it "applying".
				if code := cmd.ProcessState.ExitCode(); code != 1 {
					t.Errorf("exit %d after SIGTERM, want 1:\n%s", code, out)
				}
				m, _ := apply.New(env.Config, apply.Options{})
				if inv, err := m.ReadInventory(context.Background(), ns); err != nil || inv.Result != apply.ResultFailed {
					t.Errorf("inventory after SIGTERM: %v result %q, want failed", err, inv.Result)
				}
			}
			checkInventoryCovers(t, ns)
			converge(t, dir, ns, 300)
		})
	}
}
