package apply_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

func changes(p *apply.Plan) map[string]apply.ChangeType {
	out := map[string]apply.ChangeType{}
	for _, c := range p.Changes {
		out[c.ID.String()] = c.Type
	}
	return out
}

func cms(names ...string) string {
	var docs []string
	for _, n := range names {
		name, value, _ := strings.Cut(n, "=")
		docs = append(docs, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+", namespace: NS}\ndata: {k: \""+value+"\"}\n")
	}
	return strings.Join(docs, "\n---\n")
}

func TestPlanCreateUpdateDeleteUnchanged(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Revision: "c1"}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "b=1", "c=1")), opts); err != nil {
		t.Fatal(err)
	}
	p, err := m.Plan(ctx, objects(t, ns, cms("a=1", "b=2", "d=1")), opts)
	if err != nil {
		t.Fatal(err)
	}
	id := func(n string) string { return "ConfigMap/" + ns + "/" + n }
	want := map[string]apply.ChangeType{id("a"): apply.ChangeUnchanged, id("b"): apply.ChangeUpdate, id("c"): apply.ChangeDelete, id("d"): apply.ChangeCreate}
	if diff := cmp.Diff(want, changes(p)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got, want := p.Summary(), "1 to create, 1 to change, 1 to delete, 1 unchanged"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	var out bytes.Buffer
	if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ConfigMap/" + ns + "/b update", "-  k: \"1\"", "+  k: \"2\"", "ConfigMap/" + ns + "/d create"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("diff lacks %q:\n%s", line, out.String())
		}
	}
	rep, err := m.Execute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	wantActions := map[string]apply.Action{id("a"): apply.Unchanged, id("b"): apply.Configured, id("c"): apply.Deleted, id("d"): apply.Created}
	if diff := cmp.Diff(wantActions, actions(rep)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "c", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("c not pruned: %v", err)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range inv.Entries {
		names = append(names, e.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "d"}, names); diff != "" || inv.Result != apply.ResultSucceeded || inv.Revision != "c1" {
		t.Errorf("inventory %s %s (-want +got):\n%s", inv.Result, inv.Revision, diff)
	}
}

// TestFastPathAndDrift checks that a no-change plan needs no dry run, even
// for a Deployment whose status the controllers rewrote, and that a
// change made in the cluster (kubectl edit, kubectl scale) is still seen
// and reverted.
func TestFastPathAndDrift(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns}
	set := objects(t, ns, cms("a=1", "b=1")+"\n---\n"+deployment)
	if _, err := m.Apply(ctx, set, opts); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx, set.Objects); err != nil { // status rewritten by the rollout
		t.Fatal(err)
	}
	p, err := m.Plan(ctx, objects(t, ns, cms("a=1", "b=1")+"\n---\n"+deployment), opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || p.DryRuns != 0 {
		t.Errorf("no-change plan: %s with %d dry runs, want no changes and no dry run", p.Summary(), p.DryRuns)
	}

	// kubectl edit of a ConfigMap and kubectl scale of the Deployment.
	cs := env.Client()
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "a", types.MergePatchType, []byte(`{"data":{"k":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "kubectl-scale"}); err != nil {
		t.Fatal(err)
	}
	p, err = m.Plan(ctx, objects(t, ns, cms("a=1", "b=1")+"\n---\n"+deployment), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]apply.ChangeType{
		"ConfigMap/" + ns + "/a": apply.ChangeUpdate, "ConfigMap/" + ns + "/b": apply.ChangeUnchanged,
		"Deployment/" + ns + "/web": apply.ChangeUpdate,
	}
	if diff := cmp.Diff(want, changes(p)); diff != "" {
		t.Errorf("drift plan (-want +got):\n%s", diff)
	}
	if p.DryRuns != 2 {
		t.Errorf("drift plan dry runs = %d, want 2 (only the drifted objects)", p.DryRuns)
	}
	rep, err := m.Execute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(apply.Configured) != 2 {
		t.Errorf("revert: %s", rep.Summary())
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d after revert, want 2", *d.Spec.Replicas)
	}
}

func TestConflictWithAnotherManager(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cs := env.Client()
	// kubectl apply --server-side by a person: owns data.k.
	cm := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"mine"}}`)
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "a", types.ApplyPatchType, cm, metav1.PatchOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	_, err := newManager(t, apply.Options{NoForce: true}).Apply(ctx, objects(t, ns, cms("a=git")), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap/"+ns+"/a: apply: conflict") || !strings.Contains(err.Error(), "kubectl") {
		t.Fatalf("fail-on-conflict error = %v, want a conflict naming kubectl", err)
	}
	rep, err := newManager(t, apply.Options{}).Apply(ctx, objects(t, ns, cms("a=git")), apply.PlanOptions{App: ns})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Action != apply.Configured || len(r.Conflicts) == 0 || !strings.Contains(strings.Join(r.Conflicts, " "), "kubectl") {
		t.Errorf("result = %+v, want configured with a conflict naming kubectl", r)
	}
	got, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{})
	if got.Data["k"] != "git" {
		t.Errorf("data.k = %q, want git", got.Data["k"])
	}
}

