package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClusterRunsPods(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx := context.Background()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cs := c.Client()
	node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Spec.Taints) != 0 {
		t.Errorf("node still tainted: %v", node.Spec.Taints)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version %s.%s (%s), want 1.37", v.Major, v.Minor, v.GitVersion)
	}
	ns := c.Namespace(t)
	if !strings.HasPrefix(ns, "testclusterrunspods-") {
		t.Errorf("namespace %q does not start with the test name", ns)
	}
}

func TestVault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Vault")
	}
	v, err := StartVault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	cmd := exec.Command(mustBinary(t, "vault"), "kv", "put", "-mount=secret", "app", "password=hunter2")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vault kv put: %v\n%s", err, out)
	}
	cmd = exec.Command(mustBinary(t, "vault"), "kv", "get", "-mount=secret", "-field=password", "app")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token, "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hunter2" {
		t.Fatalf("vault kv get = %q, %v", out, err)
	}
}

func mustBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
