package render

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	yamlv2 "go.yaml.in/yaml/v2"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// decodeCases are documents whose decoding must not differ from
// kubectlUnmarshal's: YAML 1.1 scalars, numbers at the edges of
// float64, keys of every type, invalid UTF-8, merge keys, anchors, deep
// nesting, and documents that are not maps.
var decodeCases = []string{
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {x: y}}\ndata: {k: v}\n",
	`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"a":"YQ=="}}`,
	"a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\ng: true\nh: ~\ni: null\nj: Null\nk: NULL\nl: ''\n",
	"a: 1\nb: -1\nc: 0x1F\nd: 0o17\ne: 017\nf: 1_000\ng: 1e3\nh: 1.5\ni: -0\nj: -0.0\nk: .5\nl: 190:20:30\n",
	"a: 9007199254740993\nb: 18446744073709551615\nc: -9223372036854775808\nd: 123456789012345678901234567890\ne: 1e308\nf: 4.9e-324\n",
	// Floats with integral values: JSON writes their shortest digits
	// padded with zeros, an int64 for kubectl where they fit.
	"a: 4.611686018427387904e18\nb: -9223372036854775809\nc: 1e21\nd: 9.3e18\ne: 1e20\nf: -1.0\ng: 2.0e0\n",
	"a: .inf\n",
	"a: -.Inf\n",
	"a: .nan\n",
	"a: 2001-12-14t21:59:43.10-05:00\nb: 2002-12-14\nc: !!timestamp 2001-12-14\n",
	"a: !!binary aGVsbG8=\nb: !!binary /w==\nc: !!str 1\nd: !!int \"3\"\ne: !!float 1\n",
	"1: one\n2.5: two\ntrue: t\n0x10: hex\n-3: neg\n",
	"1.0: one\n",
	"~: null key\n",
	"[1, 2]: list key\n",
	"1: int\n\"1\": string\n",
	"a: \"\\xff\\xfe\"\nb: \"caf\\xe9\"\nc: \"ok \\u2028 \\u00e9\"\n",
	"base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
	"a: &a [1, 2]\nb: *a\nc: [*a, *a]\n",
	"- a\n- b\n",
	"just a string\n",
	"42\n",
	"",
	"# only a comment\n",
	"null\n",
	"---\n",
	"a: |\n  multi\n  line\nb: >\n  folded\n  text\nc: 'single ''quoted'''\nd: \"double \\\"quoted\\\"\"\n",
	"a: {b: {c: {d: [1, {e: [true, null, 1.25, \"x\"]}]}}}\n",
	"a: \"<html> & </html>\"\n",
	"key with spaces: v\n\"quoted: key\": w\n",
	"a: b: c\n",
	"a: [1, 2\n",
	"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
	strings.Repeat("[", 1500) + strings.Repeat("]", 1500) + "\n",
	"a: " + strings.Repeat("[", 900) + strings.Repeat("]", 900) + "\n",
	"a: " + strings.Repeat("{b: ", 1100) + "1" + strings.Repeat("}", 1100) + "\n",
}

// kubectlUnmarshal reads a YAML document as kubectl builds an object of
// it: sigs.k8s.io/yaml's conversion to JSON, then the unstructured JSON
// scheme's decoding (apimachinery's json: integers that fit are int64).
// Its errors are worded as sigs.k8s.io/yaml.Unmarshal's.
func kubectlUnmarshal(raw []byte) (map[string]any, error) {
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("error converting YAML to JSON: %w", err)
	}
	var m map[string]any
	if err := utiljson.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("error unmarshaling JSON: %w", err)
	}
	return m, nil
}

// TestUnmarshalObjectMatchesKubectl: unmarshalObject gives the same map,
// or the same error, as kubectlUnmarshal; its errors are also those of
// sigs.k8s.io/yaml.Unmarshal.
func TestUnmarshalObjectMatchesKubectl(t *testing.T) {
	for i, c := range decodeCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkUnmarshalObject(t, []byte(c)) })
	}
}

func checkUnmarshalObject(t *testing.T, raw []byte) {
	t.Helper()
	want, wantErr := kubectlUnmarshal(raw)
	got, err := unmarshalObject(raw)
	if (err != nil) != (wantErr != nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%q: error %v, want %v", raw, err, wantErr)
	}
	var sigs map[string]any
	if sigsErr := yaml.Unmarshal(raw, &sigs); (err != nil) != (sigsErr != nil) {
		t.Fatalf("%q: error %v, sigs.k8s.io/yaml.Unmarshal's %v", raw, err, sigsErr)
	}
	if wantErr != nil {
		return
	}
	same := func(want map[string]any) bool {
		return reflect.DeepEqual(got, want) && fmt.Sprintf("%#v", got) == fmt.Sprintf("%#v", want)
	}
	if same(want) {
		return
	}
	if hasDuplicateIntAndStringKeys(raw) {
		// sigs.k8s.io/yaml keeps one of two colliding keys at random (map
		// order): the result must be one it gives, on some call.
		for range 200 {
			if again, err := kubectlUnmarshal(raw); err == nil && same(again) {
				return
			}
		}
	}
	t.Fatalf("%q:\n got %#v\nwant %#v", raw, got, want)
}

// FuzzUnmarshalObject: the same, for any input (go test -fuzz).
func FuzzUnmarshalObject(f *testing.F) {
	for _, c := range slices.Concat(decodeCases, manifestCases, edgeCases, openCases, longKeyCases) {
		if len(c) < 4096 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkUnmarshalObject(t, raw) })
}

// hasDuplicateIntAndStringKeys reports documents where two keys of
// different YAML types turn into the same string (1 and "1"): sigs.k8s.io/yaml
// keeps one of them at random.
func hasDuplicateIntAndStringKeys(raw []byte) bool {
	var y any
	if err := yamlv2.Unmarshal(raw, &y); err != nil {
		return false
	}
	var walk func(v any, depth int) bool
	walk = func(v any, depth int) bool {
		if depth > 2000 {
			return false
		}
		switch v := v.(type) {
		case map[any]any:
			seen := map[string]bool{}
			for k, x := range v {
				s := fmt.Sprint(k)
				if f, ok := k.(float64); ok {
					s = strconv.FormatFloat(f, 'g', -1, 32)
				}
				if seen[s] {
					return true
				}
				seen[s] = true
				if walk(x, depth+1) {
					return true
				}
			}
		case []any:
			for _, x := range v {
				if walk(x, depth+1) {
					return true
				}
			}
		}
		return false
	}
	return walk(y, 0)
}

// TestDecodeAllKeepsSequentialErrors: parallel decoding reports the error
// a sequential loop would have stopped at, and every result before it.
func TestDecodeAllKeepsSequentialErrors(t *testing.T) {
	for n := range 50 {
		for fail := range n + 1 {
			out, errs := decodeAll(n, func(i int) (int, error) {
				if i == fail || i == fail+3 {
					return 0, fmt.Errorf("item %d", i)
				}
				return i * 2, nil
			})
			for i := range n {
				switch {
				case i < fail && (errs[i] != nil || out[i] != i*2):
					t.Fatalf("n=%d fail=%d: item %d = %d, %v", n, fail, i, out[i], errs[i])
				case i == fail && (errs[i] == nil || errs[i].Error() != fmt.Sprintf("item %d", i)):
					t.Fatalf("n=%d fail=%d: item %d error %v", n, fail, i, errs[i])
				case i > fail && errs[i] == nil && out[i] != i*2:
					t.Fatalf("n=%d fail=%d: item %d = %d", n, fail, i, out[i])
				}
			}
		}
	}
}
