package apply

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/corpus"
)

// checkBody checks that the API server decodes yamlBody's YAML of obj as
// it decodes obj's JSON (util/yaml.Unmarshal is the decoding of an apply
// patch). It reports whether yamlBody wrote YAML at all.
func checkBody(t *testing.T, obj map[string]any) bool {
	t.Helper()
	js, err := json.Marshal(obj)
	if err != nil {
		if _, ok := yamlBody(obj); ok {
			t.Errorf("yamlBody wrote an object JSON cannot hold (%v)", err)
		}
		return false
	}
	body, ok := yamlBody(obj)
	if !ok {
		return false
	}
	// want is the object as JSON means it. The server, reading JSON with
	// go-yaml, mostly gets the same, but not for a few characters JSON
	// leaves unescaped: it rejects DEL, the C1 controls and a byte order
	// mark, and reads NEL as a space. The YAML escapes them all.
	var want, got map[string]any
	if err := utiljson.Unmarshal(js, &want); err != nil {
		t.Fatalf("decode JSON %s: %v", js, err)
	}
	if err := utilyaml.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode YAML of %s: %v\n%s", js, err, body)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("YAML decodes differently from JSON %s (-want +got):\n%s\nYAML:\n%s", js, diff, body)
	}
	return true
}

// trickyStrings are strings YAML could read as something else, or that
// need escaping.
var trickyStrings = []string{
	"", " ", "  lead", "trail  ", "yes", "no", "on", "off", "y", "n", "true", "False", "null", "Null", "~", "-",
	"1", "-1", "+1", "0x1f", "0o17", "017", "1_000", "1e3", "1.5", ".5", ".inf", "-.Inf", ".nan", "1:20", "190:20:30",
	"2001-12-14", "2001-12-14t21:59:43.10-05:00", "<<", "=", "---", "...", "--- x", "- x", "? x", ": x", "a: b", "a:b", "#c", "a #c",
	"{", "}", "[", "]", "{a: b}", "[a]", ",", "*a", "&a", "!t", "!!str", "%YAML", "@", "`", "'", "''", `"`, `\`, `\\"`,
	"\n", "a\nb", "a\n\nb", "a\n", "\r\n", "\t", "a\tb", "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f",
	"\u0080", "\u0085", "\u009f", "\u00a0", "é", "ß", "\u2028", "\u2029", "\ufeff", "\ufffd", "\ufffe", "\uffff",
	"\U0001F600", "\U0010FFFF", "\xff", "\xc3", "a\xe2\x82", "\xed\xa0\x80", "<b>&amp;</b>", "\\u0041", "\\x41",
	strings.Repeat("x", 5000), strings.Repeat("ab ", 2000),
}

func TestYAMLBody(t *testing.T) {
	for _, s := range trickyStrings {
		// As a value, in a sequence, and (if short enough) as a key.
		obj := map[string]any{"v": s, "l": []any{s, map[string]any{"k": s}}}
		if len(s) < maxBodyKey/2 {
			obj[s] = "key"
		}
		if !checkBody(t, obj) {
			t.Errorf("yamlBody gave up on %q", s)
		}
	}
	numbers := []any{int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), 0.0, math.Copysign(0, -1), 1.5, -2.25,
		3.0, 1e20, 1e21, 1.5e300, 1e-6, 1e-7, 5e-324, math.MaxFloat64, 0.1, 1.0 / 3, float64(1 << 53), float64(1<<53 + 2), true, false, nil, 7, int32(-8)}
	for _, n := range numbers {
		if !checkBody(t, map[string]any{"n": n, "l": []any{n}}) {
			t.Errorf("yamlBody gave up on %v (%T)", n, n)
		}
	}
	shapes := []map[string]any{
		{},
		{"a": map[string]any{}},
		{"a": []any{}},
		{"a": []any{map[string]any{}, []any{}, nil}},
		{"a": []any{[]any{"x", []any{"y", map[string]any{"z": 1}}}, []any{}}},
		{"a": []any{map[string]any{"b": []any{map[string]any{"c": []any{"d"}}}, "e": "f"}}},
		{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": []any{int64(1), int64(2)}}}}},
		{"<<": map[string]any{"x": 1}, "y": 2},
		{strings.Repeat("k", 990): "long key"},
	}
	for _, m := range shapes {
		if !checkBody(t, m) {
			t.Errorf("yamlBody gave up on %v", m)
		}
	}
}

