package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/internal/sopstest"
)

// TestSecretManifestKeyOrder: a Secret manifest encrypted in place with
// its keys in the usual, not alphabetical, order (apiVersion, kind,
// metadata, stringData) decrypts: SOPS' MAC covers the values in file
// order, so it must be checked against the file, not a re-encoded object.
func TestSecretManifestKeyOrder(t *testing.T) {
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels: {tier: db, app: web}\nstringData:\n  user: app\n  password: s3cret-order\ntype: Opaque\n"
	enc, err := sopstest.Encrypt("db.enc.yaml", []byte(plain), recipient)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"manifests/db.enc.yaml": string(enc),
		"manifests/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
		"age.key":               id + "\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Render(context.Background(), Options{
		Path: dir, Manifests: "manifests", Namespace: "shop",
		Secrets: SecretsOptions{AgeKeyFiles: []string{filepath.Join(dir, "age.key")}, Getenv: func(string) string { return "" }},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	for _, o := range res.Apps[0].Set.Objects {
		if o.GetKind() == "Secret" {
			got, _, _ = unstructured.NestedMap(o.Object, "stringData")
			if _, ok := o.Object["sops"]; ok {
				t.Error("decrypted Secret still carries sops metadata")
			}
		}
	}
	if diff := cmp.Diff(map[string]any{"user": "app", "password": "s3cret-order"}, got); diff != "" {
		t.Errorf("stringData (-want +got):\n%s", diff)
	}
}