// TestImmutableFieldNeedsRecreate: a change to an immutable field fails
// naming the object, and each of the three ways to allow it deletes and
// re-creates the object: deliver's annotation, Flux's, and the Recreate
// option (--recreate).
func TestImmutableFieldNeedsRecreate(t *testing.T) {
	for _, tt := range []struct {
		name, annotation string
		opts             apply.Options
	}{
		{"deliver.dev/recreate", `deliver.dev/recreate: "true"`, apply.Options{}},
		{"kustomize.toolkit.fluxcd.io/force", `kustomize.toolkit.fluxcd.io/force: Enabled`, apply.Options{}},
		{"Options.Recreate", "", apply.Options{Recreate: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{})
			opts := apply.PlanOptions{App: ns}
			v1 := strings.ReplaceAll(job, "LABELS", "{app: migrate}")
			if _, err := m.Apply(ctx, objects(t, ns, v1), opts); err != nil {
				t.Fatal(err)
			}
			v2 := strings.ReplaceAll(v1, "app:1.0", "app:2.0")
			_, err := m.Apply(ctx, objects(t, ns, v2), opts)
			if !errors.Is(err, apply.ErrImmutable) || !strings.Contains(err.Error(), "Job/"+ns+"/migrate") {
				t.Fatalf("error = %v, want ErrImmutable naming the Job", err)
			}
			allowed := v2
			if tt.annotation != "" {
				allowed = strings.Replace(v2, "metadata: {name: migrate, namespace: NS}", "metadata: {name: migrate, namespace: NS, annotations: {"+tt.annotation+"}}", 1)
			}
			rep, err := newManager(t, tt.opts).Apply(ctx, objects(t, ns, allowed), opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Results[0].Action != apply.Recreated {
				t.Errorf("action = %s, want recreated", rep.Results[0].Action)
			}
			j, err := env.Client().BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img := j.Spec.Template.Spec.Containers[0].Image; img != "registry.example/app:2.0" {
				t.Errorf("image = %s after recreate", img)
			}
		})
	}
}

func TestSecretMaskedInDiff(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns}
	const canary = "CANARY-s3cr3t-7f2a"
	secret := func(v string) string {
		return "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: NS}\nstringData: {password: \"" + v + "\", user: app}\n"
	}
	p, err := m.Plan(ctx, objects(t, ns, secret(canary)), opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = p.WriteDiff(&out, apply.DiffOptions{})
	_ = p.WriteJSON(&out)
	if _, err := m.Execute(ctx, p); err != nil {
		t.Fatal(err)
	}
	p, err = m.Plan(ctx, objects(t, ns, secret(canary+"-rotated")), opts)
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	_ = p.WriteDiff(&second, apply.DiffOptions{})
	_ = p.WriteJSON(&second)
	out.Write(second.Bytes())
	// A plan encoded as part of something else (apply -o json --diff).
	encoded, err := json.Marshal(map[string]any{"plan": p})
	if err != nil || !strings.Contains(string(encoded), `"summary"`) {
		t.Errorf("json.Marshal of a plan: %v\n%s", err, encoded)
	}
	out.Write(encoded)
	for _, leak := range []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), "YXBw" /* base64 "app" */} {
		if strings.Contains(out.String(), leak) {
			t.Errorf("diff output leaks %q:\n%s", leak, out.String())
		}
	}
	for _, want := range []string{"-  password: '*** (before)'", "+  password: '*** (after)'", "   user: '***'"} {
		if !strings.Contains(second.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, second.String())
		}
	}
}

