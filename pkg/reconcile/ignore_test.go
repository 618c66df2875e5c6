package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/reconcile"
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
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
`
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, `- name: web
  namespace: $NS
  wait: false
  manifests: {path: web}
  ignoreDifferences:
  - {kind: ConfigMap, jsonPointers: [/data/size]}
  - {group: apps, kind: Deployment, name: web, jsonPointers: [/spec/revisionHistoryLimit]}`),
		"web/cm.yaml":         configMap("web", map[string]string{"color": "blue", "size": "1"}),
		"web/deployment.yaml": deployment,
	})
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

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
	for _, msg := range drift() {
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
