package apply_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestPlanDiffs: Plan.Diffs, what diff -o markdown prints, gives each
// changed object's diff as diff -o json does (masked and redacted the
// same), leaves unchanged objects out, and marks the object an immutable
// change deletes and re-creates.
func TestPlanDiffs(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	const canary = "CANARY-diffs-9d1e"
	m := newManager(t, apply.Options{Redact: func(s string) string { return strings.ReplaceAll(s, "redact-me", "***") }})
	opts := apply.PlanOptions{App: ns}
	manifest := func(image, password, level string) string {
		annotated := strings.Replace(strings.ReplaceAll(job, "LABELS", "{app: migrate}"), "metadata: {name: migrate, namespace: NS}",
			"metadata: {name: migrate, namespace: NS, annotations: {deliver.dev/recreate: \"true\"}}", 1)
		return strings.ReplaceAll(annotated, "app:1.0", image) +
			"\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: NS}\nstringData: {password: \"" + password + "\"}\n" +
			"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: NS}\ndata: {level: " + level + "}\n" +
			"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: same, namespace: NS}\ndata: {k: v}\n"
	}
	if _, err := m.Apply(ctx, objects(t, ns, manifest("app:1.0", canary, "debug")), opts); err != nil {
		t.Fatal(err)
	}
	p, err := m.Plan(ctx, objects(t, ns, manifest("app:2.0", canary+"-rotated", "redact-me")), opts)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := p.Diffs()
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := p.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Changes []struct {
			ID   struct{ Kind, Name string } `json:"id"`
			Diff string                      `json:"diff"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	fromJSON := map[string]string{}
	for _, c := range decoded.Changes {
		fromJSON[c.ID.Kind+"/"+c.ID.Name] = c.Diff
	}
	got := map[string]apply.ObjectDiff{}
	for _, d := range diffs {
		got[d.ID.Kind+"/"+d.ID.Name] = d
		if d.Text != fromJSON[d.ID.Kind+"/"+d.ID.Name] {
			t.Errorf("%s: Diffs text differs from diff -o json's:\n%s\nwant:\n%s", d.ID, d.Text, fromJSON[d.ID.Kind+"/"+d.ID.Name])
		}
		if strings.Contains(d.Text, canary) || strings.Contains(d.Text, "redact-me") {
			t.Errorf("%s: the diff shows a secret value:\n%s", d.ID, d.Text)
		}
	}
	if len(diffs) != 3 || got["ConfigMap/same"].Text != "" {
		t.Errorf("want the diffs of the Job, the Secret and ConfigMap settings, not of the unchanged ConfigMap; got %d", len(diffs))
	}
	if j := got["Job/migrate"]; !j.Recreate || j.Type != apply.ChangeUpdate || !strings.Contains(j.Note, "re-created") || !strings.Contains(j.Text, "+        image: registry.example/app:2.0") {
		t.Errorf("Job/migrate: want an update marked Recreate with the new image; got %+v", j)
	}
	if s := got["Secret/db"]; s.Recreate || !strings.Contains(s.Text, "+  password: '*** (after)'") {
		t.Errorf("Secret/db: want the masked change; got %+v", s)
	}
	// A field whose new value is a secret: its live value is masked too,
	// as it may be the secret before a rotation (maskSecretFields).
	if c := got["ConfigMap/settings"]; !strings.Contains(c.Text, "-  level: '*** (before)'") || !strings.Contains(c.Text, "+  level: '*** (after)'") {
		t.Errorf("ConfigMap/settings: want the masked change; got %+v", c)
	}
}
