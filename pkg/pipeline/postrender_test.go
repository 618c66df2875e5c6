package pipeline

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPostRenderersApplied: against a real git server and control plane, a
// Helm app's post-renderers (a JSON 6902 patch selected by label, a
// strategic merge patch, images, commonLabels) are in what apply writes;
// a diff afterwards is clean and renders nothing; a change of a patch in
// deliver.yaml alone (no file of the chart changed) makes diff and apply
// render the app again, not skip it as unchanged, and the new value goes
// live.
func TestPostRenderersApplied(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	config := func(replicas string) string {
		return strings.ReplaceAll(strings.ReplaceAll(`apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- name: web
  namespace: NS
  wait: false # this package's control plane runs no controllers
  helm:
    chart: charts/web
    postRenderers:
    - kustomize:
        patches:
        - target: {kind: Deployment, labelSelector: "app=web"}
          patch: |
            - op: replace
              path: /spec/replicas
              value: REPLICAS
        - patch: |
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: web}
            data: {patched: "true"}
        images: [{name: nginx, newName: registry.example/nginx, newTag: "1.29"}]
        commonLabels: {team: shop}
`, "NS", ns), "REPLICAS", replicas)
	}
	files := map[string]string{
		"deliver.yaml":           config("2"),
		"charts/web/Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"charts/web/values.yaml": "image: nginx:1.27\n",
		"charts/web/templates/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  replicas: 1\n" +
			"  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: {{ .Values.image }}\n" +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  color: blue\n",
	}
	repo, opts := servedRepo(t, ns, files)

	run := func(what string, do func(context.Context, Options) (*Result, error), want []string) *Result {
		t.Helper()
		return runRendering(t, what, do, opts, want)
	}
	live := func(wantReplicas int32) {
		t.Helper()
		d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := *d.Spec.Replicas; got != wantReplicas {
			t.Errorf("replicas = %d, want %d (the JSON 6902 patch)", got, wantReplicas)
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != "registry.example/nginx:1.29" {
			t.Errorf("image = %q, want the post-renderer's", got)
		}
		if d.Labels["team"] != "shop" || d.Spec.Selector.MatchLabels["team"] != "shop" || d.Spec.Template.Labels["team"] != "shop" {
			t.Errorf("commonLabels missing: labels %v, selector %v, template %v", d.Labels, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
		if data := cmData(t, ns, "web"); data["patched"] != "true" || data["color"] != "blue" {
			t.Errorf("ConfigMap data = %v, want the strategic merge patch merged in", data)
		}
	}

	run("first apply", Apply, []string{"web"})
	live(2)
	if res := run("diff after apply", Diff, nil); res.HasChanges() {
		t.Error("diff after apply has changes")
	}

	// Only the patch in deliver.yaml changes.
	repo.WriteFile("deliver.yaml", config("3"))
	repo.CommitAll("three replicas")
	if res := run("diff after the patch changed", Diff, []string{"web"}); !res.HasChanges() {
		t.Error("diff after the post-renderer changed has no changes")
	}
	run("apply after the patch changed", Apply, []string{"web"})
	live(3)
	if res := run("diff after the second apply", Diff, nil); res.HasChanges() {
		t.Error("diff after the second apply has changes")
	}
}
