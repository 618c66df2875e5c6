package pipeline

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestKustomizeHelmChartsDelivered: a kustomize app whose kustomization
// inflates a chart of the repository with helmCharts, as Argo CD's
// --enable-helm builds do, is delivered on a real control plane: the
// chart's objects land in the release namespace (the kustomization's
// namespace leaves them alone, as kustomize does), the chart's
// pre-install hook runs as a hook, the chart sees the cluster's API
// versions (a CRD installed there), as Argo CD's builds pass them and as a
// Helm app sees them, where an offline render sees helm's defaults, a
// second diff plans the app from its inventory, and a change of the
// chart's values file (a read of the render) is a change.
func TestKustomizeHelmChartsDelivered(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, other := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	group := "widgets." + ns + ".caps.deliver.dev"
	kubectlApply(t, capsCRD(group, "Widget", "widgets"))
	waitServed(t, group+"/v1")
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		_ = dyn.Resource(crds).Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{})
	})
	repo, opts := servedRepo(t, ns, map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: " + ns + ", wait: false, allowedNamespaces: [" + ns + ", " + other + "], kustomize: {path: app}}\n",
		"app/kustomization.yaml": "namespace: " + ns + "\nresources: [own.yaml]\nhelmCharts:\n- {name: web, releaseName: shop, namespace: " + other +
			", valuesInline: {level: debug}}\n",
		"app/own.yaml":                       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\ndata: {a: b}\n",
		"app/charts/web/Chart.yaml":          "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"app/charts/web/values.yaml":         "level: info\ncolor: blue\n",
		"app/charts/web/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}, namespace: {{ .Release.Namespace }}}\ndata: {level: {{ .Values.level }}, color: {{ .Values.color }}, widgets: {{ .Capabilities.APIVersions.Has \"" + group + "/v1/Widget\" | quote }}}\n",
		"app/charts/web/templates/hook.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first-install\n  namespace: {{ .Release.Namespace }}\n  annotations: {helm.sh/hook: pre-install}\ndata: {at: install}\n",
	})
	res := mustRun(t, "apply", Apply, opts)
	ran := false
	for _, r := range res.Apps[0].Report.Results {
		ran = ran || r.Action == apply.HookRan && r.ID.Name == "first-install"
	}
	if !ran {
		t.Errorf("report %+v: want the chart's pre-install hook run", res.Apps[0].Report.Results)
	}
	core := env.Client().CoreV1()
	cm, err := core.ConfigMaps(other).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's ConfigMap is not in the release namespace: %v", err)
	}
	if cm.Data["level"] != "debug" || cm.Data["color"] != "blue" || cm.Data["widgets"] != "true" {
		t.Errorf("chart ConfigMap data %v: want level debug (valuesInline), color blue (values.yaml), widgets true (the cluster's CRD)", cm.Data)
	}
	ro := Options{Repo: opts.Repo, Ref: "main", CacheDir: opts.CacheDir, Secrets: SecretsOptions{Getenv: func(string) string { return "" }}}
	for _, o := range mustRun(t, "render", Render, ro).Apps[0].Set.Objects {
		if o.GetName() == "shop" {
			if got, _, _ := unstructured.NestedString(o.Object, "data", "widgets"); got != "false" {
				t.Errorf("offline render: widgets %q, want false (helm's default API versions)", got)
			}
		}
	}
	if _, err := core.ConfigMaps(other).Get(ctx, "first-install", metav1.GetOptions{}); err != nil {
		t.Errorf("the pre-install hook did not run: %v", err)
	}
	if _, err := core.ConfigMaps(ns).Get(ctx, "own", metav1.GetOptions{}); err != nil {
		t.Errorf("the kustomization's own ConfigMap: %v", err)
	}
	res = mustRun(t, "diff", Diff, opts)
	if res.HasChanges() || !res.Apps[0].Unchanged {
		t.Errorf("diff after the apply: changes %v, unchanged %v; want none, planned from the inventory", res.HasChanges(), res.Apps[0].Unchanged)
	}
	repo.WriteFile("app/charts/web/values.yaml", "level: info\ncolor: green\n")
	repo.CommitAll("green")
	res = mustRun(t, "diff of the chart's new values", Diff, opts)
	if !res.HasChanges() || res.Apps[0].Unchanged {
		t.Errorf("a change of the chart's values.yaml is no change (unchanged %v)", res.Apps[0].Unchanged)
	}
}

