package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestIgnoredFieldIsNoDrift: fields of ignoreDifferences rules, written
// by another field manager in the cluster (a ConfigMap's data.size, a
// kind without generations; a Deployment's revisionHistoryLimit, which
// moves its generation), are no drift: the reconciler reports none for
// them and does not revert them. An edit of a field next to them is still
// drift, reverted, and the ignored values stay.
func TestIgnoredFieldIsNoDrift(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	r, inv := startWeb(t, ns, `- name: web
  namespace: $NS
  wait: false
  manifests: {path: web}
  ignoreDifferences:
  - {kind: ConfigMap, jsonPointers: [/data/size]}
  - {group: apps, kind: Deployment, name: web, jsonPointers: [/spec/revisionHistoryLimit]}`,
		map[string]string{"color": "blue", "size": "1"}, webDeployment("  revisionHistoryLimit: 10\n"))

	cms := env.Client().CoreV1().ConfigMaps(ns)
	deployments := env.Client().AppsV1().Deployments(ns)
	edit := func(patch func() error) {
		t.Helper()
		if err := patch(); err != nil {
			t.Fatal(err)
		}
	}
	edit(func() error {
		_, err := cms.Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"size":"9"}}`), metav1.PatchOptions{FieldManager: "sizer"})
		return err
	})
	edit(func() error {
		_, err := deployments.Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"revisionHistoryLimit":3}}`), metav1.PatchOptions{FieldManager: "sizer"})
		return err
	})
	// An image edit after them: by the time it is reverted, they were
	// seen too.
	edit(func() error {
		_, err := deployments.Patch(ctx, "web", types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:edited"}]}}}}`),
			metav1.PatchOptions{FieldManager: "kubectl-edit"})
		return err
	})
	waitFor(t, 15*time.Second, "image reverted", func() bool {
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		a := appStatus(r, "web")
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == "web:1" && a.Result == "succeeded" && len(a.Drift) == 0
	})
	d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.RevisionHistoryLimit != 3 {
		t.Errorf("revisionHistoryLimit = %d after the revert, want the other manager's 3 kept", *d.Spec.RevisionHistoryLimit)
	}
	for _, msg := range driftEvents(t, inv, "web") {
		if strings.HasPrefix(msg, "ConfigMap/") {
			t.Errorf("drift reported for an ignored field: %q", msg)
		}
	}

	// A color edit is drift: reverted, with the size kept.
	edit(func() error {
		_, err := cms.Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"red"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
		return err
	})
	waitFor(t, 15*time.Second, "color reverted", func() bool { return cmData(t, ns, "web")["color"] == "blue" })
	if got := cmData(t, ns, "web")["size"]; got != "9" {
		t.Errorf("size = %q after the revert, want the other manager's 9 kept", got)
	}
}
