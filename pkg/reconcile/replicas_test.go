package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestScaleIsNoDrift: a Deployment whose manifest sets no replica count
// may be scaled in the cluster (by hand or by an autoscaler): the
// reconciler reports no drift for it and does not scale it back, while a
// change to its pod template is still drift, reverted.
func TestScaleIsNoDrift(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	r, inv := startWeb(t, ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}}", map[string]string{"color": "blue"}, webDeployment(""))

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
	var cmDrift bool
	for _, msg := range driftEvents(t, inv, "web") {
		cmDrift = cmDrift || strings.HasPrefix(msg, "ConfigMap/")
		if strings.HasPrefix(msg, "Deployment/") {
			t.Errorf("drift reported for a scale: %q", msg)
		}
	}
	if !cmDrift {
		t.Errorf("no drift event for the ConfigMap: %v", driftEvents(t, inv, "web"))
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
		for _, msg := range driftEvents(t, inv, "web") {
			if strings.HasPrefix(msg, "Deployment/"+ns+"/web: generation") {
				return true
			}
		}
		return false
	})
}
