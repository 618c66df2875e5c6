package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/config"
)

// TestExampleClustersParses: examples/clusters/deliver.yaml parses; the
// CLI's clusters are kubeconfig contexts, prod's reconciler cluster is
// the Secret prod-kubeconfig (key value), staging's the reconciler's own.
func TestExampleClustersParses(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../examples/clusters/deliver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("examples/clusters/deliver.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]struct{ context, secret string }{
		"staging": {"staging", ""},
		"prod":    {"prod", "Secret prod-kubeconfig (key value)"},
	} {
		r, err := c.ForEnvironment(env)
		if err != nil {
			t.Fatal(err)
		}
		secret := ""
		if r.KubeconfigSecret != nil {
			secret = r.KubeconfigSecret.String()
		}
		if r.Context != want.context || secret != want.secret {
			t.Errorf("%s: context %q, kubeconfigSecret %q; want %q, %q", env, r.Context, secret, want.context, want.secret)
		}
	}
}

// TestExampleClusters runs examples/clusters on two real control planes:
// deliver apply --env staging and --env prod reach the cluster of each
// environment's kubeconfig context; deliver reconcile --once --env
// staging --env prod, running against staging's cluster, delivers a new
// commit to both, prod's through the kubeconfig Secret; deliver status
// --env prod shows prod's cluster and app from the reconciler's status.
func TestExampleClusters(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	second := testenv.StartSecond(t, false)
	ctx := context.Background()
	staging, prod := env.Client(), second.Client()
	inv := env.Namespace(t)
	if _, err := prod.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inv}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = staging.CoreV1().Namespaces().Delete(context.Background(), "clusters-demo", metav1.DeleteOptions{})
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := testenv.WriteKubeconfigs(kubeconfig, map[string]*testenv.Cluster{"staging": env, "prod": second}, "staging"); err != nil {
		t.Fatal(err)
	}
	// The example as a plain folder: its repository is this test's.
	tree := t.TempDir()
	if err := os.CopyFS(tree, os.DirFS("../../examples/clusters")); err != nil {
		t.Fatal(err)
	}

	// The CLI: each environment's context.
	for _, e := range []string{"staging", "prod"} {
		out, code := run(t, "apply", "--kubeconfig", kubeconfig, "--path", tree, "--env", e, "--inventory-namespace", inv, "--timeout", "1m")
		if code != 0 {
			t.Fatalf("apply --env %s: exit %d:\n%s", e, code, out)
		}
	}
	web := func(kc kubernetes.Interface) map[string]string {
		cm, err := kc.CoreV1().ConfigMaps("clusters-demo").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return cm.Data
	}
	if s, p := web(staging), web(prod); s["cluster"] != "staging" || p["cluster"] != "prod" || p["replicas"] != "3" {
		t.Fatalf("after apply: staging's web %v, prod's web %v", s, p)
	}

	// The reconciler, in staging's cluster, for both.
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	if err := os.CopyFS(repo.Dir, os.DirFS(tree)); err != nil {
		t.Fatal(err)
	}
	repo.WriteFile("web-prod/web.yaml", strings.Replace(readFile(t, filepath.Join(tree, "web-prod/web.yaml")), `replicas: "3"`, `replicas: "5"`, 1))
	repo.CommitAll("prod: 5 replicas")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	prodKubeconfig, err := second.KubeconfigFor("prod")
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "prod-kubeconfig", Namespace: inv}, Data: map[string][]byte{"value": prodKubeconfig}}
	if _, err := staging.CoreV1().Secrets(inv).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, "reconcile", "--once", "--kubeconfig", kubeconfig, "--context", "staging", "--repo", url, "--ref", "main",
		"--env", "staging", "--env", "prod", "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"))
	if code != 0 {
		t.Fatalf("reconcile --once: exit %d:\n%s", code, out)
	}
	if p := web(prod); p["replicas"] != "5" {
		t.Errorf("after reconcile: prod's web %v, want 5 replicas", p)
	}
	if s := web(staging); s["cluster"] != "staging" {
		t.Errorf("after reconcile: staging's web %v, want staging's", s)
	}
	for _, e := range []string{"staging", "prod"} {
		if _, err := staging.CoreV1().ConfigMaps(inv).Get(ctx, "deliver-status."+e, metav1.GetOptions{}); err != nil {
			t.Errorf("status of %s: %v", e, err)
		}
	}

	out, code = run(t, "status", "--kubeconfig", kubeconfig, "--context", "staging", "--inventory-namespace", inv, "--env", "prod")
	for _, want := range []string{"environment prod, cluster: Secret " + inv + "/prod-kubeconfig (key value)", "web", "succeeded"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status --env prod: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	out, code = run(t, "status", "--kubeconfig", kubeconfig, "--context", "staging", "--inventory-namespace", inv)
	if code != 0 || !strings.Contains(out, "reports environments prod, staging here") {
		t.Errorf("status: exit %d, want the environments listed:\n%s", code, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
