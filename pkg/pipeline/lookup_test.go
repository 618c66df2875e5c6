package pipeline

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/secrets"
)

// TestHelmLookupSeesCluster: a chart that keeps a generated password in a
// Secret (lookup, else randAlphaNum: the shape of many public charts) gets
// the same password on every apply, as with helm upgrade, where lookups
// finding nothing (helm template) would make a new one each time; the
// password read back by the lookup is registered with the redactor (a
// ConfigMap that copies it shows masked); an app that looked anything up
// records no inputs, so it renders on every run (the cluster is an input);
// offline render finds nothing, as helm template does.
func TestHelmLookupSeesCluster(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	repo, opts := servedRepo(t, ns, map[string]string{
		"deliver.yaml":          "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: db\n  namespace: " + ns + "\n  wait: false\n  helm: {chart: charts/db}\n",
		"charts/db/Chart.yaml":  "apiVersion: v2\nname: db\nversion: 0.1.0\n",
		"charts/db/values.yaml": "copy: false\n",
		"charts/db/templates/_p.tpl": `{{- define "db.password" -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace "db" -}}
{{- if $old }}{{ index $old.data "password" | b64dec }}{{ else }}{{ randAlphaNum 24 }}{{ end -}}
{{- end -}}`,
		"charts/db/templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {{ include \"db.password\" . | quote }}\n",
		"charts/db/templates/cm.yaml":     "{{- if .Values.copy }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: copy\ndata:\n  password: {{ include \"db.password\" . | quote }}\n{{- end }}\n",
	})
	password := func() string {
		t.Helper()
		s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["password"])
	}
	mustRun(t, "first apply", Apply, opts)
	first := password()
	if len(first) != 24 {
		t.Fatalf("password %q, want 24 generated characters", first)
	}

	res := mustRun(t, "diff", Diff, opts)
	if res.Apps[0].Unchanged {
		t.Error("the app was planned from its inventory: a chart that looks up the cluster must render")
	}
	if res.HasChanges() {
		t.Errorf("diff after the apply shows changes: the lookup did not find the password")
	}
	mustRun(t, "second apply", Apply, opts)
	if got := password(); got != first {
		t.Errorf("the second apply changed the password (%d characters): the lookup did not find it", len(got))
	}

	// A ConfigMap that copies the password the lookup read: its diff is
	// masked.
	repo.WriteFile("charts/db/values.yaml", "copy: true\n")
	repo.CommitAll("copy")
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	o := opts
	o.Redactor = red
	res = mustRun(t, "diff with the copy", Diff, o)
	diffs, err := res.Apps[0].Plan.Diffs()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, d := range diffs {
		text.WriteString(d.Text)
	}
	if strings.Contains(text.String(), first) || !strings.Contains(red.Redact("x"+first+"x"), secrets.Mask) {
		t.Errorf("the password read by the lookup is not masked in the diff:\n%s", red.Redact(text.String()))
	}
	if !strings.Contains(text.String(), "copy") {
		t.Errorf("the diff does not show the new ConfigMap:\n%s", text.String())
	}

	// Offline render: no cluster, no lookup, a new password each time.
	ro := Options{Repo: opts.Repo, Ref: "main", CacheDir: opts.CacheDir, Secrets: SecretsOptions{Getenv: func(string) string { return "" }}}
	res = mustRun(t, "render", Render, ro)
	for _, obj := range res.Apps[0].Set.Objects {
		if obj.GetKind() == "Secret" {
			if p, _, _ := unstructured.NestedString(obj.Object, "stringData", "password"); p == first {
				t.Error("offline render found the cluster's password")
			}
		}
	}
}
