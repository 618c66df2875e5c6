package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/config"
)

// TestMergeValuesFrom: a key's value at a targetPath is typed as --set
// types it, a quoted one is a string without its quotes (as Flux's
// ReplacePathValue); without targetPath the key is a document of values
// merged over the earlier ones.
func TestMergeValuesFrom(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, path, value, want string
	}{
		{"typed", "a.b", "3", "map[a:map[b:3] keep:1]"},
		{"bool", "a.b", "true", "map[a:map[b:true] keep:1]"},
		{"double-quoted", "a.b", `"3"`, "map[a:map[b:3] keep:1]"},
		{"single-quoted", "a", "'x y'", "map[a:x y keep:1]"},
		{"list index", "a.list[1]", "z", "map[a:map[list:[<nil> z]] keep:1]"},
		{"document", "", "a: {b: 2}\nkeep: 3\n", "map[a:map[b:2] keep:3]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := config.ValuesReference{TargetPath: tt.path}
			got, _, err := mergeValuesFrom(map[string]any{"keep": 1}, ref, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if s := fmtValues(got); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
	// A quoted value is a string: kindOf tells it from a number.
	got, _, err := mergeValuesFrom(map[string]any{}, config.ValuesReference{TargetPath: "n"}, `"3"`)
	if _, isString := got["n"].(string); err != nil || !isString {
		t.Errorf("quoted value: %#v, %v; want a string", got["n"], err)
	}
	if _, _, err := mergeValuesFrom(map[string]any{}, config.ValuesReference{}, "a: [unclosed"); err == nil {
		t.Errorf("a key that is no YAML document: no error")
	}
}

// TestHelmValuesFrom: a Helm app's valuesFrom, against the control plane,
// as a Flux HelmRelease's: a ConfigMap that a dependency renders in the
// same run (its values document, and a key at a targetPath, typed), a
// Secret of the cluster at a targetPath (masked in the diff, in clear in
// the cluster), a missing optional one skipped; inline values win. A
// commit that changes the dependency's ConfigMap renders both apps in one
// run; an edit of the Secret in the cluster renders the app again at the
// next apply, and nothing changed plans it from its inventory. A missing
// object or key that is not optional fails naming the reference.
func TestHelmValuesFrom(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns, inv := env.Namespace(t), env.Namespace(t)
	const canary1, canary2 = "CANARY-vf-one-5c21e9", "CANARY-vf-two-8d04b7"
	secrets := env.Client().CoreV1().Secrets(ns)
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"token": canary1}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := func(extra string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n" +
			"- {name: base, namespace: " + ns + ", manifests: {path: base}}\n" +
			"- name: web\n  namespace: " + ns + "\n  dependsOn: [base]\n  helm:\n    chart: chart\n    values: {db: {port: 6543}}\n    valuesFrom:\n" +
			"    - {kind: ConfigMap, name: shared}\n" +
			"    - {kind: ConfigMap, name: shared, valuesKey: replicas, targetPath: replicas}\n" +
			"    - {kind: Secret, name: creds, valuesKey: token, targetPath: token}\n" +
			"    - {kind: ConfigMap, name: absent, optional: true}\n" + extra
	}
	shared := func(color string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata:\n  replicas: \"3\"\n  values.yaml: |\n    color: " + color + "\n    db: {host: db.example, port: 1}\n"
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml":      config(""),
		"base/shared.yaml":  shared("blue"),
		"chart/Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"chart/values.yaml": "color: red\nreplicas: 1\ntoken: none\ndb: {host: localhost, port: 5432}\n",
		"chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n" +
			"  color: {{ .Values.color | quote }}\n  host: {{ .Values.db.host | quote }}\n  port: {{ .Values.db.port | quote }}\n" +
			"  replicasKind: {{ kindOf .Values.replicas | quote }}\n  token: {{ .Values.token | quote }}\n",
	})
	web := func() map[string]string {
		t.Helper()
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data
	}
	want := func(what string, got map[string]string, color, token string) {
		t.Helper()
		w := map[string]string{"color": color, "host": "db.example", "port": "6543", "replicasKind": "int64", "token": token}
		for k, v := range w {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
			}
		}
	}

	text := writtenDiff(t, mustRun(t, "diff", Diff, opts))
	if strings.Contains(text, canary1) || !strings.Contains(text, "color: blue") {
		t.Errorf("diff: want color blue and the Secret's value masked:\n%s", text)
	}
	mustRun(t, "first apply", Apply, opts)
	want("first apply", web(), "blue", canary1)

	repo.WriteFile("base/shared.yaml", shared("green"))
	repo.CommitAll("green")
	res := mustRun(t, "apply of a new color", Apply, opts)
	if got := rendered(res); strings.Join(got, ",") != "base,web" {
		t.Errorf("apply of a new color rendered %v, want base and web", got)
	}
	want("apply of a new color", web(), "green", canary1)

	if res := mustRun(t, "apply with nothing changed", Apply, opts); len(rendered(res)) != 0 {
		t.Errorf("apply with nothing changed rendered %v", rendered(res))
	}
	if _, err := secrets.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data: map[string][]byte{"token": []byte(canary2)}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = mustRun(t, "apply after the Secret changed", Apply, opts)
	if got := rendered(res); strings.Join(got, ",") != "web" {
		t.Errorf("apply after the Secret changed rendered %v, want web", got)
	}
	want("apply after the Secret changed", web(), "green", canary2)

	for _, tt := range []struct{ ref, want string }{
		{"{kind: ConfigMap, name: nosuch}", "deliver.yaml: apps.web.helm.valuesFrom[4]: ConfigMap/" + ns + "/nosuch: configmaps \"nosuch\" not found"},
		{"{kind: Secret, name: creds, valuesKey: nokey}", "deliver.yaml: apps.web.helm.valuesFrom[4]: Secret/" + ns + "/creds: no key \"nokey\""},
	} {
		repo.WriteFile("deliver.yaml", config("    - "+tt.ref+"\n"))
		repo.CommitAll("bad ref")
		res, err := Diff(ctx, opts)
		if err == nil {
			err = res.Err()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), canary2) {
			t.Errorf("diff with %s: %v, want an error containing %q", tt.ref, err, tt.want)
		}
	}
}

// fmtValues prints values as fmt does (maps sorted by key).
func fmtValues(v map[string]any) string { return fmt.Sprint(v) }
