package reconcile_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/restart"
)

// TestReconcilerPostRenderAndRestart: the reconciler delivers a Helm app
// through its post-renderers and with restartOnConfigChange, as diff and
// apply do; a commit that changes the ConfigMap the Deployment reads moves
// the pod template's digest, and an edit that removes what a post-renderer
// added, or the digest, is drift that the reconciler reverts.
func TestReconcilerPostRenderAndRestart(t *testing.T) {
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, `- name: web
  namespace: $NS
  restartOnConfigChange: true
  wait: false # the rollout is not under test; the controller-manager of a busy machine is slow
  helm:
    chart: charts/web
    postRenderers:
      - kustomize:
          patches:
            - patch: |
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: web-config, annotations: {patched: "yes"}}
      - kustomize:
          commonLabels: {team: shop}`),
		"charts/web/Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"charts/web/values.yaml": "color: blue\n",
		"charts/web/templates/web.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {color: {{ .Values.color | quote }}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx
          envFrom: [{configMapRef: {name: web-config}}]
`,
	})
	r, _ := start(t, options(t, repo, env.Config))
	ctx := context.Background()
	cs := env.Client()
	deployment := func() *appsv1.Deployment {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return d
	}
	digest := func() string {
		if d := deployment(); d != nil {
			return d.Spec.Template.Annotations[restart.Annotation]
		}
		return ""
	}

	waitFor(t, 60*time.Second, "first delivery", func() bool {
		return appStatus(r, "web").Revision == repo.Head()
	})
	d := deployment()
	if d == nil || d.Labels["team"] != "shop" || d.Spec.Template.Labels["team"] != "shop" {
		t.Fatalf("Deployment web: %v; want the post-renderer's label team=shop on it and its pod template", d)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil || cm.Annotations["patched"] != "yes" {
		t.Fatalf("ConfigMap web-config: %v, %v; want the post-renderer's patch", cm, err)
	}
	first := digest()
	if first == "" {
		t.Fatalf("pod template has no %s", restart.Annotation)
	}

	// A commit that changes what the Deployment reads rolls it.
	repo.WriteFile("charts/web/values.yaml", "color: green\n")
	head := repo.CommitAll("green")
	waitFor(t, 30*time.Second, "commit delivered", func() bool { return appStatus(r, "web").Revision == head })
	second := digest()
	if second == "" || second == first {
		t.Errorf("digest after the ConfigMap changed: %q, was %q; want a new one", second, first)
	}

	// Drift: the post-renderer's label taken off, the digest edited.
	for _, p := range []string{`{"metadata":{"labels":{"team":null}}}`, `{"spec":{"template":{"metadata":{"annotations":{"` + restart.Annotation + `":"edited"}}}}}`} {
		if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(p), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "drift reverted: "+p, func() bool {
			d := deployment()
			return d != nil && d.Labels["team"] == "shop" && d.Spec.Template.Annotations[restart.Annotation] == second
		})
	}
}
