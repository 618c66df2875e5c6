package render

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"
)

// appChart is the chart of the golden and oracle tests with every kind of
// input: values files, secret values, inline values, --set, --set-string,
// capabilities and CRDs.
func appChart() HelmOptions {
	return HelmOptions{
		Root:              "testdata/repo",
		App:               "shop",
		Chart:             "charts/app",
		ReleaseName:       "web",
		Namespace:         "shop",
		ValuesFiles:       []string{"values/app.yaml"},
		SecretValuesFiles: []string{"values/app.secret.yaml"},
		Values:            map[string]any{"image": map[string]any{"tag": "1.28"}},
		Set:               []string{"replicas=3", "sub.message=set-by-flag"},
		SetString:         []string{"appVersionLabel=007"},
		KubeVersion:       "v1.31.2",
		ExtraAPIVersions:  []string{"monitoring.coreos.com/v1"},
		IncludeCRDs:       true,
		Decrypt:           fakeDecrypt,
	}
}

// appChartDefaults renders the same chart with nothing but a name: default
// values, capabilities and no CRDs.
func appChartDefaults() HelmOptions {
	return HelmOptions{Root: "testdata/repo", App: "shop", Chart: "charts/app"}
}

func TestHelmGolden(t *testing.T) {
	for name, opts := range map[string]HelmOptions{"helm-app.yaml": appChart(), "helm-app-defaults.yaml": appChartDefaults()} {
		t.Run(name, func(t *testing.T) {
			set, err := Helm(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, dumpSet(t, set))
		})
	}
}

func TestHelmHooksAndOrigins(t *testing.T) {
	set, err := Helm(context.Background(), appChart())
	if err != nil {
		t.Fatal(err)
	}
	var hooks []string
	for _, h := range set.Hooks {
		hooks = append(hooks, h.ID().String()+" "+originString(h.Origin))
	}
	want := []string{
		"ConfigMap/shop/web-app-presync shop: app/templates/argo-hook.yaml#0",
		"Pod/shop/web-app-test shop: app/templates/hooks.yaml#0",
		"Job/shop/web-app-migrate shop: app/templates/hooks.yaml#1",
	}
	if diff := cmp.Diff(want, hooks); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	for _, o := range set.Objects {
		if o.Origin.Template == "" || o.Origin.App != "shop" {
			t.Errorf("%s: origin %+v", o.ID(), o.Origin)
		}
	}
	// Both documents of the subchart's CRD file keep its name, with their
	// index inside it.
	var crds []string
	for _, o := range set.Objects {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, fmt.Sprintf("%s#%d", o.Origin.Template, o.Origin.Doc))
		}
	}
	if diff := cmp.Diff([]string{"app/crds/widgets.yaml#0", "app/charts/sub/crds/gadgets.yaml#0", "app/charts/sub/crds/gadgets.yaml#1"}, crds); diff != "" {
		t.Errorf("CRD origins (-want +got):\n%s", diff)
	}
}

func TestHelmValuesNotMutated(t *testing.T) {
	opts := appChart()
	vals := map[string]any{"sub": map[string]any{"message": "inline"}}
	opts.Values = vals
	if _, err := Helm(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"sub": map[string]any{"message": "inline"}}, vals); diff != "" {
		t.Errorf("caller's values changed (-want +got):\n%s", diff)
	}
}

// TestHelmCapabilitiesOffline: offline (no Cluster), a chart sees the
// kube version and the API versions the options give, as helm template
// --kube-version --api-versions.
func TestHelmCapabilitiesOffline(t *testing.T) {
	opts := appChartDefaults()
	opts.KubeVersion = "1.29.4"
	opts.APIVersions = []string{"v1", "monitoring.coreos.com/v1"} // a cluster without apps/v1
	set, err := Helm(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range set.Objects {
		if o.GetKind() == "ConfigMap" && o.GetName() == "shop-app" {
			data, _, _ := unstructuredMap(o.Object, "data")
			want := map[string]any{"hasAppsV1": "false", "hasMonitoring": "true", "kubeVersion": "v1.29.4"}
			for k, v := range want {
				if data[k] != v {
					t.Errorf("data[%s] = %v, want %v", k, data[k], v)
				}
			}
			return
		}
	}
	t.Fatal("ConfigMap shop-app not rendered")
}

func unstructuredMap(m map[string]any, key string) (map[string]any, bool, error) {
	v, ok := m[key].(map[string]any)
	return v, ok, nil
}

func TestDefaultKubeVersionFollowsClientGo(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build info")
	}
	for _, d := range bi.Deps {
		if d.Path == "k8s.io/client-go" {
			minor := strings.Split(strings.TrimPrefix(d.Version, "v0."), ".")[0]
			if want := "v1." + minor + ".0"; DefaultKubeVersion != want {
				t.Errorf("DefaultKubeVersion = %s, want %s (helm's release build takes it from k8s.io/client-go %s)", DefaultKubeVersion, want, d.Version)
			}
			return
		}
	}
	t.Skip("k8s.io/client-go not in build info")
}

