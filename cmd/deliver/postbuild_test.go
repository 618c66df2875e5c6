package main

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestExamplePostbuild runs examples/postbuild against the real control
// plane: the variables of deliver.yaml and of the cluster's ConfigMap
// land in the Deployment (a number where the manifest has ${replicas})
// and the Ingress, the script marked substitute: disabled keeps its
// ${HOME}, a second diff is clean, and the prod environment's variables
// show in an offline render. The example is copied out of the repository,
// as a user's working tree without git.
func TestExamplePostbuild(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/postbuild")); err != nil {
		t.Fatal(err)
	}
	// What the README has the cluster's owner create first.
	if _, err := env.Client().CoreV1().ConfigMaps("kube-public").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-vars"},
		Data:       map[string]string{"cluster_region": "eu-west-1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	inv := env.Namespace(t)
	diffArgs := []string{"diff", "--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", inv}
	out, code := run(t, diffArgs...)
	if code != 2 || !strings.Contains(out, "5 to create, 0 to change, 0 to delete") {
		t.Errorf("diff before apply: exit %d, want 2 and 5 to create:\n%s", code, out)
	}
	out, code = run(t, "apply", "--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", inv, "--timeout", "2m")
	if code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	d, err := env.Client().AppsV1().Deployments("postbuild-demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 || d.Status.AvailableReplicas != 2 {
		t.Errorf("replicas %v, %d available: want 2 from ${replicas}, waited for", d.Spec.Replicas, d.Status.AvailableReplicas)
	}
	envs := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		envs[e.Name] = e.Value
	}
	if envs["CLUSTER_REGION"] != "eu-west-1" || envs["PUBLIC_URL"] != "https://shop.example" {
		t.Errorf("env %v: want the cluster's region and deliver.yaml's domain", envs)
	}
	ing, err := env.Client().NetworkingV1().Ingresses("postbuild-demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ing.Spec.Rules[0].Host; got != "shop.example" {
		t.Errorf("ingress host %q, want shop.example", got)
	}
	script, err := env.Client().CoreV1().ConfigMaps("postbuild-demo").Get(ctx, "web-entrypoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(script.Data["entrypoint.sh"], `cd "${HOME}"`) {
		t.Errorf("the script marked substitute: disabled was substituted:\n%s", script.Data["entrypoint.sh"])
	}
	out, code = run(t, diffArgs...)
	if code != 0 || !strings.Contains(out, "0 to create, 0 to change, 0 to delete, 5 unchanged") {
		t.Errorf("diff after apply: exit %d, want 0 and 5 unchanged:\n%s", code, out)
	}
	out, code = run(t, "render", "--path", dir, "--env", "prod")
	for _, want := range []string{"replicas: 3", "host: shop.example.com", "value: unknown"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("render --env prod: exit %d, want %q:\n%s", code, want, out)
		}
	}
}
