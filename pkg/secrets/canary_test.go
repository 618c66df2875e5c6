package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestCanary plants a canary secret in a SOPS file and in Vault, goes
// through the success and failure paths, and checks that no error and no
// log line carries the canary or its base64.
func TestCanary(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	ctx := context.Background()
	canary := "canary-" + suffix() + suffix()
	forms := []string{
		canary,
		base64.StdEncoding.EncodeToString([]byte(canary)),
		base64.RawStdEncoding.EncodeToString([]byte(canary)),
		base64.URLEncoding.EncodeToString([]byte(canary)),
	}

	app := "canary-" + suffix()
	vaultWrite(t, root, "secret/data/"+app, map[string]any{"data": map[string]any{
		"password": canary,
		"label":    canary + "/not-a-label",
		"nested":   map[string]any{"x": canary},
	}})
	policy := "canary-" + suffix()
	if err := root.Sys().PutPolicy(policy, `path "secret/data/`+app+`" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	denied := "denied-" + suffix()
	vaultWrite(t, root, "secret/data/"+denied, map[string]any{"data": map[string]any{"password": canary}})
	tok := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{policy}, "ttl": "1h"}).Auth.ClientToken

	id, wrongID := ageKey(t), ageKey(t)
	dir := t.TempDir()
	values := encrypt(t, FormatYAML, "db:\n  password: "+canary+"\n", encOpts{age: []*age.X25519Identity{id}})
	manifest := encrypt(t, FormatYAML, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: canary\ndata:\n  password: "+
		base64.StdEncoding.EncodeToString([]byte(canary))+"\n", encOpts{age: []*age.X25519Identity{id}, encryptedRegex: "^(data|stringData)$"})
	os.WriteFile(filepath.Join(dir, "values.enc.yaml"), values, 0o600)

	var logs, out bytes.Buffer
	red := NewRedactor(RedactorOptions{})
	log := slog.New(red.Handler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}, Redactor: red, Logger: log})
	s, err := NewSOPS(SOPSOptions{AgeKeys: []string{id.String()}, Redactor: red, Vault: v})
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := NewSOPS(SOPSOptions{AgeKeys: []string{wrongID.String()}, Redactor: red})
	r := NewResolver(ResolverOptions{Vault: v, SOPS: s, Root: dir, Redactor: red})

	var errs []error
	fail := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		errs = append(errs, err)
		log.Error(what+" failed", "error", err)
	}

	// Success paths: every value is resolved and then logged and printed,
	// the way a careless caller would.
	got, err := r.ResolveValues(ctx, "values.yaml", map[string]any{
		"vault":    "ref+vault://secret/data/" + app + "#/password",
		"sops":     "ref+sops://values.enc.yaml#/db/password",
		"embedded": "postgres://u:ref+vault://secret/data/" + app + "#/password+@db",
		"nested":   "ref+vault://secret/data/" + app + "#/nested",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["vault"] != canary || got["sops"] != canary {
		t.Fatalf("canary not resolved: %v", got["vault"] == canary)
	}
	log.Info("resolved values", "values", got, "dsn", got["embedded"])
	objs, err := s.DecryptManifest(ctx, "secrets/canary.enc.yaml", manifest)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("decrypted", "object", objs[0].Object)
	plain, err := s.Decrypt(ctx, "values.enc.yaml", values, FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	w := red.Writer(&out)
	fmt.Fprintf(w, "%s\n%v\n%s\n", plain, got, mustJSON(t, objs[0]))
	w.Close()

	// Failure paths.
	_, err = wrong.Decrypt(ctx, "values.enc.yaml", values, FormatAuto)
	fail("wrong key", err)
	_, err = s.Decrypt(ctx, "values.enc.yaml", bytes.Replace(values, []byte("ENC[AES256_GCM,data:"), []byte("ENC[AES256_GCM,data:AA"), 1), FormatAuto)
	fail("tampered", err)
	_, err = s.Decrypt(ctx, "values.enc.yaml", values, Format("toml"))
	fail("unknown format", err)
	for _, ref := range []string{
		"ref+vault://secret/data/" + app + "#/nope",
		"ref+vault://secret/data/" + app + "#/password/deeper",
		"x ref+vault://secret/data/" + app + "#/nested+ y",
		"ref+vault://secret/data/" + denied + "#/password",
		"ref+vault://secret/data/missing-" + app + "#/password",
		"ref+sops://values.enc.yaml#/db/password/x",
		"ref+sops://values.enc.yaml#/nope",
	} {
		_, err := r.Resolve(ctx, ref)
		fail(ref, err)
	}
	_, err = NewResolver(ResolverOptions{SOPS: wrong, Root: dir}).Resolve(ctx, "ref+sops://values.enc.yaml#/db/password")
	fail("ref with wrong key", err)

	// Apply rejected by the server: the apiserver quotes the invalid
	// label value, so its error goes through the redactor.
	if env != nil {
		ns := env.Namespace(t)
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "canary", "namespace": ns,
				"labels": map[string]any{"x": "ref+vault://secret/data/" + app + "#/label"}},
		}}
		if err := r.ResolveObject(ctx, u); err != nil {
			t.Fatal(err)
		}
		dc := dynamic.NewForConfigOrDie(env.Config)
		_, err := dc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), canary) {
			t.Fatalf("the apiserver should reject and quote the label: %v", err)
		}
		fail("apply", red.Error(err))
	}

	var all strings.Builder
	for _, err := range errs {
		fmt.Fprintf(&all, "%v\n%+v\n%q\n", err, err, err.Error())
	}
	all.Write(logs.Bytes())
	all.Write(out.Bytes())
	for _, f := range forms {
		if strings.Contains(all.String(), f) {
			t.Errorf("output contains the canary form %q:\n%s", f, all.String())
		}
	}
	if !strings.Contains(logs.String(), Mask) || !strings.Contains(out.String(), Mask) {
		t.Errorf("expected masks in the output:\n%s\n%s", logs.String(), out.String())
	}
	if testing.Verbose() {
		t.Logf("errors and logs checked:\n%s", all.String())
	}
}

func mustJSON(t *testing.T, u *unstructured.Unstructured) []byte {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
