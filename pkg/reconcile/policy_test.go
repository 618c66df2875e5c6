package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestApplyPolicyIsNoDrift: the reconciler leaves alone what an apply
// policy leaves alone: a Secret of Flux's ssa: IfNotPresent filled in by
// another controller is never reported as drift nor reverted; a
// Deployment someone paused in the cluster with Flux's reconcile:
// disabled to try a hot fix is not reverted, and once a run has seen the
// pause its further edits are no drift; an edit of another object of the
// app is reverted all along.
func TestApplyPolicyIsNoDrift(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	r, inv := startWebFiles(t, ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}}", map[string]string{
		"web/cm.yaml":         configMap("web", map[string]string{"color": "blue"}),
		"web/seed.yaml":       "apiVersion: v1\nkind: Secret\nmetadata:\n  name: seed\n  annotations: {kustomize.toolkit.fluxcd.io/ssa: IfNotPresent}\nstringData: {token: placeholder}\n",
		"web/deployment.yaml": webDeployment("  replicas: 1\n"),
	})

	cs := env.Client()
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, "seed", types.MergePatchType, []byte(`{"stringData":{"token":"issued"}}`), metav1.PatchOptions{FieldManager: "cert-manager"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType,
		[]byte(`{"metadata":{"annotations":{"kustomize.toolkit.fluxcd.io/reconcile":"disabled"}},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:hotfix"}]}}}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	// An edit after them: by the time it is reverted, they were seen too.
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"red"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "color reverted", func() bool {
		a := appStatus(r, "web")
		return cmData(t, ns, "web")["color"] == "blue" && a.Result == "succeeded" && len(a.Drift) == 0
	})
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, "seed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Data["token"]); got != "issued" {
		t.Errorf("IfNotPresent Secret token = %q, want the other controller's kept", got)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "web:hotfix" {
		t.Errorf("paused Deployment image = %q, want the hot fix kept", img)
	}
	// The pause itself was an edit of an object deliver tracked: seen as
	// drift once, by the run that then found it paused. After that run,
	// neither object is tracked.
	count := func(kind string) int {
		n := 0
		for _, msg := range driftEvents(t, inv, "web") {
			if strings.HasPrefix(msg, kind+"/") {
				n++
			}
		}
		return n
	}
	if n := count("Secret"); n != 0 {
		t.Errorf("%d drift events for the IfNotPresent Secret, want none", n)
	}
	paused := count("Deployment")
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:hotfix2"}]}}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, "seed", types.MergePatchType, []byte(`{"stringData":{"token":"renewed"}}`), metav1.PatchOptions{FieldManager: "cert-manager"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"green"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "color reverted again", func() bool {
		a := appStatus(r, "web")
		return cmData(t, ns, "web")["color"] == "blue" && a.Result == "succeeded" && len(a.Drift) == 0
	})
	if n := count("Deployment"); n != paused {
		t.Errorf("%d drift events for the paused Deployment after a second hot fix, want %d (no new one)", n, paused)
	}
	if n := count("Secret"); n != 0 {
		t.Errorf("%d drift events for the IfNotPresent Secret, want none", n)
	}
	d, err = cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "web:hotfix2" {
		t.Errorf("paused Deployment image = %q, want the second hot fix kept", img)
	}
}
