package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/corpus"
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

// TestInlineValuesRenderAsHelm renders apps whose Helm values are written
// inline in deliver.yaml (generated values: YAML 1.1 words, numbers in
// every notation, dates, anchors, block scalars), half of them with an
// environment's values over them, and compares each rendered ConfigMap
// with Helm's install of the chart given the same text as values files
// (-f app.yaml -f env.yaml). The template prints each value as Go prints
// it, so a value of another type (the integer 1000000 where Helm has the
// float 1e+06) shows.
func TestInlineValuesRenderAsHelm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	chart := map[string]string{
		"Chart.yaml": "apiVersion: v2\nname: show\nversion: 0.1.0\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n" +
			"{{- range $k, $v := .Values }}\n  {{ $k | quote }}: {{ printf \"%v\" $v | quote }}\n{{- end }}\n",
	}
	if err := corpus.WriteTree(filepath.Join(dir, "charts/show"), chart); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, text := range corpus.ValuesFiles(3, 200) {
		var m map[string]any
		if sigsyaml.Unmarshal([]byte(text), &m) == nil && len(m) > 0 {
			texts = append(texts, text)
		}
		if len(texts) == 60 {
			break
		}
	}
	var cfg strings.Builder
	cfg.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	var env strings.Builder
	env.WriteString("environments:\n  e:\n    apps:\n")
	type app struct{ name, values, env string }
	var apps []app
	for i := 0; i+1 < len(texts); i += 2 {
		a := app{name: fmt.Sprintf("a%d", i), values: texts[i]}
		fmt.Fprintf(&cfg, "- name: %s\n  namespace: ns\n  helm:\n    chart: charts/show\n    values:\n%s", a.name, corpus.Nested(6, a.values))
		if i%4 == 0 {
			a.env = texts[i+1]
			fmt.Fprintf(&env, "      %s:\n        values:\n%s", a.name, corpus.Nested(10, a.env))
		}
		apps = append(apps, a)
	}
	if err := os.WriteFile(filepath.Join(dir, "deliver.yaml"), []byte(cfg.String()+env.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Render(context.Background(), Options{Path: dir, Env: "e"})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, a := range res.Apps {
		got[a.Name], _, _ = unstructured.NestedMap(a.Set.Objects[0].Object, "data")
	}
	ch, err := loader.Load(filepath.Join(dir, "charts/show"))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range apps {
		files := []string{filepath.Join(dir, fmt.Sprintf("app%d.yaml", i))}
		if err := os.WriteFile(files[0], []byte(a.values), 0o600); err != nil {
			t.Fatal(err)
		}
		if a.env != "" {
			files = append(files, filepath.Join(dir, fmt.Sprintf("env%d.yaml", i)))
			if err := os.WriteFile(files[1], []byte(a.env), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		vals, err := (&values.Options{ValueFiles: files}).MergeValues(getter.Providers{})
		if err != nil {
			t.Fatalf("%s: helm -f: %v", a.name, err)
		}
		inst := action.NewInstall(&action.Configuration{
			Releases: storage.Init(driver.NewMemory()), KubeClient: &kubefake.PrintingKubeClient{Out: io.Discard},
			Capabilities: chartutil.DefaultCapabilities, Log: func(string, ...any) {},
		})
		inst.DryRun, inst.DryRunOption, inst.ClientOnly = true, "true", true
		inst.ReleaseName, inst.Namespace = a.name, "ns"
		rel, err := inst.RunWithContext(context.Background(), ch, vals)
		if err != nil {
			t.Fatalf("%s: helm install --dry-run: %v", a.name, err)
		}
		var obj struct {
			Data map[string]any `json:"data"`
		}
		if err := sigsyaml.Unmarshal([]byte(rel.Manifest), &obj); err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
		if diff := cmp.Diff(obj.Data, got[a.name]); diff != "" {
			t.Errorf("%s: ConfigMap data (-helm +deliver):\n%s\nvalues:\n%s\nenvironment's values:\n%s", a.name, diff, a.values, a.env)
		}
	}
}
