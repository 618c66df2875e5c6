package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestApplySameAppNameTwoEnvironments: with the CLI, environments a and b
// of one deliver.yaml deliver app web to one cluster, each to its own
// namespace and with its inventories in its inventoryNamespace (which
// wins over --inventory-namespace). When b's web also claims a's
// ConfigMap, diff and apply of b name the conflict, the object and both
// owners and exit 1, and a's object is left as it was.
func TestApplySameAppNameTwoEnvironments(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	nsA, nsB, invA, invB, flagInv := env.Namespace(t), env.Namespace(t), env.Namespace(t), env.Namespace(t), env.Namespace(t)
	dir := filepath.Join(t.TempDir(), "repo")
	repo := gitserver.NewRepo(t, dir)
	repo.WriteFile("deliver.yaml", fmt.Sprintf(`apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
  - name: web
    namespace: %s
    allowedNamespaces: [%s, %s]
    manifests: {path: web-b}
environments:
  a:
    inventoryNamespace: %s
    apps:
      web: {namespace: %s, path: web}
  b:
    inventoryNamespace: %s
`, nsB, nsB, nsA, invA, nsA, invB))
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n")
	repo.WriteFile("web-b/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	repo.CommitAll("two environments, one app name")
	common := []string{"--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", flagInv, "--timeout", "1m"}
	for _, e := range []string{"a", "b"} {
		if out, code := run(t, append([]string{"apply", "--env", e}, common...)...); code != 0 {
			t.Fatalf("apply --env %s: exit %d:\n%s", e, code, out)
		}
	}
	ctx := context.Background()
	for _, o := range []struct{ ns, env, inv, color string }{{nsA, "a", invA, "blue"}, {nsB, "b", invB, "green"}} {
		cm, err := env.Client().CoreV1().ConfigMaps(o.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["color"] != o.color || cm.Labels[apply.LabelEnv] != o.env {
			t.Errorf("ConfigMap %s/web: color %q, labels %v; want %s of environment %s", o.ns, cm.Data["color"], cm.Labels, o.color, o.env)
		}
		if _, err := env.Client().CoreV1().Secrets(o.inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{}); err != nil {
			t.Errorf("inventory of %s's web in %s: %v", o.env, o.inv, err)
		}
	}
	if _, err := env.Client().CoreV1().Secrets(flagInv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{}); err == nil {
		t.Errorf("an inventory of web in --inventory-namespace %s: inventoryNamespace did not win", flagInv)
	}

	repo.WriteFile("web-b/theirs.yaml", fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: %s}\ndata: {color: red}\n", nsA))
	repo.CommitAll("b claims a's object")
	out, code := run(t, append([]string{"diff", "--env", "b"}, common...)...)
	wantDiff := fmt.Sprintf("conflict: ConfigMap/%s/web (web: web-b/theirs.yaml#0) belongs to app web (environment a) (labels %s and %s), not to app web (environment b): apply fails",
		nsA, apply.LabelApp, apply.LabelEnv)
	if code != 1 || !strings.Contains(out, wantDiff) {
		t.Errorf("diff --env b: exit %d, want 1 (a conflict) and %q:\n%s", code, wantDiff, out)
	}
	out, code = run(t, append([]string{"apply", "--env", "b"}, common...)...)
	want := fmt.Sprintf(`ConfigMap/%s/web (web: web-b/theirs.yaml#0) belongs to app "web" of environment "a" (labels %s and %s), not to app "web" of environment "b"`, nsA, apply.LabelApp, apply.LabelEnv)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("apply --env b: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if cm, err := env.Client().CoreV1().ConfigMaps(nsA).Get(ctx, "web", metav1.GetOptions{}); err != nil || cm.Data["color"] != "blue" {
		t.Errorf("a's ConfigMap after b's refused apply: %v %v, want blue", cm.Data, err)
	}
}