// TestKustomizeFluxFields: a kustomize app with the fields a Flux
// Kustomization adds to its path (targetNamespace, namePrefix, patches,
// images, a component) and its commonMetadata is delivered on a real
// control plane with them;
// a change of one of them alone is a change of the app's inputs.
func TestKustomizeFluxFields(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, target := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	app := func(tag string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: " + ns + "\n  wait: false\n  allowedNamespaces: ['*']\n" +
			"  commonMetadata: {labels: {team: shop}, annotations: {owner: sre}}\n" +
			"  kustomize:\n    path: app\n    targetNamespace: " + target + "\n    namePrefix: fx-\n    components: [../tls, ../absent]\n    ignoreMissingComponents: true\n" +
			"    images: [{name: nginx, newTag: '" + tag + "'}]\n" +
			"    patches: [{target: {kind: Deployment}, patch: '[{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 3}]'}]\n" +
			"environments:\n  prod:\n    apps:\n      web:\n        commonMetadata: {labels: {cluster: prod}}\n" +
			"        kustomize:\n          images: [{name: nginx, newTag: '1.31'}]\n" +
			"          patches: [{target: {kind: Deployment}, patch: '[{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 4}]'}]\n"
	}
	repo, opts := servedRepo(t, ns, map[string]string{
		"deliver.yaml":           app("1.29"),
		"app/kustomization.yaml": "resources: [web.yaml]\nimages: [{name: nginx, newName: mirror.example/nginx}]\n",
		"app/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n" +
			"  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
		"tls/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [tls.yaml]\n",
		"tls/tls.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tls}\ndata: {enabled: \"true\"}\n",
	})
	mustRun(t, "apply", Apply, opts)
	d, err := env.Client().AppsV1().Deployments(target).Get(ctx, "fx-web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Deployment fx-web in the target namespace: %v", err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != "mirror.example/nginx:1.29" {
		t.Errorf("image %s, want the kustomization's newName with the app's newTag", got)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3 (the app's patch)", d.Spec.Replicas)
	}
	if d.Labels["team"] != "shop" || d.Annotations["owner"] != "sre" || len(d.Spec.Selector.MatchLabels) != 1 {
		t.Errorf("labels %v, annotations %v, selector %v: want commonMetadata on the object only", d.Labels, d.Annotations, d.Spec.Selector.MatchLabels)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(target).Get(ctx, "fx-tls", metav1.GetOptions{}); err != nil {
		t.Errorf("the component's ConfigMap: %v", err)
	}
	if res := mustRun(t, "diff", Diff, opts); res.HasChanges() || !res.Apps[0].Unchanged {
		t.Errorf("diff after the apply: changes %v, unchanged %v", res.HasChanges(), res.Apps[0].Unchanged)
	}
	repo.WriteFile("deliver.yaml", app("1.30"))
	repo.CommitAll("new tag")
	if res := mustRun(t, "diff of a new tag", Diff, opts); !res.HasChanges() || res.Apps[0].Unchanged {
		t.Errorf("a new image tag in deliver.yaml is no change (unchanged %v)", res.Apps[0].Unchanged)
	}

	// The environment's image tag, patch and label, over the app's (a
	// render: the cluster's app is this run's environment's, and another
	// environment's run is refused).
	res := mustRun(t, "render prod", Render, Options{Repo: opts.Repo, Ref: "main", CacheDir: opts.CacheDir, Env: "prod",
		Secrets: SecretsOptions{Getenv: func(string) string { return "" }}})
	var got *unstructured.Unstructured
	for _, o := range res.Apps[0].Set.Objects {
		if o.GetKind() == "Deployment" {
			got = o.Unstructured
		}
	}
	if got == nil {
		t.Fatal("render prod: no Deployment")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, d); err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != "mirror.example/nginx:1.31" {
		t.Errorf("prod image %s, want the environment's newTag", got)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("prod replicas %v, want 4 (the environment's patch, after the app's)", d.Spec.Replicas)
	}
	if d.Labels["team"] != "shop" || d.Labels["cluster"] != "prod" {
		t.Errorf("prod labels %v, want the app's and the environment's", d.Labels)
	}
}
