package main

import (
	"context"
	"os"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestExampleIgnore runs examples/ignore against the real control plane:
// after the first apply, other field managers write the four ignored
// fields (a scale, a flag, the annotation form's key, an injected
// caBundle); deliver diff then shows no difference, and deliver apply
// changes nothing and keeps their values.
func TestExampleIgnore(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	cs := env.Client()
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), "ignore-demo-web", metav1.DeleteOptions{})
	})
	// A copy outside this repository: the example as a working tree of
	// its own, whatever state the repository's checkout is in.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/ignore")); err != nil {
		t.Fatal(err)
	}
	// An inventory namespace of its own: other tests deliver apps named
	// web from other repositories.
	args := []string{"--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", env.Namespace(t)}
	out, code := run(t, append([]string{"apply", "--timeout", "1m"}, args...)...)
	if code != 0 || !strings.Contains(out, "Deployment/ignore-demo/web created") {
		t.Fatalf("first apply: exit %d:\n%s", code, out)
	}
	const ns = "ignore-demo"
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.AppsV1().Deployments(ns).UpdateScale(ctx, "web", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 4}}, metav1.UpdateOptions{FieldManager: "kubectl"}))
	must(cs.CoreV1().ConfigMaps(ns).Patch(ctx, "web-flags", types.MergePatchType, []byte(`{"data":{"maintenance":"on"}}`), metav1.PatchOptions{FieldManager: "operator"}))
	must(cs.CoreV1().ConfigMaps(ns).Patch(ctx, "web-config", types.MergePatchType, []byte(`{"data":{"lastReload":"12:00"}}`), metav1.PatchOptions{FieldManager: "reloader"}))
	must(cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "ignore-demo-web", types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"aW5qZWN0ZWQ="}]`), metav1.PatchOptions{FieldManager: "cert-manager-cainjector"}))

	out, code = run(t, append([]string{"diff"}, args...)...)
	if code != 0 || !strings.Contains(out, "0 to create, 0 to change, 0 to delete, 5 unchanged") {
		t.Errorf("diff after the other managers' writes: exit %d, want 0 and nothing to change:\n%s", code, out)
	}
	out, code = run(t, append([]string{"apply", "--timeout", "1m"}, args...)...)
	if code != 0 || !strings.Contains(out, "0 created, 0 configured, 0 recreated, 5 unchanged, 0 deleted, 0 failed") {
		t.Errorf("second apply: exit %d, want 5 unchanged:\n%s", code, out)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flags, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	config, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "ignore-demo-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 4 || flags.Data["maintenance"] != "on" || config.Data["lastReload"] != "12:00" || string(hooks.Webhooks[0].ClientConfig.CABundle) != "injected" {
		t.Errorf("after the apply: replicas %d, maintenance %q, lastReload %q, caBundle %q; want 4, on, 12:00, injected (kept)",
			*d.Spec.Replicas, flags.Data["maintenance"], config.Data["lastReload"], hooks.Webhooks[0].ClientConfig.CABundle)
	}
}
