package render

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/secrets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fakeDecrypt stands in for SOPS: an "encrypted" file holds its secrets as
// ENC[plaintext] and SOPS metadata (a sops: block, "sops" JSON key or sops_
// lines) that decryption removes.
func fakeDecrypt(_ context.Context, p string, data []byte) ([]byte, error) {
	if !IsSOPS(data) {
		return nil, fmt.Errorf("%s: not encrypted", p)
	}
	enc := regexp.MustCompile(`ENC\[([^\]]*)\]`)
	switch {
	case strings.HasSuffix(p, ".json"):
		var v struct {
			Data string `json:"data"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		return enc.ReplaceAll([]byte(v.Data), []byte("$1")), nil
	case strings.HasSuffix(p, ".env"):
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(l, "sops_") {
				out = append(out, l)
			}
		}
		return enc.ReplaceAll([]byte(strings.Join(out, "\n")), []byte("$1")), nil
	default:
		s, _, _ := strings.Cut(string(data), "\nsops:")
		return enc.ReplaceAll([]byte(s+"\n"), []byte("$1")), nil
	}
}

// dumpSet renders a set as YAML with each object's section and origin, for
// golden files.
func dumpSet(t *testing.T, set *object.Set) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, sec := range []struct {
		name string
		objs []*object.Object
	}{{"object", set.Objects}, {"hook", set.Hooks}} {
		for _, o := range sec.objs {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "---\n# %s from %s\n%s", sec.name, originString(o.Origin), y)
		}
	}
	return b.Bytes()
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", p, diff)
	}
}

// testbin returns the path of a CLI built by hack/testbin.sh, building it
// when needed. With -short a missing binary skips the test instead.
func testbin(tb testing.TB, name string) string {
	tb.Helper()
	dir := os.Getenv("DELIVER_TESTBIN")
	if dir == "" {
		dir = filepath.Join("..", "..", ".testbin")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if testing.Short() {
		if _, err := os.Stat(bin); err != nil {
			tb.Skipf("%s is not built and -short is set: run hack/testbin.sh %s (or make testbin) to run this test", bin, name)
		}
		return bin
	}
	cmd := exec.Command("bash", filepath.Join("..", "..", "hack", "testbin.sh"), name)
	cmd.Env = append(os.Environ(), "DELIVER_TESTBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("hack/testbin.sh %s: %v\n%s", name, err, out)
	}
	return bin
}

// writeTree writes files into a new temporary folder and returns it.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, files)
	return dir
}

func ids(objs []*object.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.ID().String())
	}
	return out
}

func TestIsSOPS(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a: b\nsops:\n  mac: x\n", true},
		{"{\n\t\"data\": \"x\",\n\t\"sops\": {\"mac\": \"y\"}\n}", true},
		{"A=b\nsops_mac=x\n", true},
		{"a: b\n", false},
		{"a:\n  sops: nested\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsSOPS([]byte(tt.in)); got != tt.want {
			t.Errorf("IsSOPS(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRenderCombinesAndValidates(t *testing.T) {
	ctx := context.Background()
	var r Renderer
	chart := &HelmOptions{Chart: "charts/app", ReleaseName: "web", Namespace: "shop", IncludeCRDs: true}
	overlay := &KustomizeOptions{Path: "kustomize/overlays/prod"}
	plain := &PlainOptions{Path: "kustomize/base/service.yaml"}
	base := Options{Root: "testdata/repo", App: "shop", Namespace: "shop", Decrypt: fakeDecrypt}

	t.Run("ok", func(t *testing.T) {
		o := base
		o.Sources = []Source{{Helm: chart}, {Kustomize: overlay}, {Plain: plain}}
		set, err := r.Render(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Objects) != 15 || len(set.Hooks) != 4 {
			t.Errorf("got %d objects, %d hooks; want 15, 4:\n%v\n%v", len(set.Objects), len(set.Hooks), ids(set.Objects), ids(set.Hooks))
		}
		for _, o := range set.Objects {
			if o.Origin.App != "shop" {
				t.Errorf("%s: origin app %q, want shop", o.ID(), o.Origin.App)
			}
		}
	})
	t.Run("duplicate across sources", func(t *testing.T) {
		o := base
		o.Sources = []Source{{Kustomize: overlay}, {Kustomize: overlay}}
		_, err := r.Render(ctx, o)
		want := "shop: kustomize/overlays/prod#0: ConfigMap/shop-prod/prod-settings-2h42td9ggm: duplicate object, first defined in shop: kustomize/overlays/prod#0"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v, want %s", err, want)
		}
	})
	t.Run("duplicate via default namespace", func(t *testing.T) {
		o := base
		// The base's Service has no namespace: in the app namespace "shop"
		// it is the same object as the one written with it.
		root := writeTree(t, map[string]string{
			"a.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
			"b.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n",
		})
		o.Root = root
		o.Sources = []Source{{Plain: &PlainOptions{Path: "a.yaml"}}, {Plain: &PlainOptions{Path: "b.yaml"}}}
		_, err := r.Render(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "b.yaml#0: Service/shop/web: duplicate object, first defined in shop: a.yaml#0") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("namespace not allowed", func(t *testing.T) {
		o := base
		o.AllowedNamespaces = []string{"shop"}
		o.Sources = []Source{{Helm: chart}, {Kustomize: overlay}}
		_, err := r.Render(ctx, o)
		if err == nil || !strings.Contains(err.Error(), `kustomize/overlays/prod#0: ConfigMap/shop-prod/prod-settings-2h42td9ggm: namespace "shop-prod" is not allowed for this app (allowed: shop)`) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("source with two engines", func(t *testing.T) {
		o := base
		o.Sources = []Source{{Helm: chart, Plain: plain}}
		if _, err := r.Render(ctx, o); err == nil || !strings.Contains(err.Error(), "exactly one") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		o := base
		o.Sources = []Source{{Helm: chart}}
		if _, err := r.Render(cctx, o); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestPlainHooks(t *testing.T) {
	root := writeTree(t, map[string]string{
		"m.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: h\n  annotations: {deliver.dev/hook: PreSync}\n",
	})
	set, err := Plain(PlainOptions{Root: root, Path: "."})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/a"}, ids(set.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Job/h"}, ids(set.Hooks)); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
}

// splitDocs normalises a YAML stream for comparison: its documents, sorted.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(s, -1) {
		if d = strings.TrimSpace(d); d != "" {
			docs = append(docs, d)
		}
	}
	slices.Sort(docs)
	return docs
}

