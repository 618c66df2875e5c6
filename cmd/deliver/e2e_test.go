package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
)

var (
	env        *testenv.Cluster
	deliverBin string
)

// TestMain builds the real deliver binary once; the tests run it as users do.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunE2E(m, &env, testenv.E2EOptions{Deliver: &deliverBin, BuildInShort: true}))
}

// run runs deliver and returns its combined output and exit code.
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

// runExpect runs deliver with args and then common (flags every call of
// a test shares), fails the test unless it exits wantCode, and returns
// its combined output.
func runExpect(t *testing.T, wantCode int, args []string, common ...string) string {
	t.Helper()
	out, code := run(t, append(slices.Clone(args), common...)...)
	if code != wantCode {
		t.Fatalf("deliver %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, wantCode, out)
	}
	return out
}

func TestVersion(t *testing.T) {
	out, code := run(t, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"deliver ", "go: " + runtime.Version(), "kubernetes client: v0.37.", "helm: v3.22."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

// TestExamplePlain applies examples/plain as the README says, twice: the
// second run must change nothing.
func TestExamplePlain(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	args := []string{"apply", "--kubeconfig", env.Kubeconfig, "--path", "../../examples/plain", "-f", "manifests", "--timeout", "1m"}
	diffArgs := []string{"diff", "--kubeconfig", env.Kubeconfig, "--path", "../../examples/plain", "-f", "manifests"}
	out, code := run(t, diffArgs...)
	if code != 2 || !strings.Contains(out, "4 to create, 0 to change, 0 to delete, 0 unchanged") {
		t.Errorf("diff before apply: exit %d, want 2 and 4 to create:\n%s", code, out)
	}
	// apply --dry-run is diff: the same plan and exit code, nothing written.
	out, code = run(t, append(slices.Clone(args), "--dry-run")...)
	if code != 2 || !strings.Contains(out, "4 to create, 0 to change, 0 to delete, 0 unchanged") {
		t.Errorf("apply --dry-run: exit %d, want 2 and 4 to create:\n%s", code, out)
	}
	if _, err := env.Client().AppsV1().Deployments("demo").Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment demo/web after apply --dry-run: %v, want not found", err)
	}
	out, code = run(t, append(args, "-v")...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Not a terminal: progress comes as log lines, one per app and step.
	for _, want := range []string{"msg=step app=default step=config count=3", "msg=step app=default step=workloads count=1", "msg=step app=default step=wait"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress log lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"Namespace/demo created", "ConfigMap/demo/web-config created", "Deployment/demo/web created", "Service/demo/web created"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	d, err := env.Client().AppsV1().Deployments("demo").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 {
		t.Errorf("available replicas = %d after apply with wait, want 2", d.Status.AvailableReplicas)
	}
	out, code = run(t, args...)
	if code != 0 || !strings.Contains(out, "0 created, 0 configured, 0 recreated, 4 unchanged, 0 deleted, 0 failed") {
		t.Errorf("second apply: exit %d, want 4 unchanged:\n%s", code, out)
	}
	out, code = run(t, diffArgs...)
	if code != 0 || !strings.Contains(out, "0 to create, 0 to change, 0 to delete, 4 unchanged") {
		t.Errorf("diff after apply: exit %d, want 0 and 4 unchanged:\n%s", code, out)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "nowhere.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "CANARY-TOKEN-93a1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	if err := os.MkdirAll(good, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(good, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"malformed yaml", []string{"render", "--path", dir, "-f", "bad.yaml"}, "bad.yaml#0: parse"},
		{"missing path", []string{"render", "--path", dir, "-f", "missing"}, "missing: "},
		{"path escapes root", []string{"render", "--path", dir, "-f", "../x"}, "../x: path escapes the repository root"},
		{"unknown flag", []string{"apply", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"kubeconfig pointing nowhere", []string{"apply", "--kubeconfig", kubeconfig, "--path", good, "-f", "."}, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := run(t, tt.args...)
			if code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
			if strings.Contains(out, "CANARY-TOKEN-93a1") {
				t.Errorf("output leaks the token:\n%s", out)
			}
		})
	}
}
