package apply

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/health"
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
	m := &Manager{opts: Options{Redact: strings.NewReplacer("s3cret-canary", "***").Replace}}
	var got []string
	for _, w := range m.workloadRecords(p) {
		got = append(got, w.ID.String()+"@"+w.Revision+" "+w.Digest)
		if bytes.ContainsAny(w.Object, " \n") {
			t.Errorf("%s: object not compact JSON: %s", w.ID, w.Object)
		}
	}
	if diff := cmp.Diff([]string{"Deployment/ns/web@c1 d-web", "DaemonSet/ns/agent@c1 d-agent"}, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	// A secret value inlined in a workload (a resolved Vault ref in an env
	// value): none is kept, as the inventory never holds a value.
	secret := mk("apps", "Deployment", "api", 0)
	secret.Desired.SetAnnotations(map[string]string{"token": "s3cret-canary"})
	withSecret := &Plan{Revision: "c1", Changes: append(append([]*Change{}, p.Changes...), secret)}
	if got := m.workloadRecords(withSecret); got != nil {
		t.Errorf("with an inlined secret value: kept %d records, want none", len(got))
	}

	// A custom resource is kept when a health check judges its kind (its
	// apiVersion as written), not otherwise.
	rules, err := health.Compile("healthChecks", []health.Check{{APIVersion: "example.com/v1", Kind: "Widget", Current: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	checked := &Manager{opts: Options{Redact: m.opts.Redact, Health: rules}}
	crs := &Plan{Revision: "c2", Changes: []*Change{mk("example.com", "Widget", "w", 0), mk("example.com", "Gadget", "g", 0), mk("apps", "Deployment", "web", 0)}}
	got = nil
	for _, w := range checked.workloadRecords(crs) {
		got = append(got, w.ID.String())
	}
	if diff := cmp.Diff([]string{"Widget/ns/w", "Deployment/ns/web"}, got); diff != "" {
		t.Errorf("records with a health check of Widget (-want +got):\n%s", diff)
	}
	if got := m.workloadRecords(crs); len(got) != 1 {
		t.Errorf("records without health checks: %d, want the Deployment only", len(got))
	}

	// Over the bound, none is kept: a partial rollback would mix revisions.
	p.Changes = append(p.Changes, mk("apps", "StatefulSet", "big", MaxRollbackBytes))
	if got := m.workloadRecords(p); got != nil {
		t.Errorf("over %d bytes: kept %d records, want none", MaxRollbackBytes, len(got))
	}
}