func TestYAMLBodyFallsBack(t *testing.T) {
	deep := map[string]any{"x": 1}
	for range maxBodyDepth {
		deep = map[string]any{"d": []any{deep}}
	}
	for name, obj := range map[string]map[string]any{
		"key over the implicit-key limit": {strings.Repeat("k", 1200): "v"},
		"key that escapes past the limit": {strings.Repeat("\x01", 300): "v"},
		"NaN":                             {"f": math.NaN()},
		"infinity":                        {"f": math.Inf(-1)},
		"struct value":                    {"s": struct{ A int }{1}},
		"uint":                            {"u": uint64(1)},
		"float32":                         {"f": float32(1.5)},
		"typed map":                       {"m": map[string]string{"a": "b"}},
		"too deep":                        deep,
	} {
		if body, ok := yamlBody(obj); ok {
			t.Errorf("%s: yamlBody wrote YAML, want the JSON fallback:\n%.300s", name, body)
		}
		want, wantErr := json.Marshal(obj)
		got, err := PatchBody(obj)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Errorf("%s: PatchBody = %.100s, %v; want the JSON %.100s, %v", name, got, err, want, wantErr)
		}
	}
	if got, err := PatchBody(map[string]any{"kind": "ConfigMap"}); err != nil || string(got) != "\"kind\": \"ConfigMap\"\n" {
		t.Errorf("PatchBody = %q, %v; want the YAML", got, err)
	}
}

// TestYAMLBodyManifests checks every manifest in the repository's test
// data and examples.
func TestYAMLBodyManifests(t *testing.T) {
	n := 0
	for _, root := range []string{"../render/testdata", "../../examples", "testdata"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, doc := range bytes.Split(data, []byte("\n---")) {
				var obj map[string]any
				if yaml.Unmarshal(doc, &obj) != nil || obj == nil {
					continue // templates, broken inputs of error tests
				}
				if checkBody(t, obj) {
					n++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 50 {
		t.Errorf("checked %d manifests, want at least 50", n)
	}
}

// TestYAMLBodyCorpus checks every object of the generated corpus's plain
// documents: block scalars of every style at every document end, quoted,
// flow and YAML 1.1 scalars, CRDs, hooks, CRLF line ends.
func TestYAMLBodyCorpus(t *testing.T) {
	n := 0
	for _, d := range corpus.PlainDocuments() {
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(d.Data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				break // the end, or a document the corpus made invalid on purpose
			}
			if obj != nil && checkBody(t, obj) {
				n++
			}
		}
	}
	if n < 300 {
		t.Errorf("checked %d corpus objects, want at least 300", n)
	}
}

// TestYAMLBodyRandom checks generated objects built from the tricky
// strings and numbers.
func TestYAMLBodyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("az09-_./: #'\"\\\n\t\x00\x7féß\u0085\u2028\ufeff{}[],&*!|>%@`~<=?")
	var value func(depth int) any
	str := func() string {
		if r.IntN(3) == 0 {
			return trickyStrings[r.IntN(len(trickyStrings)-2)] // not the long ones
		}
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	value = func(depth int) any {
		switch k := r.IntN(10); {
		case k < 3 && depth < 6:
			m := map[string]any{}
			for range r.IntN(5) {
				m[str()] = value(depth + 1)
			}
			return m
		case k < 5 && depth < 6:
			l := []any{}
			for range r.IntN(4) {
				l = append(l, value(depth+1))
			}
			return l
		case k < 6:
			return []any{int64(r.Int64()), r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30)), r.IntN(2) == 0, nil}[r.IntN(4)]
		default:
			return str()
		}
	}
	for range 3000 {
		obj := map[string]any{}
		for range 1 + r.IntN(6) {
			obj[str()] = value(0)
		}
		checkBody(t, obj)
		if t.Failed() {
			return
		}
	}
}

func FuzzYAMLBody(f *testing.F) {
	for _, s := range trickyStrings[:len(trickyStrings)-2] {
		js, _ := json.Marshal(map[string]any{"k": s, s: []any{s, 1.5, map[string]any{"x": nil}}})
		f.Add(string(js))
	}
	f.Fuzz(func(t *testing.T, js string) {
		var obj map[string]any
		if utiljson.Unmarshal([]byte(js), &obj) != nil || obj == nil {
			return
		}
		checkBody(t, obj)
	})
}

// BenchmarkBody compares yamlBody with encoding/json on the example's
// Deployment: the YAML is written on top of the JSON deliver digests.
func BenchmarkBody(b *testing.B) {
	data, err := os.ReadFile("../../examples/plain/manifests/web.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var obj map[string]any
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if bytes.Contains(doc, []byte("kind: Deployment")) {
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("yaml", func(b *testing.B) {
		for b.Loop() {
			if _, ok := yamlBody(obj); !ok {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(obj); err != nil {
				b.Fatal(err)
			}
		}
	})
}
