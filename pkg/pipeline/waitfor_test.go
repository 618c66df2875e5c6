package pipeline

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestWaitFor: an app's waitFor names objects that are not its own (as
// Flux's Kustomization healthChecks): the diff says the run waits for
// them; an apply, though the app does not wait, fails once the timeout
// passes while one is missing, naming it; after another writer made it,
// the next apply waits for the app's health check of its kind, and
// succeeds once it holds; the inventory lists only the app's object; an
// apply with nothing changed (the app not rendered) still waits for it. A
// cluster-scoped kind loses the app's
// namespace; an unknown kind fails the plan naming the object.
func TestWaitFor(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	config := func(waitFor string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: " + ns + "\n  manifests: {path: web}\n" +
			"  wait: false\n  waitTimeout: 2s\n" +
			"  healthChecks: [{apiVersion: v1, kind: Secret, current: \"has(self.data) && 'ready' in self.data\"}]\n" +
			"  waitFor:\n" + waitFor
	}
	refs := "  - {apiVersion: v1, kind: Secret, name: issued}\n  - {apiVersion: v1, kind: Namespace, name: " + ns + "}\n"
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml": config(refs),
		"web/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
	})
	text := writtenDiff(t, mustRun(t, "diff", Diff, opts))
	for _, want := range []string{"Secret/" + ns + "/issued (not the app's) will be waited for", "Namespace/" + ns + " (not the app's) will be waited for"} {
		if !strings.Contains(text, want) {
			t.Errorf("the diff lacks %q:\n%s", want, text)
		}
	}

	res, err := Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "Secret/"+ns+"/issued: NotFound") || strings.Contains(err.Error(), "Namespace/"+ns+":") {
		t.Fatalf("apply while the Secret is missing: %v, want the wait to fail naming it (and not the namespace, which is ready)", err)
	}

	// Made, but not ready by the app's health check for Secrets.
	secrets := env.Client().CoreV1().Secrets(ns)
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "issued"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "Secret/"+ns+"/issued: InProgress") {
		t.Fatalf("apply while the health check says the Secret is not ready: %v, want it named InProgress", err)
	}
	if _, err := secrets.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "issued"}, Data: map[string][]byte{"ready": []byte("yes")}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "apply once the Secret is ready", Apply, opts)
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	if i, err := mgr.ReadInventory(ctx, "web"); err != nil || len(i.Entries) != 1 || i.Entries[0].Kind != "ConfigMap" {
		t.Errorf("inventory after the apply: %v, %v; want only the ConfigMap", i, err)
	}

	// Nothing changed: the app is planned from its inventory (not
	// rendered), and still waits for the Secret, as a Flux Kustomization
	// checks its healthChecks at every reconciliation.
	if res := mustRun(t, "apply with nothing changed", Apply, opts); !res.Apps[0].Unchanged {
		t.Errorf("apply with nothing changed rendered the app")
	}
	if _, err := secrets.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "issued"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !res.Apps[0].Unchanged || !strings.Contains(err.Error(), "Secret/"+ns+"/issued: InProgress") {
		t.Errorf("apply of the unchanged app once the Secret is no longer ready: %v (unchanged %v), want it named InProgress", err, res.Apps[0].Unchanged)
	}

	repo.WriteFile("deliver.yaml", config("  - {apiVersion: example.deliver.dev/v1, kind: Nothing, name: x}\n"))
	repo.CommitAll("an unknown kind")
	res, err = Diff(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "waitFor: Nothing/"+ns+"/x: no matches for kind") {
		t.Errorf("diff with an unknown kind in waitFor: %v, want an error naming the object", err)
	}
}
