package apply

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

// workload is a Deployment of namespace ns with the given replicas and
// image, as the server would return it.
func workload(name string, replicas int64, image string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": "ns"},
		"spec": map[string]any{
			"replicas": replicas,
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": image}}}},
		},
	}}
}

// TestScaleDownPlan: a recreate stops the workloads whose pod template
// changes, and all that exist when a migration runs because its inputs
// changed; never for a replica count or a workload being created.
func TestScaleDownPlan(t *testing.T) {
	change := func(name string, typ ChangeType, live, merged *unstructured.Unstructured) *Change {
		desired := workload(name, 2, "app:2")
		desired.SetAnnotations(map[string]string{AnnotationStrategy: string(Recreate)})
		return &Change{ID: object.IDOf(desired), Type: typ, Desired: desired, Live: live, Merged: merged}
	}
	rolling := change("rolling", ChangeUpdate, workload("rolling", 2, "app:1"), workload("rolling", 2, "app:2"))
	rolling.Desired.SetAnnotations(map[string]string{AnnotationStrategy: string(Rolling)})
	changes := []*Change{
		change("image", ChangeUpdate, workload("image", 2, "app:1"), workload("image", 2, "app:2")),
		change("scaled", ChangeUpdate, workload("scaled", 4, "app:2"), workload("scaled", 2, "app:2")),
		change("immutable", ChangeUpdate, workload("immutable", 2, "app:1"), nil),
		change("same", ChangeUnchanged, nil, nil),
		change("new", ChangeCreate, nil, nil),
		rolling,
		{ID: object.ID{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "gone"}, Type: ChangeDelete},
	}
	id := func(name string) object.ID {
		return object.ID{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: name}
	}
	for _, tc := range []struct {
		name  string
		hooks []*HookRun
		want  []object.ID
	}{
		{name: "no hook", want: []object.ID{id("image"), id("immutable")}},
		{name: "hook unchanged", hooks: []*HookRun{{Reason: reasonUnchanged, hook: &Hook{Phases: []HookPhase{PreApply}}}}, want: []object.ID{id("image"), id("immutable")}},
		{name: "hook runs always", hooks: []*HookRun{{Run: true, Reason: reasonAlways, hook: &Hook{Phases: []HookPhase{PreApply}}}}, want: []object.ID{id("image"), id("immutable")}},
		{name: "post-apply hook changed", hooks: []*HookRun{{Run: true, Reason: reasonChanged, hook: &Hook{Phases: []HookPhase{PostApply}}}}, want: []object.ID{id("image"), id("immutable")}},
		{name: "migration changed", hooks: []*HookRun{{Run: true, Reason: reasonChanged, hook: &Hook{Phases: []HookPhase{PreApply}}}}, want: []object.ID{id("image"), id("scaled"), id("immutable"), id("same")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plan{Changes: changes, Hooks: tc.hooks, opts: PlanOptions{Strategy: Rolling}}
			if diff := cmp.Diff(tc.want, scaleDownPlan(p)); diff != "" {
				t.Errorf("scale down (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScaleTarget(t *testing.T) {
	obj := func(apiVersion, kind string, ref map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion, "kind": kind,
			"metadata": map[string]any{"name": "a", "namespace": "ns"},
			"spec":     map[string]any{"scaleTargetRef": ref},
		}}
	}
	web := object.ID{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "web"}
	for _, tc := range []struct {
		name string
		u    *unstructured.Unstructured
		want object.ID
		ok   bool
	}{
		{"hpa", obj("autoscaling/v2", "HorizontalPodAutoscaler", map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}), web, true},
		{"hpa without apiVersion", obj("autoscaling/v1", "HorizontalPodAutoscaler", map[string]any{"kind": "Deployment", "name": "web"}), web, true},
		{"keda default kind", obj("keda.sh/v1alpha1", "ScaledObject", map[string]any{"name": "web"}), web, true},
		{"statefulset", obj("keda.sh/v1alpha1", "ScaledObject", map[string]any{"kind": "StatefulSet", "name": "db"}), object.ID{Group: "apps", Kind: "StatefulSet", Namespace: "ns", Name: "db"}, true},
		{"no name", obj("autoscaling/v2", "HorizontalPodAutoscaler", map[string]any{"kind": "Deployment"}), object.ID{}, false},
		{"hpa without kind", obj("autoscaling/v2", "HorizontalPodAutoscaler", map[string]any{"name": "web"}), object.ID{}, false},
	} {
		got, ok := scaleTarget(tc.u)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestLeaveAndKeepReplicas: an autoscaled workload's replicas leave the
// desired object (and its digest changes); a dry run that would drop a
// count deliver owned shows the live count kept instead.
func TestLeaveAndKeepReplicas(t *testing.T) {
	desired := workload("web", 2, "app:1")
	c := &Change{ID: object.IDOf(desired), Desired: desired, digest: "before"}
	other := &Change{ID: object.ID{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "other"}, Desired: workload("other", 2, "app:1"), digest: "other"}
	scaler := object.ID{Group: "autoscaling", Kind: "HorizontalPodAutoscaler", Namespace: "ns", Name: "web"}
	if err := leaveReplicas([]*Change{c, other}, map[object.ID]object.ID{c.ID: scaler}); err != nil {
		t.Fatal(err)
	}
	if !replicasLeft(c) || c.digest == "before" || c.Note != "spec.replicas is left to "+scaler.String() {
		t.Errorf("autoscaled: replicas left %v, digest %s, note %q", replicasLeft(c), c.digest, c.Note)
	}
	if replicasLeft(other) || other.digest != "other" {
		t.Errorf("other workload changed: replicas left %v, digest %s", replicasLeft(other), other.digest)
	}
	c.Live, c.Merged = workload("web", 4, "app:1"), workload("web", 1, "app:1")
	keepIgnored(c)
	if n, _, _ := unstructured.NestedInt64(c.Merged.Object, "spec", "replicas"); len(c.handover) != 1 || c.handover[0].path.String() != "/spec/replicas" || c.handover[0].value != int64(4) || n != 4 || !sameContent(c.Live, c.Merged) {
		t.Errorf("keepIgnored: %v, merged replicas %d, want the live 4 kept and handed over", c.handover, n)
	}
	if SpecDigest(workload("web", 4, "app:1")) != SpecDigest(workload("web", 1, "app:1")) || SpecDigest(workload("web", 4, "app:1")) == SpecDigest(workload("web", 4, "app:2")) {
		t.Error("SpecDigest: want replicas ignored and the template counted")
	}
}
