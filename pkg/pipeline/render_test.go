package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/source"
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

// TestSharedConfig: a run given the deliver.yaml its caller read from the
// same snapshot (the reconciler, once per commit) takes its apps from it
// rather than reading the file again, still selecting Options.Apps; with
// another snapshot, it reads the file.
func TestSharedConfig(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"deliver.yaml":     "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: shop, manifests: {path: web}}\n- {name: api, namespace: shop, manifests: {path: web}}\n",
		"web/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
		"other/unused.txt": "x",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	snap, err := source.Fetch(ctx, source.Options{URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	opts := Options{Snapshot: snap, Secrets: SecretsOptions{Getenv: func(string) string { return "" }}}
	cfg, err := LoadConfig(snap, opts)
	if err != nil {
		t.Fatal(err)
	}
	// What the file does not say: only a run that used cfg renders into
	// namespace "elsewhere".
	shared := *cfg
	shared.Apps = append([]config.ResolvedApp(nil), cfg.Apps...)
	for i := range shared.Apps {
		shared.Apps[i].Namespace = "elsewhere"
	}
	for _, tc := range []struct {
		name   string
		snap   *source.Snapshot
		wantNS string
	}{
		{"same snapshot: shared config", snap, "elsewhere"},
		{"another snapshot: the file", nil, "shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.Snapshot, o.Config, o.Apps = tc.snap, &shared, []string{"api"}
			if tc.snap == nil {
				o.Path = dir
			}
			res, err := Render(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Apps) != 1 || res.Apps[0].Name != "api" || res.Apps[0].Namespace != tc.wantNS {
				t.Fatalf("rendered %d apps, first %q in %q; want api in %q", len(res.Apps), res.Apps[0].Name, res.Apps[0].Namespace, tc.wantNS)
			}
		})
	}
	if len(shared.Apps) != 2 {
		t.Errorf("the shared config was changed: %d apps", len(shared.Apps))
	}
}
