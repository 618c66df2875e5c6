package pipeline

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestCreateNamespace: an app with createNamespace: true whose namespace
// is missing and not in git gets it created first, as Helm's
// --create-namespace does: the diff says so and plans the app's objects
// (no dry run against a namespace not there yet), the apply creates it
// without deliver's labels and out of the inventory, the next diff has
// no change, and removing the app leaves it. Without createNamespace the
// same app fails naming the namespace, and writes nothing.
func TestCreateNamespace(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	inv := env.Namespace(t)
	ctx := context.Background()
	// Namespaces no test made: env.Namespace would create them. Deleted
	// at the end (they stay terminating: this control plane runs no
	// namespace controller).
	made, missing := inv+"-made", inv+"-missing"
	core := env.Client().CoreV1()
	t.Cleanup(func() {
		for _, ns := range []string{made, missing} {
			_ = core.Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	config := func(apps string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n" + apps
	}
	web := "- {name: web, namespace: " + made + ", manifests: {path: web}, createNamespace: true}\n"
	files := map[string]string{
		"deliver.yaml": config(web),
		"web/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
	}
	repo, opts := servedRepo(t, inv, files)

	res := mustRun(t, "diff", Diff, opts)
	text := writtenDiff(t, res)
	if !res.HasChanges() || !strings.Contains(text, "Namespace/"+made+" will be created first") || !strings.Contains(text, "ConfigMap/"+made+"/web create") {
		t.Errorf("diff: changes %v, want the namespace and the ConfigMap created:\n%s", res.HasChanges(), text)
	}
	if _, err := core.Namespaces().Get(ctx, made, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the diff created the namespace: %v", err)
	}

	res = mustRun(t, "apply", Apply, opts)
	ns, err := core.Namespaces().Get(ctx, made, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace after the apply: %v", err)
	}
	if _, labelled := ns.Labels[apply.LabelApp]; labelled {
		t.Errorf("the created namespace carries %s: %v", apply.LabelApp, ns.Labels)
	}
	if _, err := core.ConfigMaps(made).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap after the apply: %v", err)
	}
	if rep := res.Apps[0].Report; rep == nil || !strings.Contains(rep.Summary(), "2 created") {
		t.Errorf("apply report: %v, want the namespace and the ConfigMap created", rep)
	}
	if res := mustRun(t, "diff again", Diff, opts); res.HasChanges() {
		t.Errorf("diff after the apply has changes:\n%s", writtenDiff(t, res))
	}

	// Without createNamespace: refused, naming the namespace.
	repo.WriteFile("deliver.yaml", config(web+"- {name: api, namespace: "+missing+", manifests: {path: web}}\n"))
	repo.CommitAll("api in a missing namespace")
	res, err = Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), `namespaces "`+missing+`" not found`) {
		t.Errorf("apply of an app whose namespace is missing: %v, want an error naming it", err)
	}

	// The app leaves: its objects go, the namespace stays.
	repo.WriteFile("deliver.yaml", config("- {name: other, namespace: "+inv+", manifests: {path: other}}\n"))
	repo.WriteFile("other/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {a: b}\n")
	repo.CommitAll("web leaves")
	o := opts
	o.Apps = []string{"web"}
	mustRun(t, "remove web", Remove, o)
	if _, err := core.ConfigMaps(made).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("web's ConfigMap after the removal: %v", err)
	}
	if ns, err := core.Namespaces().Get(ctx, made, metav1.GetOptions{}); err != nil || ns.DeletionTimestamp != nil {
		t.Errorf("the created namespace after the removal: %v (deleting %v), want it left", err, ns != nil && ns.DeletionTimestamp != nil)
	}
}

// TestCreateNamespaceAsServiceAccount: an app with serviceAccountName
// creates its missing namespace as that ServiceAccount (as a HelmRelease's
// install.createNamespace does with its impersonated client), whose object
// cannot exist yet: impersonation needs only its name. Without a grant on
// namespaces the run fails naming the namespace and writes nothing; with
// one it creates the namespace and the app's objects.
func TestCreateNamespaceAsServiceAccount(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	inv := env.Namespace(t)
	ctx := context.Background()
	ns := inv + "-tenant"
	core, rbac := env.Client().CoreV1(), env.Client().RbacV1()
	t.Cleanup(func() {
		_ = core.Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), ns, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	user := "system:serviceaccount:" + ns + ":deployer"
	// What a tenant's deployer may do anywhere: its ConfigMaps (no
	// RoleBinding can be made in a namespace that does not exist yet).
	rule := func(resources ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: resources, Verbs: []string{"get", "list", "watch", "create", "patch", "update"}}
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns}, Rules: []rbacv1.PolicyRule{rule("configmaps")}}
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: ns}}}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitAllowed(t, user, "create", "configmaps", "default", true)

	_, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n" +
			"- {name: tenant, namespace: " + ns + ", manifests: {path: tenant}, createNamespace: true, serviceAccountName: deployer}\n",
		"tenant/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tenant}\ndata: {a: b}\n",
	})
	res, err := Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), ns) || !strings.Contains(err.Error(), "deployer") {
		t.Errorf("apply without a grant on namespaces: %v, want a refusal naming the namespace and the ServiceAccount", err)
	}
	if _, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the namespace after the refused run: %v, want not found", err)
	}

	role.Rules = append(role.Rules, rule("namespaces"))
	if _, err := rbac.ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitAllowed(t, user, "create", "namespaces", "", true)
	mustRun(t, "apply with a grant on namespaces", Apply, opts)
	if _, err := core.ConfigMaps(ns).Get(ctx, "tenant", metav1.GetOptions{}); err != nil {
		t.Errorf("the app's ConfigMap: %v", err)
	}
	// deliver's own identity may create namespaces: the refusal above is
	// the ServiceAccount's.
	if _, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("the namespace after the apply: %v", err)
	}
}
