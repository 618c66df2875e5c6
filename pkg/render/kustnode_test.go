package render

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// trickyResources is a kustomization whose resources hold every kind of
// scalar YAML has, for TestResourceMap.
var trickyResources = map[string]string{
	"kustomization.yaml": `resources: [values.yaml, aliases.yaml, infinite.yaml, patched.yaml]
labels:
- pairs: {team: "007", enabled: "true"}
patches:
- target: {kind: Widget, name: patched}
  patch: |
    - op: add
      path: /spec/patched
      value: {count: 3, ratio: 0.5, flag: false, none: null, list: [1, "1", true]}
`,
	// Not patched either: a JSON patch turns the whole resource into JSON
	// and back, which leaves nothing tricky.
	"values.yaml": `apiVersion: example.com/v1
kind: Sample
metadata:
  name: values
  annotations: {quoted-int: "42", quoted-bool: "yes", empty: ""}
spec:
  ints: [0, 7, -12, 123456789012345678, 9007199254740993, 1234567890123456789012, 0x1F, 0o17, 017, +5, -0]
  floats: [1.5, -0.25, 1e3, 1.0e-7, 6.02E+23, -0.0, .5, 1.]
  bools: [true, false, True, FALSE, yes, no, on, off]
  nulls: [null, ~, Null, NULL]
  empty:
  strings: ["0x1F", '1.5', plain text, "multi\nline", "tab\there", "ünïcödé ✓", "<>&", ""]
  block: |
    line one
    line two
  folded: >
    folded
    text
  timestamps: [2001-12-14, 2001-12-14t21:59:43.10-05:00, "2001-12-14"]
  nested: [[1, [2, [3]]], [], {}, {a: {b: {c: [x]}}}]
  tagged: [!!str 12, !!int "34", !!float "5", !!bool "true", !!null ""]
  binary: !!binary aGVsbG8=
`,
	"aliases.yaml": `apiVersion: example.com/v1
kind: Gadget
metadata: {name: aliases}
spec:
  base: &base {x: 1, y: two}
  copy: *base
  merged:
    <<: *base
    z: 3
  intKeys: {1: one, 2: two}
`,
	"patched.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: patched}\nspec: {size: 1}\n",
	// Not patched: a JSON patch of it would fail the build.
	"infinite.yaml": `apiVersion: example.com/v1
kind: Gauge
metadata: {name: infinite}
spec: {limits: [.inf, -.Inf, .nan, 1e400]}
`,
}

