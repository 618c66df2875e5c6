package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/pkg/object"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // Kind/name#doc
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "comments and separators only", in: "# hi\n---\n---\n# x\n", want: nil},
		{
			name: "multi document",
			in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n",
			want: []string{"ConfigMap/a#0", "Secret/b#1"},
		},
		{
			name: "json",
			in:   `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}`,
			want: []string{"ConfigMap/j#0"},
		},
		{
			name: "list expands",
			in:   "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: x1}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: y1}\n",
			want: []string{"ConfigMap/x1#0", "ConfigMap/y1#0"},
		},
		{name: "malformed yaml", in: "apiVersion: v1\nkind: [\n", wantErr: "f.yaml#0: "},
		{name: "no kind", in: "apiVersion: v1\nmetadata: {name: a}\n", wantErr: "f.yaml#0: object has no kind"},
		{name: "no apiVersion", in: "kind: ConfigMap\nmetadata: {name: a}\n", wantErr: "f.yaml#0: object has no apiVersion"},
		{name: "no name in second doc", in: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\n", wantErr: "f.yaml#1: ConfigMap has no metadata.name"},
		{name: "generateName", in: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n", wantErr: "generateName is not supported"},
		{
			name:    "billion laughs",
			in:      "a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
			wantErr: "f.yaml#0: parse",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("f.yaml", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetKind()+"/"+o.GetName()+"#"+string(rune('0'+o.Origin.Doc)))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlain(t *testing.T) {
	cm := func(name string) string { return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n" }
	root := writeTree(t, map[string]string{
		"app/b.yaml":         cm("b"),
		"app/a.yml":          cm("a"),
		"app/sub/c.json":     `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`,
		"app/README.md":      "not a manifest",
		"app/.hidden/x.yaml": cm("hidden"),
		"dup/1.yaml":         cm("same"),
		"dup/2.yaml":         cm("same"),
	})
	set, err := Plain(PlainOptions{Root: root, Path: "app", App: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range set.Objects {
		got = append(got, o.Origin.String()+" "+o.GetName())
	}
	want := []string{"web: app/a.yml#0 a", "web: app/b.yaml#0 b", "web: app/sub/c.json#0 c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}

	_, err = Plain(PlainOptions{Root: root, Path: "dup"})
	if err == nil || !strings.Contains(err.Error(), "dup/2.yaml#0: ConfigMap/same: duplicate object, first defined in dup/1.yaml#0") {
		t.Errorf("duplicate error = %v", err)
	}
}

func TestPlainRefusesEscape(t *testing.T) {
	outside := writeTree(t, map[string]string{"secret.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\n"})
	root := writeTree(t, map[string]string{"app/ok.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n"})
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(root, "app", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../x", "/etc", "app", "linkdir", "app/link.yaml"} {
		t.Run(p, func(t *testing.T) {
			_, err := Plain(PlainOptions{Root: root, Path: p, MaxFileSize: 1024})
			if err == nil {
				t.Fatalf("Plain(%q) read outside the root without an error", p)
			}
		})
	}
	big := writeTree(t, map[string]string{"big.yaml": strings.Repeat("# padding\n", 200)})
	if _, err := Plain(PlainOptions{Root: big, Path: "big.yaml", MaxFileSize: 100}); err == nil || !strings.Contains(err.Error(), "big.yaml: file larger than the limit of 100 bytes") {
		t.Errorf("size limit error = %v", err)
	}
}

// TestGenerateNameHooks: hooks may be named by metadata.generateName
// (Argo CD's helm-hooks and sync-waves examples, many charts), in plain
// files and chart templates; each is known by its prefix, so two prefixes
// are two hooks and one prefix twice is a duplicate. Any other object named
// so is refused, naming its file or template and its kind.
func TestGenerateNameHooks(t *testing.T) {
	ctx := context.Background()
	job := func(meta string) string {
		return "apiVersion: batch/v1\nkind: Job\nmetadata:\n" + meta + "spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: x, image: x}]\n"
	}
	argo := job("  generateName: upgrade-sql-schema\n  annotations: {argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: BeforeHookCreation}\n")
	helm := job("  generateName: \"{{ .Release.Name }}-migrate-\"\n  annotations: {helm.sh/hook: pre-install}\n")
	helmPlain := job("  generateName: web-migrate-\n  annotations: {helm.sh/hook: pre-install}\n")
	notHook := job("  generateName: report-\n")
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
	root := writeTree(t, map[string]string{
		"plain/a.yaml":                   cm + "---\n" + argo + "---\n" + helmPlain,
		"dup/a.yaml":                     argo,
		"dup/b.yaml":                     argo,
		"bad/a.yaml":                     cm + "---\n" + notHook,
		"chart/Chart.yaml":               "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"chart/templates/migrate.yaml":   helm,
		"chart/templates/cm.yaml":        cm,
		"badchart/Chart.yaml":            "apiVersion: v2\nname: bad\nversion: 0.1.0\n",
		"badchart/templates/report.yaml": notHook,
		"kust/kustomization.yaml":        "resources: [cm.yaml, job.yaml]\n",
		"kust/cm.yaml":                   cm,
		"kust/job.yaml":                  argo,
	})
	hookIDs := func(objs []*object.Object) []string {
		var out []string
		for _, o := range objs {
			out = append(out, object.HookID(o.Unstructured).String())
		}
		return out
	}
	var r Renderer
	for _, tt := range []struct {
		name      string
		src       Source
		wantHooks []string
		wantErr   string
	}{
		{
			name:      "plain",
			src:       Source{Plain: &PlainOptions{Path: "plain"}},
			wantHooks: []string{"Job/upgrade-sql-schema*", "Job/web-migrate-*"},
		},
		{
			name:      "helm",
			src:       Source{Helm: &HelmOptions{Chart: "chart", ReleaseName: "web"}},
			wantHooks: []string{"Job/web-migrate-*"},
		},
		{
			// kustomize itself refuses an object without a name, hook or
			// not (kubernetes-sigs/kustomize#641), before deliver sees it.
			name:    "kustomize",
			src:     Source{Kustomize: &KustomizeOptions{Path: "kust"}},
			wantErr: "missing metadata.name",
		},
		{
			name:    "same prefix twice",
			src:     Source{Plain: &PlainOptions{Path: "dup"}},
			wantErr: "dup/b.yaml#0: Job/upgrade-sql-schema*: duplicate object, first defined in dup/a.yaml#0",
		},
		{
			name:    "plain object that is no hook",
			src:     Source{Plain: &PlainOptions{Path: "bad"}},
			wantErr: "bad/a.yaml#1: Job: metadata.generateName is not supported (an object needs a stable name to be tracked; only hooks may use generateName)",
		},
		{
			name:    "chart object that is no hook",
			src:     Source{Helm: &HelmOptions{Chart: "badchart", ReleaseName: "web"}},
			wantErr: "shop: bad/templates/report.yaml#0: Job: metadata.generateName is not supported",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := r.Render(ctx, Options{Root: root, App: "shop", Namespace: "shop", Sources: []Source{tt.src}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantHooks, hookIDs(set.Hooks)); diff != "" {
				t.Errorf("hooks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"ConfigMap/a"}, hookIDs(set.Objects)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}
