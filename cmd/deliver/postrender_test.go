package main

import (
	"context"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestExamplePostrender runs examples/postrender against the real control
// plane: diff, apply, the post-renderers' fields live (JSON 6902 patch,
// strategic merge patch, image, commonLabels of the second post-renderer),
// then a clean diff. The example is copied out of the repository, as a
// user's working tree without git.
func TestExamplePostrender(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/postrender")); err != nil {
		t.Fatal(err)
	}
	// An inventory namespace of its own: other tests deliver apps named
	// web from other repositories.
	inv := env.Namespace(t)
	diffArgs := []string{"diff", "--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", inv}
	out, code := run(t, diffArgs...)
	if code != 2 || !strings.Contains(out, "3 to create, 0 to change, 0 to delete") {
		t.Errorf("diff before apply: exit %d, want 2 and 3 to create:\n%s", code, out)
	}
	out, code = run(t, "apply", "--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", inv, "--timeout", "2m")
	if code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	ctx := context.Background()
	d, err := env.Client().AppsV1().Deployments("postrender-demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if got := c.Resources.Limits.Memory().String(); got != "128Mi" {
		t.Errorf("memory limit = %s, want 128Mi (JSON 6902 patch)", got)
	}
	if c.Image != "mirror.example/library/nginx:1.27.3" {
		t.Errorf("image = %s, want the mirror's (images)", c.Image)
	}
	if d.Labels["team"] != "shop" || d.Spec.Template.Labels["team"] != "shop" {
		t.Errorf("labels %v, template labels %v: want team=shop (commonLabels)", d.Labels, d.Spec.Template.Labels)
	}
	if d.Status.AvailableReplicas != 2 {
		t.Errorf("available replicas = %d after apply with wait, want 2", d.Status.AvailableReplicas)
	}
	svc, err := env.Client().CoreV1().Services("postrender-demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Annotations["service.example/internal"] != "true" {
		t.Errorf("service annotations %v, want the strategic merge patch's", svc.Annotations)
	}
	out, code = run(t, diffArgs...)
	if code != 0 || !strings.Contains(out, "0 to create, 0 to change, 0 to delete, 3 unchanged") {
		t.Errorf("diff after apply: exit %d, want 0 and 3 unchanged:\n%s", code, out)
	}
}
