package pipeline

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// TestBuiltinScope: the table render falls back to without a cluster knows
// the cluster-scoped kinds of Kubernetes beyond the first six, takes
// other kinds as namespaced, and is overridden by the CRDs of the run.
func TestBuiltinScope(t *testing.T) {
	t.Parallel()
	crds := map[schema.GroupKind]bool{
		{Group: "example.com", Kind: "Widget"}: false,
		{Group: "example.com", Kind: "Gadget"}: true,
	}
	tests := []struct {
		group, kind string
		namespaced  bool
	}{
		{"", "Namespace", false},
		{"", "PersistentVolume", false},
		{"", "Node", false},
		{"networking.k8s.io", "IngressClass", false},
		{"admissionregistration.k8s.io", "ValidatingWebhookConfiguration", false},
		{"admissionregistration.k8s.io", "MutatingWebhookConfiguration", false},
		{"admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", false},
		{"apiregistration.k8s.io", "APIService", false},
		{"node.k8s.io", "RuntimeClass", false},
		{"storage.k8s.io", "CSIDriver", false},
		{"resource.k8s.io", "DeviceClass", false},
		{"rbac.authorization.k8s.io", "ClusterRole", false},
		{"example.com", "Widget", false},
		{"", "ConfigMap", true},
		{"", "PersistentVolumeClaim", true},
		{"apps", "Deployment", true},
		{"networking.k8s.io", "Ingress", true},
		{"rbac.authorization.k8s.io", "Role", true},
		{"resource.k8s.io", "ResourceClaim", true},
		{"storage.k8s.io", "CSIStorageCapacity", true},
		{"example.com", "Gadget", true},
		{"example.com", "Unknown", true},
		{"", "IngressClass", true}, // the group is part of the kind
	}
	scope := builtinScope(crds)
	for _, tt := range tests {
		got, err := scope(schema.GroupKind{Group: tt.group, Kind: tt.kind})
		if err != nil || got != tt.namespaced {
			t.Errorf("%s.%s: namespaced = %v, %v; want %v", tt.kind, tt.group, got, err, tt.namespaced)
		}
	}
}

// TestBuiltinScopeMatchesServer: the built-in table agrees with the real
// API server (Kubernetes 1.37) on every kind it serves, so render without
// a cluster sees the objects two apps share as diff and apply do.
func TestBuiltinScopeMatchesServer(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(gv.Group, ".example.com") { // CRDs of other tests
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // subresource
			}
			gk := schema.GroupKind{Group: gv.Group, Kind: r.Kind}
			if got := !builtinClusterScoped[gk]; got != r.Namespaced {
				t.Errorf("%s: table says namespaced = %v, the server %v", gk, got, r.Namespaced)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Errorf("only %d resources checked: discovery incomplete?", checked)
	}
}

// clusterOptions are the options of a run against the test cluster, with
// the inventories in ns.
func clusterOptions(dir, ns string) Options {
	return Options{
		Path:    dir,
		Kube:    func(string) (*rest.Config, error) { return env.Config, nil },
		Apply:   apply.Options{InventoryNamespace: ns},
		Secrets: SecretsOptions{Getenv: func(string) string { return "" }},
	}
}

