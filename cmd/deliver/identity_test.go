package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
)

// exampleRepo copies the example folder dir into a git repository of its
// own, committed: deliver reads a --path at its HEAD, and a linked git
// worktree (as the project's checkouts may be) is not one it can open.
func exampleRepo(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "example")
	repo := gitserver.NewRepo(t, out)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		repo.WriteFile(filepath.ToSlash(rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	repo.CommitAll("example")
	return out
}

// TestExampleIdentity runs examples/identity as its README says: the
// admin applies tenants/ (namespaces, ServiceAccounts, Roles and
// RoleBindings) as itself, then deliver.yaml delivers each team's app as
// the ServiceAccount deployer of its namespace. Once team-b's RoleBinding
// is gone, diff and apply fail for team-b, naming its ServiceAccount,
// while team-a is unaffected.
func TestExampleIdentity(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	cs := env.Client()
	inv := env.Namespace(t)
	t.Cleanup(func() {
		for _, ns := range []string{"team-a", "team-b"} {
			_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	base := []string{"--kubeconfig", env.Kubeconfig, "--path", exampleRepo(t, "../../examples/identity"), "--inventory-namespace", inv, "--timeout", "2m"}
	out, code := run(t, append([]string{"apply", "-f", "tenants", "--app", "identity-tenants"}, base...)...)
	if code != 0 {
		t.Fatalf("apply tenants/: exit %d:\n%s", code, out)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		env.WaitAllowed(t, "system:serviceaccount:"+ns+":deployer", "patch", "configmaps", ns, true)
	}
	out, code = run(t, append([]string{"apply"}, base...)...)
	if code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.AvailableReplicas != 1 {
			t.Errorf("%s: available replicas = %d after apply with wait, want 1", ns, d.Status.AvailableReplicas)
		}
	}

	if err := cs.RbacV1().RoleBindings("team-b").Delete(ctx, "deployer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitAllowed(t, "system:serviceaccount:team-b:deployer", "list", "configmaps", "team-b", false)
	for _, verb := range []string{"diff", "apply"} {
		out, code = run(t, append([]string{verb}, base...)...)
		if code == 0 || !strings.Contains(out, "as system:serviceaccount:team-b:deployer") || !strings.Contains(out, "forbidden") {
			t.Errorf("%s without team-b's RoleBinding: exit %d, want a failure naming team-b's ServiceAccount:\n%s", verb, code, out)
		}
		if strings.Contains(out, "system:serviceaccount:team-a:deployer") {
			t.Errorf("%s: team-a failed too:\n%s", verb, out)
		}
	}
}
