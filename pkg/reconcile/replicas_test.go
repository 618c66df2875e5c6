package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestScaleIsNoDrift: a Deployment whose manifest sets no replica count
// may be scaled in the cluster (by hand or by an autoscaler): the
// reconciler reports no drift for it and does not scale it back, while a
// change to its pod template is still drift, reverted.
func TestScaleIsNoDrift(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
`
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":        deliverYAML(ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}}"),
		"web/cm.yaml":         configMap("web", map[string]string{"color": "blue"}),
		"web/deployment.yaml": deployment,
	})
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	deployments := env.Client().AppsV1().Deployments(ns)
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
	if _, err := deployments.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	// A kubectl edit of the ConfigMap, after the scale: by the time it is
	// reverted, the scale was seen too.
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"red"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "ConfigMap drift reverted", func() bool {
		a := appStatus(r, "web")
		return cmData(t, ns, "web")["color"] == "blue" && a.Result == "succeeded" && len(a.Drift) == 0
	})
	drift := func() []string {
		list, err := env.Client().CoreV1().Events(inv).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=deliver-inventory-web"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range list.Items {
			if e.Reason == reconcile.ReasonDriftDetected {
				out = append(out, e.Message)
			}
		}
		return out
	}
	var cmDrift bool
	for _, msg := range drift() {
		cmDrift = cmDrift || strings.HasPrefix(msg, "ConfigMap/")
		if strings.HasPrefix(msg, "Deployment/") {
			t.Errorf("drift reported for a scale: %q", msg)
		}
	}
	if !cmDrift {
		t.Errorf("no drift event for the ConfigMap: %v", drift())
	}

	// A new image is drift: reverted, with the scale kept.
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:edited"}]}}}}`)
	if _, err := deployments.Patch(ctx, "web", types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "image reverted", func() bool {
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == "web:1"
	})
	d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d after the revert, want the scale's 3 kept", *d.Spec.Replicas)
	}
	waitFor(t, 10*time.Second, "drift event for the image", func() bool {
		for _, msg := range drift() {
			if strings.HasPrefix(msg, "Deployment/"+ns+"/web: generation") {
				return true
			}
		}
		return false
	})
}
