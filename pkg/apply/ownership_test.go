package apply_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// ownedObject is an object another app ("other") already delivered: a
// namespaced ConfigMap or a cluster-scoped IngressClass, named after the
// test's namespace so parallel tests do not share it.
type ownedObject struct {
	kind     string
	manifest string // the object as the app under test declares it; NS is its namespace
	create   func(t *testing.T, ctx context.Context, ns string)
	get      func(ctx context.Context, ns string) (labels map[string]string, content string, err error)
	id       func(ns string) string
}

var ownedObjects = []ownedObject{
	{
		kind:     "ConfigMap",
		manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: NS\n  annotations:\n    example.com/note: x\nADOPTdata:\n  level: mine\n",
		create: func(t *testing.T, ctx context.Context, ns string) {
			_, err := env.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "shared", Labels: map[string]string{apply.LabelApp: "other"}},
				Data:       map[string]string{"level": "theirs"},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		},
		get: func(ctx context.Context, ns string) (map[string]string, string, error) {
			cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "shared", metav1.GetOptions{})
			if err != nil {
				return nil, "", err
			}
			return cm.Labels, cm.Data["level"], nil
		},
		id: func(ns string) string { return "ConfigMap/" + ns + "/shared" },
	},
	{
		kind:     "IngressClass",
		manifest: "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: NS-nginx\n  annotations:\n    example.com/level: mine\nADOPTspec:\n  controller: example.com/nginx\n",
		create: func(t *testing.T, ctx context.Context, ns string) {
			ic := env.Client().NetworkingV1().IngressClasses()
			_, err := ic.Create(ctx, &networkingv1.IngressClass{
				ObjectMeta: metav1.ObjectMeta{Name: ns + "-nginx", Labels: map[string]string{apply.LabelApp: "other"}, Annotations: map[string]string{"example.com/level": "theirs"}},
				Spec:       networkingv1.IngressClassSpec{Controller: "example.com/nginx"}, // immutable
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ic.Delete(context.Background(), ns+"-nginx", metav1.DeleteOptions{}) })
		},
		get: func(ctx context.Context, ns string) (map[string]string, string, error) {
			o, err := env.Client().NetworkingV1().IngressClasses().Get(ctx, ns+"-nginx", metav1.GetOptions{})
			if err != nil {
				return nil, "", err
			}
			return o.Labels, o.Annotations["example.com/level"], nil
		},
		id: func(ns string) string { return "IngressClass/" + ns + "-nginx" },
	},
}

// sibling is a second object of the app under test, which must not be
// created when the app fails on a conflict.
const sibling = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sibling\n  namespace: NS\ndata:\n  a: b\n"

// TestOwnershipConflict: an object already live and labelled for app
// "other" is a conflict for another app that declares it. The diff names
// the object and the other app; Apply fails naming both apps and the
// object, and writes nothing: the live object keeps its content and
// label, the app's other object is not created, and no inventory is
// written.
func TestOwnershipConflict(t *testing.T) {
	for _, o := range ownedObjects {
		t.Run(o.kind, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			o.create(t, ctx, ns)
			m := newManager(t, apply.Options{InventoryNamespace: ns})
			set := objects(t, ns, strings.ReplaceAll(o.manifest, "ADOPT", "")+"\n---\n"+sibling)
			app := "web-" + ns

			p, err := m.Plan(ctx, set, apply.PlanOptions{App: app})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Conflicts) != 1 || p.Conflicts[0].ID.String() != o.id(ns) || p.Conflicts[0].App != "other" {
				t.Errorf("plan conflicts = %+v, want %s owned by other", p.Conflicts, o.id(ns))
			}
			var diff bytes.Buffer
			if err := p.WriteDiff(&diff, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if want := "conflict: " + o.id(ns) + " (test.yaml"; !strings.Contains(diff.String(), want) || !strings.Contains(diff.String(), "belongs to app other") {
				t.Errorf("diff lacks the conflict line %q ... belongs to app other:\n%s", want, diff.String())
			}

			_, err = m.Apply(ctx, set, apply.PlanOptions{App: app})
			var ce *apply.ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("apply: err = %v, want a *apply.ConflictError", err)
			}
			for _, want := range []string{o.id(ns), `app "other"`, `app "` + app + `"`, apply.AnnotationAdopt} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("apply error lacks %q: %v", want, err)
				}
			}
			labels, content, err := o.get(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			if labels[apply.LabelApp] != "other" || content != "theirs" {
				t.Errorf("live %s changed: label %q, content %q", o.id(ns), labels[apply.LabelApp], content)
			}
			if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "sibling", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the app's other object was written: get = %v, want not found", err)
			}
			if _, err := env.Client().CoreV1().Secrets(ns).Get(ctx, apply.InventoryName(app), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the app's inventory was written: get = %v, want not found", err)
			}
		})
	}
}

