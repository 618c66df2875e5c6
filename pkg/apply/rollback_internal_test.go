package apply

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

func TestWorkloadRecords(t *testing.T) {
	mk := func(group, kind, name string, pad int) *Change {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(strings.TrimPrefix(group+"/v1", "/"))
		u.SetKind(kind)
		u.SetNamespace("ns")
		u.SetName(name)
		if pad > 0 {
			u.SetAnnotations(map[string]string{"pad": strings.Repeat("x", pad)})
		}
		id := object.IDOf(u)
		return &Change{ID: id, Type: ChangeUpdate, Desired: u, digest: "d-" + name}
	}
	p := &Plan{Revision: "c1", Changes: []*Change{
		mk("", "ConfigMap", "config", 0),
		mk("apps", "Deployment", "web", 0),
		mk("apps", "DaemonSet", "agent", 0),
		mk("batch", "Job", "once", 0),
		{ID: object.ID{Group: "apps", Kind: "StatefulSet", Namespace: "ns", Name: "gone"}, Type: ChangeDelete},
	}}
	var got []string
	for _, w := range workloadRecords(p) {
		got = append(got, w.ID.String()+"@"+w.Revision+" "+w.Digest)
		if bytes.ContainsAny(w.Object, " \n") {
			t.Errorf("%s: object not compact JSON: %s", w.ID, w.Object)
		}
	}
	if diff := cmp.Diff([]string{"Deployment/ns/web@c1 d-web", "DaemonSet/ns/agent@c1 d-agent"}, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	// Over the bound, none is kept: a partial rollback would mix revisions.
	p.Changes = append(p.Changes, mk("apps", "StatefulSet", "big", MaxRollbackBytes))
	if got := workloadRecords(p); got != nil {
		t.Errorf("over %d bytes: kept %d records, want none", MaxRollbackBytes, len(got))
	}
}
