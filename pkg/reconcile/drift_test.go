package reconcile_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// metricSum adds up the samples of the counter name for app, over its
// other labels, as r's /metrics serves them.
func metricSum(t *testing.T, r *reconcile.Reconciler, name, app string) float64 {
	t.Helper()
	var sum float64
	for line := range strings.Lines(metricsBody(t, r)) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `app="`+app+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// TestDeploymentMetadataDrift: the generation of a Deployment does not
// move when its labels or annotations change, yet a label or annotation
// value deliver set that another field manager changes is drift, reverted
// within seconds; a label or annotation deliver never set, a scale and the
// status updates that follow it are not, and cause no run; a label deliver
// set that another manager took but set back to deliver's value costs one
// run, not one after the other.
func TestDeploymentMetadataDrift(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	deployment := func(name string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ` + name + `
  labels: {tier: ` + name + `}
  annotations: {example.com/owner: team-a}
spec:
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec: {containers: [{name: web, image: web:1}]}
`
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":    deliverYAML(ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}}"),
		"web/web.yaml":    deployment("web"),
		"web/canary.yaml": deployment("canary"),
	})
	opts := options(t, repo, env.Config)
	r, _ := start(t, opts)
	deployments := env.Client().AppsV1().Deployments(ns)
	settled := func() bool {
		a := appStatus(r, "web")
		return a.Result == "succeeded" && len(a.Drift) == 0
	}
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() && settled() })
	// The package's control plane runs no controllers: this writes what
	// the deployment controller would, its revision annotation (an
	// update) and the status.
	controller := func(name string) {
		t.Helper()
		d, err := deployments.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Annotations["deployment.kubernetes.io/revision"] = strconv.FormatInt(d.Generation, 10)
		if d, err = deployments.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kube-controller-manager"}); err != nil {
			t.Fatal(err)
		}
		d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas = d.Generation, *d.Spec.Replicas, *d.Spec.Replicas
		if _, err := deployments.UpdateStatus(ctx, d, metav1.UpdateOptions{FieldManager: "kube-controller-manager"}); err != nil {
			t.Fatal(err)
		}
	}
	controller("web")
	controller("canary")
	runs := metricSum(t, r, "deliver_reconcile_runs_total", "web")
	drifts := metricSum(t, r, "deliver_reconcile_drift_detected_total", "web")

	// Not drift: a label and an annotation deliver never set, a scale
	// (the manifest sets no replica count), the controller's status
	// updates and revision annotation.
	patch := []byte(`{"metadata":{"labels":{"team":"b"},"annotations":{"example.com/note":"hi"}}}`)
	if _, err := deployments.Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 2}}
	if _, err := deployments.UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl-scale"}); err != nil {
		t.Fatal(err)
	}
	controller("web")

	// Drift: kubectl label --overwrite of a label deliver set, on the
	// other Deployment. One informer sees both in order: by the time this
	// is noticed, the changes above were checked. Had they been drift
	// too, there would be two drifts counted, or two runs.
	patch = []byte(`{"metadata":{"labels":{"tier":"hacked"}}}`)
	if _, err := deployments.Patch(ctx, "canary", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	waitFor(t, 15*time.Second, "label reverted", func() bool {
		d, err := deployments.Get(ctx, "canary", metav1.GetOptions{})
		return err == nil && d.Labels["tier"] == "canary"
	})
	t.Logf("kubectl label reverted in %s (drift settle %s)", time.Since(edited).Round(time.Millisecond), opts.DriftSettle)
	waitFor(t, 10*time.Second, "revert run recorded", func() bool {
		return settled() && metricSum(t, r, "deliver_reconcile_runs_total", "web") >= runs+1
	})
	if got := metricSum(t, r, "deliver_reconcile_runs_total", "web") - runs; got != 1 {
		t.Errorf("%v runs after the label edit, want 1 (the others were not drift)", got)
	}
	if got := metricSum(t, r, "deliver_reconcile_drift_detected_total", "web") - drifts; got != 1 {
		t.Errorf("%v drifts counted, want 1: the canary's label", got)
	}
	web, err := deployments.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if web.Labels["team"] != "b" || web.Annotations["example.com/note"] != "hi" || *web.Spec.Replicas != 2 {
		t.Errorf("web after the run: labels %v, annotations %v, replicas %d; want others' label, annotation and scale kept",
			web.Labels, web.Annotations, *web.Spec.Replicas)
	}

	// Drift: an annotation deliver set, changed by an update (kubectl
	// edit) of another field manager.
	d, err := deployments.Get(ctx, "canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations["example.com/owner"] = "team-x"
	if _, err := deployments.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "annotation reverted", func() bool {
		d, err := deployments.Get(ctx, "canary", metav1.GetOptions{})
		return err == nil && d.Annotations["example.com/owner"] == "team-a"
	})
	waitFor(t, 10*time.Second, "revert run recorded", func() bool {
		return settled() && metricSum(t, r, "deliver_reconcile_runs_total", "web") >= runs+2
	})
	if got := metricSum(t, r, "deliver_reconcile_runs_total", "web") - runs; got != 2 {
		t.Errorf("%v runs after the annotation edit, want 2", got)
	}

	// A label deliver set, taken by another manager and set back to
	// deliver's value: deliver no longer owns it, which is drift, but the
	// run finds the object as it would apply it and leaves it so; the
	// fingerprint it left is then the live one, so no run follows (or they
	// would follow forever, and the app never settle without drift). The
	// app is paused meanwhile, so that its run comes after both edits.
	suspend := func(v string) {
		t.Helper()
		patch := []byte(`{"metadata":{"annotations":{"` + reconcile.AnnotationSuspend + `":` + v + `}}}`)
		if _, err := env.Client().CoreV1().Secrets(opts.Pipeline.Apply.InventoryNamespace).Patch(ctx, "deliver-inventory-web",
			types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	suspend(`"true"`)
	waitFor(t, 10*time.Second, "suspended", func() bool { return appStatus(r, "web").Suspended })
	for _, tier := range []string{"hacked", "canary"} {
		patch = []byte(`{"metadata":{"labels":{"tier":"` + tier + `"}}}`)
		if _, err := deployments.Patch(ctx, "canary", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
			t.Fatal(err)
		}
	}
	// A drift of web, seen after the canary's edits by the same informer.
	patch = []byte(`{"metadata":{"labels":{"tier":"hacked"}}}`)
	if _, err := deployments.Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "web's drift noted", func() bool {
		return slices.Contains(appStatus(r, "web").Drift, "Deployment/"+ns+"/web")
	})
	if drift := appStatus(r, "web").Drift; !slices.Contains(drift, "Deployment/"+ns+"/canary") {
		t.Errorf("drift %v, want the canary, whose label deliver no longer owns", drift)
	}
	suspend("null")
	waitFor(t, 15*time.Second, "web reverted, the app settled", func() bool {
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Labels["tier"] == "web" && !appStatus(r, "web").Suspended && settled() &&
			metricSum(t, r, "deliver_reconcile_runs_total", "web") >= runs+3
	})
	if got := metricSum(t, r, "deliver_reconcile_runs_total", "web") - runs; got != 3 {
		t.Errorf("%v runs after resuming, want 3: one for both drifts", got)
	}
}
