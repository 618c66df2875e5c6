package apply_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/apply"
)

// policyApp is an app of one plain ConfigMap, a Secret that Flux's
// IfNotPresent policy creates once, a ConfigMap its Ignore policy leaves
// to someone else, and two ConfigMaps that may leave git: one that Argo
// CD's Prune=false sync option keeps, one pruned.
func policyApp(v string, withLeaving bool) string {
	m := `
apiVersion: v1
kind: ConfigMap
metadata: {name: plain, namespace: NS}
data: {v: "V"}
---
apiVersion: v1
kind: Secret
metadata: {name: seed, namespace: NS, annotations: {kustomize.toolkit.fluxcd.io/ssa: IfNotPresent}}
stringData: {token: "V"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: manual, namespace: NS, annotations: {kustomize.toolkit.fluxcd.io/ssa: ignore}}
data: {v: "V"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: hotfix, namespace: NS}
data: {v: "V"}
`
	if withLeaving {
		m += `---
apiVersion: v1
kind: ConfigMap
metadata: {name: kept, namespace: NS, annotations: {argocd.argoproj.io/sync-options: "Replace=true, Prune=false"}}
data: {v: "V"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gone, namespace: NS}
data: {v: "V"}
`
	}
	return strings.ReplaceAll(m, `"V"`, `"`+v+`"`)
}

// TestApplyPolicies: Flux's kustomize.toolkit.fluxcd.io/ssa policies and
// Argo CD's Prune=false sync option, as those tools apply them:
// IfNotPresent creates the object once and then leaves it as it is, edits
// by others and new values in git alike, and creates it again once it is
// gone; Ignore never applies the object; Prune=false keeps an object that
// left git; reconcile: disabled on the object in the cluster leaves it
// alone until the annotation is gone. Objects left alone are no drift (no version recorded) and do
// not keep an app with unchanged inputs from being planned from its
// inventory. An unknown policy is an error naming the object.
func TestApplyPolicies(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cs := env.Client()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Wait: true, Inputs: &apply.Inputs{Digest: "sha256:inputs"}}
	if _, err := m.Apply(ctx, objects(t, ns, policyApp("1", true)), opts); err != nil {
		t.Fatal(err)
	}
	secret := func() string {
		t.Helper()
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "seed", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["token"])
	}
	cm := func(name string) (string, bool) {
		t.Helper()
		c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return c.Data["v"], true
	}
	if got := secret(); got != "1" {
		t.Errorf("IfNotPresent Secret not created: token %q", got)
	}
	if _, ok := cm("manual"); ok {
		t.Error("the Ignore ConfigMap was created")
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	policies := map[string]string{}
	for _, e := range inv.Entries {
		if e.Policy != "" {
			policies[e.Name] = e.Policy + " " + e.ResourceVersion
		}
	}
	if diff := cmp.Diff(map[string]string{"seed": "IfNotPresent ", "manual": "Ignore "}, policies); diff != "" {
		t.Errorf("inventory entries left alone (-want +got):\n%s", diff)
	}
	same := func(*apply.Inputs) bool { return true }
	if p, err := m.PlanUnchanged(ctx, opts, same); err != nil || p == nil {
		t.Errorf("PlanUnchanged = %v, %v: objects left alone keep the app from being planned from its inventory", p, err)
	}

	// Someone fills in the Secret and makes the ignored ConfigMap.
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, "seed", types.MergePatchType, []byte(`{"stringData":{"token":"theirs"}}`), metav1.PatchOptions{FieldManager: "cert-manager"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "manual", types.ApplyPatchType, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"manual"},"data":{"v":"theirs"}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	if p, err := m.PlanUnchanged(ctx, opts, same); err != nil || p == nil {
		t.Errorf("PlanUnchanged after edits of objects left alone = %v, %v, want a plan", p, err)
	}
	// git changes every object and drops two.
	p, err := m.Plan(ctx, objects(t, ns, policyApp("2", false)), opts)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[string]string{}
	for _, c := range p.Changes {
		notes[c.ID.Name] = string(c.Type) + ": " + c.Note
	}
	want := map[string]string{
		"plain":  "update: ",
		"hotfix": "update: ",
		"seed":   "unchanged: kustomize.toolkit.fluxcd.io/ssa: IfNotPresent: exists, left as it is",
		"manual": "unchanged: kustomize.toolkit.fluxcd.io/ssa: Ignore: not applied",
		"gone":   "delete: ",
	}
	if diff := cmp.Diff(want, notes); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if _, err := m.Execute(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := secret(); got != "theirs" {
		t.Errorf("IfNotPresent Secret token %q, want theirs (left as it is)", got)
	}
	if v, _ := cm("manual"); v != "theirs" {
		t.Errorf("Ignore ConfigMap v = %q, want theirs", v)
	}
	if v, _ := cm("plain"); v != "2" {
		t.Errorf("plain ConfigMap v = %q, want 2", v)
	}
	if _, ok := cm("gone"); ok {
		t.Error("the ConfigMap that left git was not pruned")
	}
	if v, ok := cm("kept"); !ok || v != "1" {
		t.Errorf("the Prune=false ConfigMap was pruned (v %q, exists %v)", v, ok)
	}

	// Once gone, an IfNotPresent object is created again.
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, "seed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, err := m.PlanUnchanged(ctx, opts, same); err != nil || p != nil {
		t.Errorf("PlanUnchanged with the IfNotPresent Secret gone = %v, %v, want none (render)", p, err)
	}
	if _, err := m.Apply(ctx, objects(t, ns, policyApp("2", false)), opts); err != nil {
		t.Fatal(err)
	}
	if got := secret(); got != "2" {
		t.Errorf("IfNotPresent Secret re-created with token %q, want 2", got)
	}

	// Someone pauses deliver for one object in the cluster to try a hot
	// fix (Flux's reconcile: disabled): left alone while it is there,
	// taken back once it is gone.
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "hotfix", types.MergePatchType, []byte(`{"metadata":{"annotations":{"kustomize.toolkit.fluxcd.io/reconcile":"disabled"}},"data":{"v":"fix"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, objects(t, ns, policyApp("3", false)), opts); err != nil {
		t.Fatal(err)
	}
	if v, _ := cm("hotfix"); v != "fix" {
		t.Errorf("paused ConfigMap v = %q, want the hot fix kept", v)
	}
	if v, _ := cm("plain"); v != "3" {
		t.Errorf("plain ConfigMap v = %q, want 3", v)
	}
	if p, err := m.PlanUnchanged(ctx, opts, same); err != nil || p == nil {
		t.Errorf("PlanUnchanged with an object paused = %v, %v, want a plan", p, err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "hotfix", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/annotations/kustomize.toolkit.fluxcd.io~1reconcile"}]`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if p, err := m.PlanUnchanged(ctx, opts, same); err != nil || p != nil {
		t.Errorf("PlanUnchanged once the pause is gone = %v, %v, want none (render)", p, err)
	}
	if _, err := m.Apply(ctx, objects(t, ns, policyApp("3", false)), opts); err != nil {
		t.Fatal(err)
	}
	if v, _ := cm("hotfix"); v != "3" {
		t.Errorf("ConfigMap v = %q after the pause, want git's 3", v)
	}

	bad := strings.Replace(policyApp("3", false), "IfNotPresent", "Sometimes", 1)
	_, err = m.Plan(ctx, objects(t, ns, bad), opts)
	if want := "Secret/" + ns + "/seed"; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `unknown policy "Sometimes"`) {
		t.Errorf("unknown policy: error %v, want one naming %s and the policy", err, want)
	}
}