// TestIsSOPSMatchesSOPS: IsSOPS, which decides without sops' stores,
// agrees with secrets.IsEncrypted, which loads the file in them, on files
// sops encrypted in every format it writes (YAML, JSON indented and
// minified, dotenv, INI, a binary file) and on their plaintexts, some of
// which mention sops.
func TestIsSOPSMatchesSOPS(t *testing.T) {
	t.Parallel()
	_, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	plain := map[string]string{
		"s.yaml":     "password: hunter2\nsops_note: plain\nlist: [a, b]\n",
		"s.json":     "{\"password\": \"hunter2\", \"nested\": {\"sops\": \"plain\"}}\n",
		"s.env":      "PASSWORD=hunter2\nSOPS=plain\n",
		"s.ini":      "[db]\npassword = hunter2\n[sopsy]\nk = v\n",
		"tls.crt":    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"flow.yaml":  "{a: b, c: {sops: plain}}\n",
		"mention.md": "sops is a tool; see sops:\n",
	}
	for name, text := range plain {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cases := map[string][]byte{"plain": []byte(text)}
			if name != "flow.yaml" && name != "mention.md" {
				enc, err := sopstest.Encrypt(name, []byte(text), recipient)
				if err != nil {
					t.Fatal(err)
				}
				cases["encrypted"] = enc
				if enc[0] == '{' {
					var min bytes.Buffer
					if err := json.Compact(&min, enc); err != nil {
						t.Fatal(err)
					}
					cases["encrypted, minified"] = min.Bytes()
				}
			}
			for what, data := range cases {
				want := secrets.IsEncrypted(name, data, secrets.FormatAuto)
				if got := IsSOPS(data); got != want {
					t.Errorf("%s: IsSOPS = %v, secrets.IsEncrypted = %v:\n%s", what, got, want, data)
				}
				if what != "plain" && !want {
					t.Errorf("%s: sops does not load what it encrypted", what)
				}
			}
		})
	}
}
