package reconcile_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/deploy"
)

// TestTenantReconciler: a reconciler whose own rights are those of tenant
// mode (examples/identity/reconciler-rbac.yaml: impersonate ServiceAccounts
// named deployer, read the delivered kinds; deploy/rbac.yaml's Role in its
// inventory namespace) delivers an app as the app's ServiceAccount, which
// may write its namespace. In the same loop, an app whose ServiceAccount
// may not write fails naming it, and an app with no ServiceAccount fails
// too: the reconciler cannot write as itself, so what it delivered, it
// delivered as the ServiceAccount.
func TestTenantReconciler(t *testing.T) {
	ns, locked := env.Namespace(t), env.Namespace(t)
	env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update", "delete"}, "configmaps")
	denied := env.ServiceAccount(t, locked, "deployer")
	env.Grant(t, locked, locked, "deployer", []string{"get", "list", "watch"}, "configmaps")

	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: tenant, namespace: $NS, manifests: {path: tenant}, serviceAccountName: deployer}",
			"- {name: locked, namespace: "+locked+", manifests: {path: locked}, serviceAccountName: deployer}",
			"- {name: itself, namespace: $NS, manifests: {path: itself}}"),
		"tenant/cm.yaml": configMap("tenant", map[string]string{"color": "blue"}),
		"locked/cm.yaml": configMap("locked", map[string]string{"color": "blue"}),
		"itself/cm.yaml": configMap("itself", map[string]string{"color": "blue"}),
	})
	opts := options(t, repo, nil)
	opts.Config = tenantConfig(t, opts.Pipeline.Apply.InventoryNamespace)
	r, _ := start(t, opts)

	waitFor(t, 30*time.Second, "tenant delivered, the others failed", func() bool {
		return appStatus(r, "tenant").Revision == repo.Head() &&
			appStatus(r, "locked").Result == "failed" && appStatus(r, "itself").Result == "failed"
	})
	if got := cmData(t, ns, "tenant")["color"]; got != "blue" {
		t.Errorf("ConfigMap tenant: color %q", got)
	}
	for _, id := range [][2]string{{locked, "locked"}, {ns, "itself"}} {
		if cmData(t, id[0], id[1]) != nil {
			t.Errorf("ConfigMap %s/%s written by a run that may not write it", id[0], id[1])
		}
	}
	want := "dry-run apply ConfigMap/" + locked + "/locked as " + denied
	if msg := appStatus(r, "locked").Message; !strings.Contains(msg, want) || !strings.Contains(msg, "forbidden") {
		t.Errorf("app locked: message %q, want it to say %q", msg, want)
	}
	if msg := appStatus(r, "itself").Message; !strings.Contains(msg, "forbidden") {
		t.Errorf("app itself (no ServiceAccount): message %q, want forbidden", msg)
	}

	// A commit goes through the ServiceAccount as well.
	repo.WriteFile("tenant/cm.yaml", configMap("tenant", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	waitFor(t, 30*time.Second, "commit applied as the ServiceAccount", func() bool {
		return cmData(t, ns, "tenant")["color"] == "green" && appStatus(r, "tenant").Revision == head
	})

	// Drift is seen through the ServiceAccount's own watch of its
	// namespace (the reconciler may not list ConfigMaps anywhere but its
	// inventory namespace) and reverted as the ServiceAccount: no new
	// commit, and the full resync is an hour away.
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "tenant", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["color"] = "red"
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "drift of the tenant's ConfigMap reverted", func() bool {
		return cmData(t, ns, "tenant")["color"] == "green"
	})
}

// tenantConfig returns the client configuration of a reconciler with the
// rights of tenant mode (impersonation and its inventory namespace only), its inventory namespace being inv: the
// ServiceAccount deliver in inv, bound to the ClusterRole of
// examples/identity/reconciler-rbac.yaml and the Role of deploy/rbac.yaml,
// authenticated with a token of its own.
func tenantConfig(t *testing.T, inv string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	if _, err := cs.CoreV1().ServiceAccounts(inv).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deliver"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/identity/reconciler-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base, err := deploy.Manifests.ReadFile("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The cluster-wide names are the test's own.
	docs := strings.ReplaceAll(string(example), "name: deliver-reconcile-tenant", "name: deliver-tenant-"+inv) + "\n---\n" + string(base)
	docs = strings.ReplaceAll(docs, "deliver-system", inv)
	for _, doc := range strings.Split(docs, "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "ClusterRole":
			var o rbacv1.ClusterRole
			mustYAML(t, doc, &o)
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
			t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			mustYAML(t, doc, &o)
			if o.RoleRef.Name != "deliver-tenant-"+inv {
				continue // deploy/rbac.yaml's: the rights tenant mode does without
			}
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
			t.Cleanup(func() {
				_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
			})
		case "Role":
			var o rbacv1.Role
			mustYAML(t, doc, &o)
			_, err = cs.RbacV1().Roles(inv).Create(ctx, &o, metav1.CreateOptions{})
		case "RoleBinding":
			var o rbacv1.RoleBinding
			mustYAML(t, doc, &o)
			_, err = cs.RbacV1().RoleBindings(inv).Create(ctx, &o, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	user := "system:serviceaccount:" + inv + ":deliver"
	env.WaitAllowed(t, user, "update", "configmaps", inv, true)
	ttl := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(inv).CreateToken(ctx, "deliver", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{
		Host:            env.Config.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData},
		BearerToken:     tok.Status.Token,
		QPS:             env.Config.QPS,
		Burst:           env.Config.Burst,
	}
}

func mustYAML(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
}
