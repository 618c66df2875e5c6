package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"

	"github.com/deliverhq/deliver/internal/corpus"
)

// helmReads returns the values Helm's CLI builds from values files given
// with -f, in order: the oracle of inline values.
func helmReads(t *testing.T, texts ...string) (map[string]any, error) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, text := range texts {
		f := filepath.Join(dir, fmt.Sprintf("values%d.yaml", i))
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return (&values.Options{ValueFiles: files}).MergeValues(getter.Providers{})
}

// inlineConfig is a deliver.yaml whose app a has app as its inline values
// and whose environment e has env as its values override ("" for none).
func inlineConfig(app, env string) string {
	var b strings.Builder
	b.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\n")
	b.WriteString("apps:\n- name: a\n  namespace: x\n  helm:\n    chart: c\n    values:\n")
	b.WriteString(corpus.Nested(6, app))
	if env != "" {
		b.WriteString("environments:\n  e:\n    apps:\n      a:\n        values:\n")
		b.WriteString(corpus.Nested(10, env))
	}
	return b.String()
}

// sameValues compares values read by deliver with Helm's, types
// included: an integer where Helm has a float prints differently in a
// template.
func sameValues(t *testing.T, want, got map[string]any) string {
	t.Helper()
	if len(want) == 0 && len(got) == 0 {
		return ""
	}
	return cmp.Diff(want, got, cmpopts.EquateNaNs())
}

// TestInlineValuesReadAsHelm writes generated values (YAML 1.1 words,
// numbers in every notation, dates, tags, anchors and merge keys, block
// scalars) inline in deliver.yaml, and compares what deliver reads with
// what Helm reads from the same text in a values file; then the same for
// an environment's values over an app's, against Helm merging two values
// files (-f app.yaml -f env.yaml).
func TestInlineValuesReadAsHelm(t *testing.T) {
	texts := corpus.ValuesFiles(11, 300)
	read, refused := 0, 0
	for i, text := range texts {
		want, herr := helmReads(t, text)
		c, err := Parse("deliver.yaml", []byte(inlineConfig(text, "")))
		if herr != nil || err != nil {
			if (herr == nil) != (err == nil) {
				t.Errorf("case %d: helm: %v\ndeliver: %v\nvalues:\n%s", i, herr, err, text)
			}
			refused++
			continue
		}
		read++
		if diff := sameValues(t, want, c.Apps[0].Helm.Values); diff != "" {
			t.Errorf("case %d: values (-helm +deliver):\n%s\nvalues:\n%s", i, diff, text)
		}
	}
	t.Logf("%d values files read alike, %d refused by both", read, refused)
	if read < len(texts)*8/10 {
		t.Errorf("only %d of %d values files read", read, len(texts))
	}

	merged := 0
	for i := 0; i+1 < len(texts); i += 2 {
		app, env := texts[i], texts[i+1]
		want, herr := helmReads(t, app, env)
		c, err := Parse("deliver.yaml", []byte(inlineConfig(app, env)))
		if herr != nil || err != nil {
			if (herr == nil) != (err == nil) {
				t.Errorf("cases %d, %d: helm: %v\ndeliver: %v", i, i+1, herr, err)
			}
			continue
		}
		res, err := c.ForEnvironment("e")
		if err != nil {
			t.Fatalf("cases %d, %d: %v", i, i+1, err)
		}
		merged++
		if diff := sameValues(t, want, res.Apps[0].Helm.Values); diff != "" {
			t.Errorf("cases %d, %d: environment values over the app's (-helm -f app -f env +deliver):\n%s\napp:\n%s\nenv:\n%s", i, i+1, diff, app, env)
		}
	}
	if merged < len(texts)/2*7/10 {
		t.Errorf("only %d of %d pairs merged", merged, len(texts)/2)
	}
}

// TestInlineValuesShapes are the cases users write, by name, with what
// Helm makes of each.
func TestInlineValuesShapes(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         map[string]any
		wantErr      string
	}{
		{name: "yes is true", values: "enabled: yes", want: map[string]any{"enabled": true}},
		{name: "a large integer is a float", values: "size: 1000000", want: map[string]any{"size": 1e6}},
		{name: "a date stays a string", values: "day: 2001-12-14", want: map[string]any{"day": "2001-12-14"}},
		{name: "octal", values: "mode: 0755", want: map[string]any{"mode": float64(0o755)}},
		{name: "quoted stays a string", values: `enabled: "yes"`, want: map[string]any{"enabled": "yes"}},
		{name: "a key 1 is the string 1", values: "1: one", want: map[string]any{"1": "one"}},
		{name: "merge key", values: "base: &b {a: 1}\nover:\n  <<: *b\n  c: 2", want: map[string]any{"base": map[string]any{"a": 1.0}, "over": map[string]any{"a": 1.0, "c": 2.0}}},
		{name: "empty", values: "", want: nil},
		// The anchor is the app's namespace, outside the values.
		{name: "an alias of an anchor outside", values: "ns: *outside\nlist: [*outside]", want: map[string]any{"ns": "x", "list": []any{"x"}}},
		{name: "not a mapping", values: "[1, 2]", wantErr: "values: want a mapping"},
		{name: "an alias of itself", values: "a: &self\n  b: *self", wantErr: "values:"},
		{name: "a billion laughs", values: "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]", wantErr: "values:"},
		{name: "a value helm refuses", values: "a: !!int x", wantErr: "values:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: a\n  namespace: &outside x\n  helm:\n    chart: c\n    values:"
			if strings.HasPrefix(tc.values, "[") {
				cfg += " " + tc.values + "\n"
			} else {
				cfg += "\n" + corpus.Indent(6, tc.values) + "\n"
			}
			c, err := Parse("deliver.yaml", []byte(cfg))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, map[string]any(c.Apps[0].Helm.Values)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if tc.want == nil || strings.Contains(tc.values, "*outside") {
				return
			}
			helm, err := helmReads(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(helm, tc.want); diff != "" {
				t.Errorf("the case is not what helm reads (-helm +want):\n%s", diff)
			}
		})
	}
}