// inventoryNames lists the inventory's entries as Kind/name.
func inventoryNames(t *testing.T, m *apply.Manager, app string) (*apply.Inventory, []string) {
	t.Helper()
	inv, err := m.ReadInventory(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range inv.Entries {
		names = append(names, e.Kind+"/"+e.Name)
	}
	return inv, names
}

// TestRejectedNewObjectFailsThePlan: in an app that runs, new objects are
// validated by the server before any write, so a rejected one fails the
// plan and nothing of the new revision is written.
func TestRejectedNewObjectFailsThePlan(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(deployment, "replicas: 2", "replicas: -1", 1)
	p, err := m.Plan(ctx, objects(t, ns, cms("a=2", "b=1")+"\n---\n"+bad), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web (test.yaml#2): dry-run") {
		t.Fatalf("error = %v, want the Deployment's dry run named", err)
	}
	if p != nil {
		t.Errorf("a plan came back with the error: %s", p.Summary())
	}
	_, err = m.Apply(ctx, objects(t, ns, cms("a=2", "b=1")+"\n---\n"+bad), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web (test.yaml#2): dry-run") {
		t.Fatalf("apply error = %v, want the Deployment's dry run named", err)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap b was created although the plan failed: %v", err)
	}
	if cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil || cm.Data["k"] != "1" {
		t.Errorf("ConfigMap a changed although the plan failed: %v %v", cm.Data, err)
	}
	if inv, names := inventoryNames(t, m, ns); inv.Result != apply.ResultSucceeded || !cmp.Equal(names, []string{"ConfigMap/a"}) {
		t.Errorf("inventory after a refused plan: %s %v, want the first run's", inv.Result, names)
	}
}

// TestFirstRevisionIsNotDryRun: the first apply of an app sends each new
// object once, without a dry run before it; an object the server rejects
// then fails in its stage, after the objects before it were created, and
// the inventory covers them all.
func TestFirstRevisionIsNotDryRun(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	bad := strings.Replace(deployment, "replicas: 2", "replicas: -1", 1)
	p, err := m.Plan(ctx, objects(t, ns, cms("a=1")+"\n---\n"+bad), apply.PlanOptions{App: ns})
	if err != nil {
		t.Fatal(err)
	}
	if p.DryRuns != 0 || p.Count(apply.ChangeCreate) != 2 {
		t.Errorf("first plan: %s with %d dry runs, want 2 creates and none", p.Summary(), p.DryRuns)
	}
	_, err = m.Execute(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web: apply") || !strings.Contains(err.Error(), "spec.replicas") {
		t.Fatalf("error = %v, want the Deployment and its field named", err)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap a, of the stage before the Deployment: %v", err)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment web exists: %v", err)
	}
	inv, names := inventoryNames(t, m, ns)
	if diff := cmp.Diff([]string{"ConfigMap/a", "Deployment/web"}, names); diff != "" || inv.Result != apply.ResultFailed {
		t.Errorf("inventory result %s (-want +got):\n%s", inv.Result, diff)
	}
	// The retry cannot tell the failed first run from a failed later one:
	// it validates new objects again.
	if _, err := m.Plan(ctx, objects(t, ns, cms("a=1")+"\n---\n"+bad), apply.PlanOptions{App: ns}); err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web (test.yaml#1): dry-run") {
		t.Errorf("retry: error = %v, want the Deployment's dry run named", err)
	}
}

// TestFailedStageKeepsInventory: with NoCreateDryRun an app that runs
// skips that validation too and fails in the middle of a stage, as a server
// that changed between plan and apply would.
func TestFailedStageKeepsInventory(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{NoCreateDryRun: true})
	if _, err := m.Apply(ctx, objects(t, ns, cms("z=1")), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(deployment, "replicas: 2", "replicas: -1", 1)
	_, err := m.Apply(ctx, objects(t, ns, cms("a=1", "z=1")+"\n---\n"+bad), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/web: apply") {
		t.Fatalf("error = %v, want the Deployment's apply named", err)
	}
	inv, names := inventoryNames(t, m, ns)
	if diff := cmp.Diff([]string{"ConfigMap/a", "ConfigMap/z", "Deployment/web"}, names); diff != "" || inv.Result != apply.ResultFailed {
		t.Errorf("inventory result %s (-want +got):\n%s", inv.Result, diff)
	}
	// The next good run converges, and a later removal prunes the ConfigMaps.
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1", "z=1")+"\n---\n"+deployment), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Apply(ctx, objects(t, ns, deployment), apply.PlanOptions{App: ns})
	if err != nil || rep.Count(apply.Deleted) != 2 {
		t.Fatalf("prune after recovery: %v %+v", err, rep)
	}
}

// TestPruneOnlyWhatDeliverOwns: an object that left git is not pruned
// when another manager took it over (its ownership label removed), nor
// when it opted out of pruning with deliver's annotation, Flux's or
// Helm's.
func TestPruneOnlyWhatDeliverOwns(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns}
	kept := map[string]string{
		"keep":      "deliver.dev/prune: disabled",
		"keep-flux": "kustomize.toolkit.fluxcd.io/prune: disabled",
		"keep-helm": "helm.sh/resource-policy: keep",
	}
	docs := cms("a=1", "taken=1")
	for name, ann := range kept {
		docs += "\n---\n" + strings.Replace(cms(name+"=1"), "name: "+name+",", "name: "+name+", annotations: {"+ann+"},", 1)
	}
	if _, err := m.Apply(ctx, objects(t, ns, docs), opts); err != nil {
		t.Fatal(err)
	}
	// Someone else takes "taken" over: the ownership label goes.
	cs := env.Client()
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "taken", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/labels/deliver.dev~1app"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Apply(ctx, objects(t, ns, cms("a=1")), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(apply.Deleted) != 0 {
		t.Errorf("deleted %d objects, want none: %+v", rep.Count(apply.Deleted), rep.Results)
	}
	for _, n := range []string{"taken", "keep", "keep-flux", "keep-helm"} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// TestFullDryRunListsInsteadOfGets: --full-dry-run dry-runs every object
// but reads the live ones with one LIST per kind, and still finds no
// change where there is none, and the drift where there is one.
func TestFullDryRunListsInsteadOfGets(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	set := func() *object.Set { return objects(t, ns, cms("a=1", "b=1")+"\n---\n"+deployment) }
	if _, err := m.Apply(ctx, set(), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	full := apply.PlanOptions{App: ns, FullDryRun: true}
	p, err := m.Plan(ctx, set(), full)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || p.DryRuns != 3 {
		t.Errorf("full dry run of an unchanged set: %s with %d dry runs, want no change and 3", p.Summary(), p.DryRuns)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "b", types.MergePatchType, []byte(`{"data":{"k":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	p, err = m.Plan(ctx, set(), full)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]apply.ChangeType{
		"ConfigMap/" + ns + "/a": apply.ChangeUnchanged, "ConfigMap/" + ns + "/b": apply.ChangeUpdate, "Deployment/" + ns + "/web": apply.ChangeUnchanged,
	}, changes(p)); diff != "" {
		t.Errorf("full dry run after an edit (-want +got):\n%s", diff)
	}
}

// TestDryRunAgainstStaleRead: an object that another manager wrote
// between the plan's read and its dry run is no change of deliver's: the
// dry run answers at the newer version, and the plan judges it against
// that version, not the one it read (as the Deployment controller's
// revision annotation, written just after a first apply, once made a full
// dry run of an unchanged set report a change).
func TestDryRunAgainstStaleRead(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	set := objects(t, ns, cms("a=1"))
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	cs := env.Client()
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, patch string
		want        apply.ChangeType
	}{
		{"another manager's annotation", `{"metadata":{"annotations":{"example.com/revision":"2"}}}`, apply.ChangeUnchanged},
		// A change to a field of git is still one, whatever the version.
		{"an edit of a field of git", `{"data":{"k":"edited"}}`, apply.ChangeUpdate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "a", types.MergePatchType, []byte(tc.patch), metav1.PatchOptions{FieldManager: "other-controller"})
			if err != nil {
				t.Fatal(err)
			}
			got, judged, err := apply.DryRunAgainst(ctx, m, objects(t, ns, cms("a=1")).Objects[0], ns, stale)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("change against a read of version %s, object at %s: %s, want %s", stale.GetResourceVersion(), edited.ResourceVersion, got, tc.want)
			}
			if judged.GetResourceVersion() != edited.ResourceVersion {
				t.Errorf("judged against version %s, want the current %s", judged.GetResourceVersion(), edited.ResourceVersion)
			}
		})
	}
}

// TestInventoryKeepsAnnotations: a run's inventory write keeps what others
// put on the Secret (the reconciler's suspend switch).
func TestInventoryKeepsAnnotations(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{InventoryNamespace: ns})
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	secrets := env.Client().CoreV1().Secrets(ns)
	patch := []byte(`{"metadata":{"annotations":{"deliver.dev/suspend":"true"}}}`)
	if _, err := secrets.Patch(ctx, apply.InventoryName(ns), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a=2")), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	s, err := secrets.Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations["deliver.dev/suspend"] != "true" {
		t.Errorf("annotations after a run: %v, want the suspend annotation kept", s.Annotations)
	}
}