func TestHelmErrors(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "values.yaml"), []byte("a: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	chartFiles := func(extra map[string]string) map[string]string {
		m := map[string]string{
			"c/Chart.yaml":          "apiVersion: v2\nname: c\nversion: 0.1.0\n",
			"c/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
			"c/templates/_h.tpl":    "",
			"values/ok.yaml":        "x: 1\n",
			"values/secret.yaml":    "x: ENC[2]\nsops:\n  mac: m\n",
			"values/broken.yaml":    "x: [\n",
			"values/other/ok2.yaml": "x: 1\n",
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		files   map[string]string
		links   map[string]string // link -> target
		opts    func(o *HelmOptions)
		wantErr string
	}{
		{name: "chart escapes", opts: func(o *HelmOptions) { o.Chart = "../c" }, wantErr: "helm: chart ../c: path escapes the repository root"},
		{name: "absolute chart", opts: func(o *HelmOptions) { o.Chart = "/etc" }, wantErr: "path must be relative"},
		{name: "values file escapes", opts: func(o *HelmOptions) { o.ValuesFiles = []string{"values/../../x.yaml"} }, wantErr: "helm: values file values/../../x.yaml: path escapes the repository root"},
		{name: "values symlink out of repo", links: map[string]string{"values/link.yaml": filepath.Join(outside, "values.yaml")}, opts: func(o *HelmOptions) { o.ValuesFiles = []string{"values/link.yaml"} }, wantErr: "helm: values file values/link.yaml: "},
		{name: "chart template symlink out of repo", links: map[string]string{"c/templates/evil.yaml": filepath.Join(outside, "values.yaml")}, wantErr: "helm: chart c: templates/evil.yaml: "},
		{name: "chart folder symlink out of repo", links: map[string]string{"c/files": outside}, wantErr: "helm: chart c: files: "},
		{name: "values do not parse", opts: func(o *HelmOptions) { o.ValuesFiles = []string{"values/broken.yaml"} }, wantErr: "helm: values file values/broken.yaml: parse: "},
		{name: "secret values without decrypter", opts: func(o *HelmOptions) { o.SecretValuesFiles = []string{"values/secret.yaml"} }, wantErr: "helm: secret values file values/secret.yaml: no decrypter configured"},
		{name: "bad set", opts: func(o *HelmOptions) { o.Set = []string{"a[=b"} }, wantErr: `helm: set "a[=b": `},
		{name: "missing dependency", files: map[string]string{"c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: dep\n  version: 1.0.0\n  repository: https://example.com\n"}, wantErr: "dependencies must be vendored in charts/"},
		{name: "library chart", files: map[string]string{"c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\ntype: library\n"}, wantErr: "library charts are not installable"},
		{name: "template without name", files: map[string]string{"c/templates/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"}, wantErr: "c/templates/bad.yaml#1: ConfigMap has no metadata.name"}, // helm prints the Secret first,
		{name: "template without kind, second document", files: map[string]string{"c/templates/bad.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\napiVersion: v1\nmetadata:\n  name: x\n"}, wantErr: "c/templates/bad.yaml#1: object has no kind"},
		{name: "template yaml does not parse", files: map[string]string{"c/templates/bad.yaml": "apiVersion: v1\nkind: [\n"}, wantErr: "YAML parse error on c/templates/bad.yaml"},
		{name: "template fails", files: map[string]string{"c/templates/bad.yaml": `{{ fail "boom" }}`}, wantErr: "boom"},
		{name: "schema reads a file", files: map[string]string{"c/values.schema.json": `{"properties": {"a": {"$ref": "file:///etc/passwd"}}}`}, wantErr: `c: values.schema.json: $ref "file:///etc/passwd": only references inside the schema`},
		{name: "schema validation", files: map[string]string{"c/values.schema.json": `{"type": "object", "required": ["needed"]}`}, wantErr: "needed"},
		{name: "kube version too old", files: map[string]string{"c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\nkubeVersion: '>=1.40.0'\n"}, wantErr: "chart requires kubeVersion"},
		{name: "bad kube version", opts: func(o *HelmOptions) { o.KubeVersion = "banana" }, wantErr: `helm: kube version "banana"`},
		{name: "no chart", opts: func(o *HelmOptions) { o.Chart = "" }, wantErr: "helm: no chart given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, chartFiles(tt.files))
			for link, target := range tt.links {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
			opts := HelmOptions{Root: root, Chart: "c", Decrypt: nil}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := Helm(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestHelmSymlinkInsideRepo(t *testing.T) {
	root := writeTree(t, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"shared/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n",
		"shared/more/sm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n",
	})
	if err := os.Symlink("../shared", filepath.Join(root, "c", "templates")); err != nil {
		t.Fatal(err)
	}
	set, err := Helm(context.Background(), HelmOptions{Root: root, Chart: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/shared", "ConfigMap/more"}, ids(set.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

// chartRepo serves the test chart, packaged, from an index.yaml like a
// chart repository, requiring basic auth.
func chartRepo(t *testing.T, digest string) *httptest.Server {
	t.Helper()
	ch, err := loader.Load("testdata/repo/charts/app")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tgz, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	if digest == "" {
		sum := sha256.Sum256(data)
		digest = hex.EncodeToString(sum[:])
	}
	idx := repo.NewIndexFile()
	if err := idx.MustAdd(ch.Metadata, filepath.Base(tgz), "", digest); err != nil {
		t.Fatal(err)
	}
	index, err := yaml.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/charts/index.yaml":
			w.Write(index)
		case "/charts/" + filepath.Base(tgz):
			w.Write(data)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHelmChartRepository(t *testing.T) {
	ctx := context.Background()
	local, err := Helm(ctx, appChart())
	if err != nil {
		t.Fatal(err)
	}
	srv := chartRepo(t, "")
	// A version that is not exact may name another release tomorrow: the
	// render says its reads do not cover it, so that the app is rendered
	// every time instead of planned from its inventory.
	for _, tt := range []struct {
		version   string
		uncertain bool
	}{{"0.1.0", false}, {"v0.1.0", false}, {"~0.1", true}, {">=0.1.0", true}, {"", true}} {
		t.Run("version "+tt.version, func(t *testing.T) {
			opts := appChart()
			opts.Chart, opts.Repository, opts.Version = "app", srv.URL+"/charts", tt.version
			opts.Username, opts.Password = "user", "pass"
			opts.HTTPClient = srv.Client()
			opts.Reads = &Reads{}
			got, err := Helm(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(dumpSet(t, local)), string(dumpSet(t, got))); diff != "" {
				t.Errorf("chart from repository differs from local chart (-want +got):\n%s", diff)
			}
			why := opts.Reads.UncertainReason()
			if tt.uncertain != (why != "") || (tt.uncertain && !strings.Contains(why, "not exact")) {
				t.Errorf("uncertain reason %q; want one saying the version is not exact: %v", why, tt.uncertain)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		bad := chartRepo(t, strings.Repeat("0", 64))
		for _, tt := range []struct {
			name    string
			opts    func(o *HelmOptions)
			wantErr string
		}{
			{"unknown version", func(o *HelmOptions) { o.Version = "9.9.9" }, "no chart version found for app-9.9.9"},
			{"unknown chart", func(o *HelmOptions) { o.Chart = "nope" }, "no chart name found"},
			{"no credentials", func(o *HelmOptions) { o.Username, o.Password = "", "" }, "401 Unauthorized"},
			{"digest mismatch", func(o *HelmOptions) { o.Repository = bad.URL + "/charts" }, "does not match the index"},
			{"bad scheme", func(o *HelmOptions) { o.Repository = "ftp://x" }, "want an http, https or oci URL"},
			{"oci without version", func(o *HelmOptions) { o.Repository, o.Version = "oci://localhost:1/charts", "" }, "a version is required for OCI"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				opts := appChart()
				opts.Chart, opts.Repository, opts.Version = "app", srv.URL+"/charts", "0.1.0"
				opts.Username, opts.Password = "user", "pass"
				opts.HTTPClient = srv.Client()
				tt.opts(&opts)
				_, err := Helm(ctx, opts)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
			})
		}
	})
}

// fakeResolver stands in for secrets.Resolver.ResolveValues: a string that
// is exactly a ref+vault:// ref in secrets becomes its secret, any other
// ref+ string is an error naming the file. It records the files it saw.
type fakeResolver struct {
	secrets map[string]string
	mu      sync.Mutex
	names   []string
}

func (f *fakeResolver) ResolveValues(_ context.Context, name string, values map[string]any) (map[string]any, error) {
	f.mu.Lock()
	f.names = append(f.names, name)
	f.mu.Unlock()
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch v := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, x := range v {
				y, err := walk(x)
				if err != nil {
					return nil, err
				}
				out[k] = y
			}
			return out, nil
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				y, err := walk(x)
				if err != nil {
					return nil, err
				}
				out[i] = y
			}
			return out, nil
		case string:
			if !strings.HasPrefix(v, "ref+") {
				return v, nil
			}
			if s, ok := f.secrets[v]; ok {
				return s, nil
			}
			return nil, fmt.Errorf("%s: %s: not found", name, v)
		}
		return v, nil
	}
	out, err := walk(values)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// TestHelmResolveValues: refs in values files and decrypted secret values
// files are resolved before the templates see them, so a template that
// encodes a value encodes the secret.
func TestHelmResolveValues(t *testing.T) {
	root := writeTree(t, map[string]string{
		"c/Chart.yaml":  "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/values.yaml": "pw: default\nplain: text\ndb: {url: none}\n",
		"c/templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n" +
			"  pw: {{ .Values.pw | b64enc }}\n  token: {{ .Values.token | b64enc }}\n" +
			"  url: {{ .Values.db.url | b64enc }}\n  plain: {{ .Values.plain | b64enc }}\n" +
			"  first: {{ index .Values.list 0 | b64enc }}\n  sum: {{ .Values.pw | sha256sum }}\n",
		"values/app.yaml":    "pw: ref+vault://secret/app#password\ndb:\n  url: ref+vault://secret/db#url\nlist: [ref+vault://secret/app#password]\n",
		"values/secret.yaml": "token: ENC[ref+vault://secret/app#token]\nsops:\n  mac: m\n",
		"values/bad.yaml":    "pw: ref+vault://secret/missing#x\n",
	})
	res := &fakeResolver{secrets: map[string]string{
		"ref+vault://secret/app#password": "hunter2",
		"ref+vault://secret/app#token":    "t0ken",
		"ref+vault://secret/db#url":       "postgres://db",
	}}
	opts := HelmOptions{
		Root: root, Chart: "c", ValuesFiles: []string{"./values/app.yaml"}, SecretValuesFiles: []string{"values/secret.yaml"},
		Decrypt: fakeDecrypt, ResolveValues: res.ResolveValues,
		Values: map[string]any{"plain": "ref+vault://inline/is#not-passed"},
	}
	set, err := Helm(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Objects) != 1 {
		t.Fatalf("objects = %v", ids(set.Objects))
	}
	data, _, _ := unstructuredMap(set.Objects[0].Object, "data")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	sum := sha256.Sum256([]byte("hunter2"))
	want := map[string]any{
		"pw": b64("hunter2"), "token": b64("t0ken"), "url": b64("postgres://db"),
		"plain": b64("ref+vault://inline/is#not-passed"), "first": b64("hunter2"), "sum": hex.EncodeToString(sum[:]),
	}
	if diff := cmp.Diff(want, data); diff != "" {
		t.Errorf("secret data (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"values/app.yaml", "values/secret.yaml"}, res.names); diff != "" {
		t.Errorf("files resolved (-want +got):\n%s", diff)
	}

	// Without the hook the template encodes the ref itself.
	opts.ResolveValues = nil
	set, err = Helm(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ = unstructuredMap(set.Objects[0].Object, "data")
	if data["pw"] != b64("ref+vault://secret/app#password") {
		t.Errorf("without ResolveValues pw = %v", data["pw"])
	}

	opts.ResolveValues = res.ResolveValues
	opts.ValuesFiles = append(opts.ValuesFiles, "values/bad.yaml")
	_, err = Helm(context.Background(), opts)
	if want := "helm: values/bad.yaml: ref+vault://secret/missing#x: not found"; err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}
