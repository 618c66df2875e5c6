package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestVaultVersionInInputs: against a real Vault dev server, git server
// and control plane, an app whose objects or Helm values hold refs to a
// Vault KV v2 secret records the secret's path and version in its
// inventory, and a run with nothing changed plans it from the inventory,
// without a render; a new version of the secret (kv put) renders it and
// applies the new value. An app with a ref to a KV v1 secret renders on
// every run. A token that may read the secret's values but not its
// metadata renders the apps (any doubt renders). No secret value is in an
// inventory or in the logs.
func TestVaultVersionInInputs(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	const (
		canary1  = "CANARY-vd-1-5e0c7a"
		canary2  = "CANARY-vd-2-91b3f4"
		canaryV1 = "CANARY-vd-v1-2d8e61"
	)
	tv, vc := testenv.NewVault(t)
	if _, err := vc.KVv2("secret").Put(ctx, "web", map[string]any{"password": canary1}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().MountWithContext(ctx, "kv1", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := vc.KVv1("kv1").Put(ctx, "legacy", map[string]any{"token": canaryV1}); err != nil {
		t.Fatal(err)
	}

	files := map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: web, namespace: NS, manifests: {path: plain/web}}\n" +
			"- {name: chart, namespace: NS, helm: {chart: charts/demo, values: {password: \"ref+vault://secret/data/web#/password\"}}}\n" +
			"- {name: legacy, namespace: NS, manifests: {path: plain/legacy}}\n" +
			"- {name: plain, namespace: NS, manifests: {path: plain/plain}}\n",
		"plain/web/secret.yaml":    "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: \"ref+vault://secret/web#/password\"}\n",
		"plain/legacy/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: legacy}\nstringData: {token: \"ref+vault://kv1/legacy#/token\"}\n",
		"plain/plain/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {v: one}\n",
		"charts/demo/Chart.yaml":   "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"charts/demo/templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: {{ .Release.Name }}}\n" +
			"stringData: {password: {{ .Values.password | quote }}}\n",
		"README.md": "apps\n",
	}
	for name, content := range files {
		files[name] = strings.ReplaceAll(content, "NS", ns)
	}
	repo, opts := servedRepo(t, ns, files)
	logs := &lockedBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	withToken := func(token string) Options {
		o := opts
		o.Secrets.Getenv = func(k string) string {
			return map[string]string{"VAULT_ADDR": tv.Addr, "VAULT_TOKEN": token}[k]
		}
		return o
	}
	opts = withToken(tv.Token)

	run := func(what string, do func(context.Context, Options) (*Result, error), o Options, want []string) *Result {
		t.Helper()
		return runRendering(t, what, do, o, want)
	}
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	inputs := func(app string) *apply.Inputs {
		t.Helper()
		inv, err := mgr.ReadInventory(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		return inv.Inputs
	}
	wantVault := func(app, path string, version int) {
		t.Helper()
		in := inputs(app)
		if in == nil || !slices.Equal(in.Vault, []apply.VaultVersion{{Path: path, Version: version}}) {
			t.Errorf("inputs of %s = %+v, want vault %s version %d", app, in, path, version)
		}
	}
	secretData := func(name, key string) string {
		t.Helper()
		s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data[key])
	}

	all := []string{"chart", "legacy", "plain", "web"}
	run("first apply", Apply, opts, all)
	wantVault("web", "secret/web", 1)
	wantVault("chart", "secret/data/web", 1)
	if in := inputs("legacy"); in != nil {
		t.Errorf("inputs of legacy (kv v1) = %+v, want none recorded", in)
	}
	if secretData("web", "password") != canary1 || secretData("chart", "password") != canary1 {
		t.Error("first apply: the secret value is not in the cluster")
	}

	// Nothing changed, in git or in Vault; then a commit of no app's
	// file. Only the app of the KV v1 secret renders.
	run("diff, nothing changed", Diff, opts, []string{"legacy"})
	run("apply, nothing changed", Apply, opts, []string{"legacy"})
	repo.WriteFile("README.md", "apps, more\n")
	repo.CommitAll("readme")
	run("apply, commit of no app's file", Apply, opts, []string{"legacy"})

	// A new version of the secret.
	if _, err := vc.KVv2("secret").Put(ctx, "web", map[string]any{"password": canary2}); err != nil {
		t.Fatal(err)
	}
	res := run("diff, new version", Diff, opts, []string{"chart", "legacy", "web"})
	if !res.HasChanges() {
		t.Error("diff of a new secret version has no changes")
	}
	run("apply, new version", Apply, opts, []string{"chart", "legacy", "web"})
	if secretData("web", "password") != canary2 || secretData("chart", "password") != canary2 {
		t.Error("the new secret version's value was not applied")
	}
	wantVault("web", "secret/web", 2)
	wantVault("chart", "secret/data/web", 2)
	run("apply, after the new version", Apply, opts, []string{"legacy"})

	// A token that reads the values but not the metadata: the version
	// cannot be checked, so the apps render (and their values apply).
	if err := vc.Sys().PutPolicyWithContext(ctx, "data-only", `path "secret/data/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := vc.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{Policies: []string{"data-only"}})
	if err != nil {
		t.Fatal(err)
	}
	run("apply, no metadata read", Apply, withToken(tok.Auth.ClientToken), []string{"chart", "legacy", "web"})
	run("apply, metadata readable again", Apply, opts, []string{"legacy"})

	// No value in the inventories (their Secrets as stored) nor the logs.
	for _, app := range all {
		s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, apply.InventoryName(app), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(s)
		texts := [][]byte{raw}
		for k, v := range s.Data {
			if strings.HasSuffix(k, ".gz") {
				zr, err := gzip.NewReader(bytes.NewReader(v))
				if err != nil {
					t.Fatalf("inventory of %s: %s: %v", app, k, err)
				}
				if v, err = io.ReadAll(zr); err != nil {
					t.Fatalf("inventory of %s: %s: %v", app, k, err)
				}
			}
			texts = append(texts, v)
		}
		for _, text := range texts {
			if !bytes.Contains(bytes.Join(texts, nil), []byte(`"digest"`)) {
				t.Fatalf("inventory of %s: no digest in %d texts: not decoded", app, len(texts))
			}
			for _, c := range []string{canary1, canary2, canaryV1} {
				if bytes.Contains(text, []byte(c)) {
					t.Errorf("inventory of %s holds a secret value", app)
				}
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "vault secret has a new version") {
		t.Error("the logs do not say a vault secret has a new version")
	}
	for _, c := range []string{canary1, canary2, canaryV1} {
		if strings.Contains(out, c) {
			t.Errorf("the logs hold a secret value")
		}
	}
}
