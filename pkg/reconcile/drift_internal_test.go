package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// managedMeta returns metadata whose managedFields give deliver's apply the
// labels and annotations keys deliverOwns (as FieldsV1 JSON), and another
// manager's update the rest.
func managedMeta(labels, annotations map[string]string, deliverOwns string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Labels: labels, Annotations: annotations,
		ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: "deliver", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(deliverOwns)}},
			// Not deliver's apply: ignored whatever they own.
			{Manager: "deliver", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:team":{}}}}`)}},
			{Manager: "deliver", Operation: metav1.ManagedFieldsOperationApply, Subresource: "status", FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:note":{}}}}`)}},
			{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}}}`)}},
		},
	}}
}

func TestOwnedFingerprint(t *testing.T) {
	const owns = `{"f:metadata":{"f:labels":{".":{},"f:deliver.dev/app":{},"f:tier":{}},"f:annotations":{".":{},"f:owner":{}}},"f:spec":{"f:replicas":{}}}`
	labels := map[string]string{"deliver.dev/app": "web", "tier": "web"}
	annotations := map[string]string{"owner": "team-a"}
	base := ownedFingerprint(managedMeta(labels, annotations, owns))
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for mk, mv := range m {
			out[mk] = mv
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		owns        string
		same        bool
	}{
		{"unchanged", labels, annotations, owns, true},
		{"label added by another manager", with(labels, "team", "b"), annotations, owns, true},
		{"annotation added by a controller", labels, with(annotations, "deployment.kubernetes.io/revision", "3"), owns, true},
		{"annotation deliver's status entry names", labels, with(annotations, "note", "x"), owns, true},
		{"label deliver set changed", with(labels, "tier", "hacked"), annotations, owns, false},
		{"label deliver set removed", with(labels, "tier", ""), annotations, owns, false},
		{"annotation deliver set changed", labels, with(annotations, "owner", "team-x"), owns, false},
		{"label taken by another manager, same value", labels, annotations,
			`{"f:metadata":{"f:labels":{"f:deliver.dev/app":{}},"f:annotations":{"f:owner":{}}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ownedFingerprint(managedMeta(tc.labels, tc.annotations, tc.owns))
			if (got == base) != tc.same {
				t.Errorf("fingerprint %x, unchanged one %x: same = %t, want %t", got, base, got == base, tc.same)
			}
		})
	}
}

// TestTrack: the transform keeps what drift reads (name, namespace, uid,
// versions, deletion, the app label, the fingerprint) and nothing else,
// and returns an object it already transformed as is.
func TestTrack(t *testing.T) {
	m := managedMeta(map[string]string{"tier": "web", apply.LabelApp: "shop"}, map[string]string{"note": "x"}, `{"f:metadata":{"f:labels":{"f:tier":{}}}}`)
	now := metav1.Now()
	m.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
	m.Name, m.Namespace, m.UID, m.ResourceVersion, m.Generation, m.DeletionTimestamp = "web", "prod", "u1", "42", 3, &now
	m.OwnerReferences = []metav1.OwnerReference{{Name: "owner"}}
	want := ownedFingerprint(m)
	obj, err := track(m)
	if err != nil {
		t.Fatal(err)
	}
	tm, ok := obj.(*trackedMeta)
	if !ok {
		t.Fatalf("track returned %T, want *trackedMeta", obj)
	}
	kept := metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: "web", Namespace: "prod", UID: "u1", ResourceVersion: "42", Generation: 3, DeletionTimestamp: &now,
		Labels: map[string]string{apply.LabelApp: "shop"},
	}}
	if diff := cmp.Diff(kept, *tm.PartialObjectMetadata); diff != "" || tm.owned != want {
		t.Errorf("tracked: fingerprint %x, want %x; metadata (-want +got):\n%s", tm.owned, want, diff)
	}
	again, err := track(tm)
	if err != nil || again != tm {
		t.Errorf("track of a tracked object = %v, %v; want it unchanged", again, err)
	}
}