// TestOwnershipAdopt: with deliver.dev/adopt: "true" on the object in git,
// the app takes the object over from app "other": the plan and the report
// say so, and the live object carries the app's label and content.
func TestOwnershipAdopt(t *testing.T) {
	for _, o := range ownedObjects {
		t.Run(o.kind, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			o.create(t, ctx, ns)
			m := newManager(t, apply.Options{InventoryNamespace: ns})
			manifest := strings.ReplaceAll(o.manifest, "ADOPT", "    "+apply.AnnotationAdopt+": \"true\"\n")
			set := objects(t, ns, manifest+"\n---\n"+sibling)
			app := "web-" + ns

			p, err := m.Plan(ctx, set, apply.PlanOptions{App: app})
			if err != nil {
				t.Fatal(err)
			}
			var diff bytes.Buffer
			if err := p.WriteDiff(&diff, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if want := o.id(ns) + " will be adopted from app other"; len(p.Conflicts) != 0 || !strings.Contains(diff.String(), want) {
				t.Errorf("plan: conflicts %+v; diff lacks %q:\n%s", p.Conflicts, want, diff.String())
			}

			rep, err := m.Apply(ctx, set, apply.PlanOptions{App: app})
			if err != nil {
				t.Fatal(err)
			}
			adopted := map[string]string{}
			for _, r := range rep.Results {
				if r.AdoptedFrom != "" {
					adopted[r.ID.String()] = r.AdoptedFrom
				}
			}
			if len(adopted) != 1 || adopted[o.id(ns)] != "other" {
				t.Errorf("report adoptions = %v, want %s adopted from other", adopted, o.id(ns))
			}
			labels, content, err := o.get(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			if labels[apply.LabelApp] != app || content != "mine" {
				t.Errorf("live %s not taken over: label %q, content %q", o.id(ns), labels[apply.LabelApp], content)
			}
			// The next plan has nothing left to adopt.
			p, err = m.Plan(ctx, set, apply.PlanOptions{App: app})
			if err != nil {
				t.Fatal(err)
			}
			if p.HasChanges() || len(p.Conflicts) != 0 {
				t.Errorf("plan after adoption: %s, conflicts %+v", p.Summary(), p.Conflicts)
			}
		})
	}
}

// TestPruneSkipsOtherApp: an object of the app's inventory that left git
// but is labelled for another app by now is not deleted: the plan says
// so, the report has it as kept with its owner, and it leaves the
// inventory. Both when it was relabelled before the plan, and between
// the plan and its execution (prune reads the label again).
func TestPruneSkipsOtherApp(t *testing.T) {
	for _, relabel := range []string{"before plan", "before execute"} {
		t.Run(relabel, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{InventoryNamespace: ns})
			app := "web-" + ns
			two := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: NS}\ndata: {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: NS}\ndata: {k: v}\n"
			if _, err := m.Apply(ctx, objects(t, ns, two), apply.PlanOptions{App: app}); err != nil {
				t.Fatal(err)
			}
			takeOver := func() {
				t.Helper()
				cms := env.Client().CoreV1().ConfigMaps(ns)
				cm, err := cms.Get(ctx, "b", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cm.Labels[apply.LabelApp] = "other"
				if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			one := objects(t, ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: NS}\ndata: {k: v}\n")
			if relabel == "before plan" {
				takeOver()
			}
			p, err := m.Plan(ctx, one, apply.PlanOptions{App: app})
			if err != nil {
				t.Fatal(err)
			}
			id := "ConfigMap/" + ns + "/b"
			if relabel == "before plan" {
				var diff bytes.Buffer
				if err := p.WriteDiff(&diff, apply.DiffOptions{}); err != nil {
					t.Fatal(err)
				}
				if p.Count(apply.ChangeDelete) != 0 || !strings.Contains(diff.String(), id+" left git but belongs to app other") {
					t.Errorf("plan: %s; diff lacks the kept line:\n%s", p.Summary(), diff.String())
				}
			} else {
				if p.Count(apply.ChangeDelete) != 1 {
					t.Fatalf("plan: %s, want b deleted", p.Summary())
				}
				takeOver()
			}
			rep, err := m.Execute(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			var kept []apply.Result
			for _, r := range rep.Results {
				if r.Action == apply.Kept {
					kept = append(kept, r)
				}
			}
			if len(kept) != 1 || kept[0].ID.String() != id || kept[0].Owner != "other" || rep.Count(apply.Deleted) != 0 {
				t.Errorf("report: %s; kept %+v, want %s kept for other", rep.Summary(), kept, id)
			}
			if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "b", metav1.GetOptions{}); err != nil {
				t.Errorf("the other app's object: %v", err)
			}
			inv, err := m.ReadInventory(ctx, app)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range inv.Entries {
				if e.ID.String() == id {
					t.Errorf("inventory still lists %s", id)
				}
			}
		})
	}
}