// TestResourceMap checks resourceMap against the JSON path it replaces
// (json.Unmarshal of resource.MarshalJSON) on every resource of the test
// data's kustomizations, the examples' and a kustomization of tricky
// scalars, and that it converts the ordinary resources itself.
func TestResourceMap(t *testing.T) {
	tricky := t.TempDir()
	for name, data := range trickyResources {
		if err := os.WriteFile(filepath.Join(tricky, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	builds := []KustomizeOptions{
		prodOverlay(),
		{Root: "testdata/repo", Path: "kustomize/base", Decrypt: fakeDecrypt},
		{Root: "../../examples/app", Path: "worker/overlays/staging"},
		{Root: "../../examples/app", Path: "worker/overlays/dev"},
		{Root: tricky, Path: "."},
	}
	var r Renderer
	converted, total := 0, 0
	for _, opts := range builds {
		built, err := r.kustomizeBuild(context.Background(), opts)
		if err != nil {
			t.Fatalf("%s/%s: %v", opts.Root, opts.Path, err)
		}
		for _, res := range built {
			total++
			var want map[string]any
			doc, jsonErr := res.MarshalJSON()
			if jsonErr == nil {
				jsonErr = json.Unmarshal(doc, &want)
			}
			got, ok := resourceMap(res)
			if !ok {
				continue
			}
			converted++
			if jsonErr != nil {
				t.Errorf("%s: converted a resource whose JSON fails: %v", res.CurId(), jsonErr)
				continue
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-JSON +resourceMap):\n%s", res.CurId(), diff)
			}
		}
	}
	// The tricky Sample, Gadget and Gauge take the JSON path; every other
	// resource must not.
	if converted != total-3 {
		t.Errorf("resourceMap converted %d of %d resources, want all but the 3 tricky ones", converted, total)
	}
}

func TestResourceMapValues(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"kustomization.yaml": "resources: [plain.yaml]\n",
		"plain.yaml": `apiVersion: example.com/v1
kind: Widget
metadata: {name: plain}
spec:
  ints: [0, 7, -12, -0, 123456789012345678]
  floats: [1.5, -0.25, 1e3, 1.0e-7, 6.02E+23, -0.0]
  bools: [true, false]
  nulls: [null, ~]
  empty:
  strings: ["0x1F", '1.5', plain text, "multi\nline", "ünïcödé ✓", ""]
  nested: [[1, [2, [3]]], [], {}, {a: {b: {c: [x]}}}]
  tagged: [!!str 12]
`,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var r Renderer
	built, err := r.kustomizeBuild(context.Background(), KustomizeOptions{Root: dir, Path: "."})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := resourceMap(built[0])
	if !ok {
		t.Fatal("resourceMap gave up on plain scalars")
	}
	var want map[string]any
	doc, err := built[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-JSON +resourceMap):\n%s", diff)
	}
}

func TestDecimalNumbers(t *testing.T) {
	for s, want := range map[string][2]bool{ // {decimalInt, decimalFloat}
		"0": {true, true}, "7": {true, true}, "-12": {true, true}, "-0": {true, true},
		"007": {false, true}, "+5": {false, false}, "0x1F": {false, false}, "1_000": {false, false},
		"1234567890123456789": {false, true}, "": {false, false}, "-": {false, false},
		"1.5": {false, true}, "1e3": {false, true}, "1.0e-7": {false, true}, "6.02E+23": {false, true},
		".5": {false, false}, "1.": {false, false}, "1e": {false, false}, ".inf": {false, false}, "1.5.": {false, false},
	} {
		if got := [2]bool{decimalInt(s), decimalFloat(s)}; got != want {
			t.Errorf("%q: decimalInt, decimalFloat = %v, want %v", s, got, want)
		}
	}
}

// TestResourceMapScalars builds one resource per scalar and checks that
// resourceMap either gives what the JSON path gives or leaves it to it.
func TestResourceMapScalars(t *testing.T) {
	scalars := []string{
		`0`, `7`, `-12`, `-0`, `+5`, `007`, `0x1F`, `0o17`, `1_000`, `123456789012345678`, `9007199254740993`, `1234567890123456789012`,
		`1.5`, `-0.25`, `1e3`, `1.0e-7`, `6.02E+23`, `-0.0`, `.5`, `1.`, `.inf`, `.nan`, `1e400`,
		`true`, `false`, `True`, `FALSE`, `yes`, `no`, `on`, `off`, `y`, `n`,
		`null`, `~`, `Null`, `NULL`, ``,
		`"0x1F"`, `'1.5'`, `plain text`, `"multi\nline"`, `"tab\there"`, `ünïcödé ✓`, `"<>&"`, `""`, `"\u2028"`, `"\x7f"`,
		`2001-12-14`, `2001-12-14t21:59:43.10-05:00`, `"2001-12-14"`,
		`!!str 12`, `!!int "34"`, `!!float "5"`, `!!bool "true"`, `!!null ""`, `!!binary aGVsbG8=`, `!custom x`,
		`[1, "1", [2], {}]`, `{a: 1, "b": [true]}`, `{1: one}`, `{? [a]: b}`,
		"|\n    block\n    text", ">\n    folded\n    text",
	}
	var r Renderer
	for _, v := range scalars {
		dir := t.TempDir()
		files := map[string]string{
			"kustomization.yaml": "resources: [r.yaml]\n",
			"r.yaml":             "apiVersion: example.com/v1\nkind: Sample\nmetadata: {name: s}\nspec:\n  v: " + v + "\n",
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		built, err := r.kustomizeBuild(context.Background(), KustomizeOptions{Root: dir, Path: "."})
		if err != nil {
			continue // kustomize itself refuses it
		}
		got, ok := resourceMap(built[0])
		doc, jsonErr := built[0].MarshalJSON()
		var want map[string]any
		if jsonErr == nil {
			jsonErr = json.Unmarshal(doc, &want)
		}
		switch {
		case !ok:
			t.Logf("%q: JSON path", v)
		case jsonErr != nil:
			t.Errorf("%q: converted, but its JSON fails: %v", v, jsonErr)
		default:
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%q (-JSON +resourceMap):\n%s", v, diff)
			}
		}
	}
}