// TestTwoAppsOneClusterObject: two apps of one deliver.yaml, in different
// namespaces, that both declare an IngressClass and a
// ValidatingWebhookConfiguration of the same name (one of them with a
// namespace a template wrote into it) are refused, naming both apps and
// the objects: by render from its built-in table, by diff and apply from
// the cluster's discovery. Apply writes nothing.
func TestTwoAppsOneClusterObject(t *testing.T) {
	t.Parallel()
	ns := "owners"
	if env != nil {
		ns = env.Namespace(t)
	}
	dir := t.TempDir()
	objs := func(namespace string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: NS-nginx" + namespace + "}\nspec: {controller: example.com/nginx}\n" +
			"---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: NS-hook}\nwebhooks: []\n" +
			"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
	}
	files := map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: first, namespace: NS, manifests: {path: first}}\n" +
			"- {name: second, namespace: NS-b, manifests: {path: second}}\n",
		"first/objects.yaml":  objs(""),
		"second/objects.yaml": objs(", namespace: NS-b"),
	}
	for name, content := range files {
		files[name] = strings.ReplaceAll(content, "NS", ns)
	}
	testenv.WriteFiles(t, dir, files)
	wantErr := []string{
		"IngressClass/" + ns + "-nginx: declared by two apps, first and second (first: first/objects.yaml#0; second: second/objects.yaml#0)",
		"ValidatingWebhookConfiguration/" + ns + "-hook: declared by two apps, first and second",
	}
	runs := []struct {
		name    string
		run     func(context.Context, Options) (*Result, error)
		cluster bool
	}{
		{"render", Render, false},
		{"diff", Diff, true},
		{"apply", Apply, true},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			if r.cluster && env == nil {
				t.Skip("no control plane (-short)")
			}
			opts := Options{Path: dir, Secrets: SecretsOptions{Getenv: func(string) string { return "" }}}
			if r.cluster {
				opts = clusterOptions(dir, ns)
			}
			_, err := r.run(context.Background(), opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			// Two apps in different namespaces may each have a ConfigMap of
			// the same name.
			if strings.Contains(err.Error(), "ConfigMap") {
				t.Errorf("namespaced ConfigMaps of two namespaces reported:\n%v", err)
			}
		})
	}
	if env != nil {
		_, err := env.Client().NetworkingV1().IngressClasses().Get(context.Background(), ns+"-nginx", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("apply wrote the IngressClass: get = %v, want not found", err)
		}
	}
}

// TestClusterScopedCustomResource: custom resources of a cluster-scoped
// CRD are one object whatever the namespaces of the apps that declare
// them, whether the CRD is rendered in the same run or only installed in
// the cluster (known from discovery alone); those of a namespaced CRD in
// two namespaces are two objects.
func TestClusterScopedCustomResource(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	tests := []struct {
		name      string
		scope     string
		installed bool // installed before the run instead of rendered in it
		conflict  bool
	}{
		{"rendered cluster CRD", "Cluster", false, true},
		{"installed cluster CRD", "Cluster", true, true},
		{"rendered namespaced CRD", "Namespaced", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			group := ns + ".example.com"
			crd := "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets." + group + "}\n" +
				"spec:\n  group: " + group + "\n  scope: " + tt.scope + "\n  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}\n" +
				"  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n"
			widget := "apiVersion: " + group + "/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n"
			t.Cleanup(func() {
				dyn, err := dynamic.NewForConfig(env.Config)
				if err == nil {
					gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
					_ = dyn.Resource(gvr).Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{})
				}
			})
			first := widget
			if tt.installed {
				installCRD(t, ns, crd)
			} else {
				first = crd + "---\n" + widget
			}
			dir := t.TempDir()
			testenv.WriteFiles(t, dir, map[string]string{
				"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
					"- {name: first, namespace: " + ns + ", manifests: {path: first}}\n" +
					"- {name: second, namespace: " + ns + "-b, manifests: {path: second}}\n",
				"first/objects.yaml":  first,
				"second/objects.yaml": widget,
			})
			_, err := Diff(ctx, clusterOptions(dir, ns))
			want := "Widget/w: declared by two apps, first and second (first: first/objects.yaml#"
			switch {
			case tt.conflict && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("err = %v, want one containing %q", err, want)
			case !tt.conflict && err != nil:
				t.Errorf("err = %v, want none: the two Widgets are in two namespaces", err)
			}
		})
	}
}

// installCRD creates a CRD and waits until it is served, as an apply does.
func installCRD(t *testing.T, ns, manifest string) {
	t.Helper()
	var u map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &u); err != nil {
		t.Fatal(err)
	}
	m, err := apply.New(env.Config, apply.Options{InventoryNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	set := &object.Set{Objects: []*object.Object{{Unstructured: &unstructured.Unstructured{Object: u}}}}
	if _, err := m.Apply(context.Background(), set, apply.PlanOptions{App: "crd-" + ns}); err != nil {
		t.Fatal(err)
	}
}
