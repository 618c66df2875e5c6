package object

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-openapi/jsonpointer"
	"github.com/google/go-cmp/cmp"
)

const pointerDoc = `{
  "metadata": {"annotations": {"a/b": "1", "c~d": "2", "*": "star"}},
  "spec": {"replicas": 3, "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
  "webhooks": [{"name": "x", "clientConfig": {"caBundle": "X"}}, {"name": "y", "clientConfig": {"url": "u"}}, {"name": "z", "clientConfig": {"caBundle": "Z"}}]
}`

func doc(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(pointerDoc), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPointerPaths: which fields a pointer reaches, RFC 6901 escapes and
// indices, and the * wildcard over list items (a literal key on a map).
func TestPointerPaths(t *testing.T) {
	tests := []struct {
		pointer string
		want    []string
	}{
		{"/spec/replicas", []string{"/spec/replicas"}},
		{"/metadata/annotations/a~1b", []string{"/metadata/annotations/a~1b"}},
		{"/metadata/annotations/c~0d", []string{"/metadata/annotations/c~0d"}},
		{"/metadata/annotations/*", []string{"/metadata/annotations/*"}},
		{"/webhooks/*/clientConfig/caBundle", []string{"/webhooks/0/clientConfig/caBundle", "/webhooks/2/clientConfig/caBundle"}},
		{"/spec/containers/1/image", []string{"/spec/containers/1/image"}},
		{"/spec/containers/*", []string{"/spec/containers/0", "/spec/containers/1"}},
		{"/spec/containers/01/image", nil}, // leading zero: no index
		{"/spec/containers/2/image", nil},  // past the end
		{"/spec/containers/-", nil},
		{"/spec/absent", nil},
		{"/spec/replicas/deeper", nil},
	}
	for _, tt := range tests {
		t.Run(tt.pointer, func(t *testing.T) {
			p, err := ParsePointer(tt.pointer)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, path := range p.Paths(doc(t)) {
				got = append(got, path.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePointerErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "empty JSON pointer"},
		{"spec/replicas", "must start with /"},
		{"/a~2", "~ must be followed by 0 or 1"},
		{"/a~", "~ must be followed by 0 or 1"},
	} {
		if _, err := ParsePointer(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePointer(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

// TestRemoveAndSet: removing fields, list items (highest index first, so
// that several of one list go), and setting through maps made on the way.
func TestRemoveAndSet(t *testing.T) {
	m := doc(t)
	var paths []Path
	for _, s := range []string{"/webhooks/*/clientConfig/caBundle", "/spec/containers/*", "/metadata/annotations/a~1b"} {
		p, err := ParsePointer(s)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p.Paths(m)...)
	}
	Remove(m, paths)
	got, _ := json.Marshal(m)
	want := `{"metadata":{"annotations":{"*":"star","c~d":"2"}},"spec":{"containers":[],"replicas":3},"webhooks":[{"clientConfig":{},"name":"x"},{"clientConfig":{"url":"u"},"name":"y"},{"clientConfig":{},"name":"z"}]}`
	if string(got) != want {
		t.Errorf("after Remove:\n%s\nwant\n%s", got, want)
	}
	if !SetAt(m, Path{"webhooks", 2, "clientConfig", "caBundle"}, "Z2") || !SetAt(m, Path{"status", "x"}, 1.0) || SetAt(m, Path{"webhooks", 5, "name"}, "no") {
		t.Error("SetAt: want the two sets and not the one past the list's end")
	}
	if v, ok := GetAt(m, Path{"webhooks", 2, "clientConfig", "caBundle"}); !ok || v != "Z2" {
		t.Errorf("GetAt = %v, %v", v, ok)
	}
	if v, ok := GetAt(m, Path{"status", "x"}); !ok || v != 1.0 {
		t.Errorf("GetAt(status.x) = %v, %v", v, ok)
	}
}

// leadingZero matches a pointer with a token of digits that starts with 0.
var leadingZero = regexp.MustCompile(`/0[0-9]+(/|$)`)

// TestPointerMatchesJSONPointer: without its "*" extension, a pointer
// reaches what go-openapi/jsonpointer (kube-openapi's) resolves, on
// random objects and random pointers made of their keys, list indices,
// escapes and tokens that lead nowhere ("-", a missing key), but for one
// difference: jsonpointer reads an index with leading zeros ("01"), which
// RFC 6901 does not allow.
func TestPointerMatchesJSONPointer(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	keys := []string{"a", "b", "a/b", "c~d", "0", "01", "-", "spec", "~1", "x y"}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch n := rng.IntN(6); {
		case depth > 3 || n == 0:
			return "v" + strconv.Itoa(rng.IntN(10))
		case n == 1:
			return float64(rng.IntN(5))
		case n <= 3:
			m := map[string]any{}
			for range rng.IntN(4) + 1 {
				m[keys[rng.IntN(len(keys))]] = gen(depth + 1)
			}
			return m
		default:
			l := make([]any, rng.IntN(4))
			for i := range l {
				l[i] = gen(depth + 1)
			}
			return l
		}
	}
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	tokens := append(slices.Clone(keys), "1", "2", "3", "00", "nope")
	checked := 0
	for range 3000 {
		obj, ok := gen(0).(map[string]any)
		if !ok {
			continue
		}
		// Mostly down the keys and indices obj has, sometimes astray.
		var b strings.Builder
		var cur any = obj
		for range rng.IntN(4) + 1 {
			tok := tokens[rng.IntN(len(tokens))]
			switch c := cur.(type) {
			case map[string]any:
				if len(c) > 0 && rng.IntN(5) > 0 {
					ks := slices.Sorted(maps.Keys(c))
					tok = ks[rng.IntN(len(ks))]
				}
				cur = c[tok]
			case []any:
				if len(c) > 0 && rng.IntN(5) > 0 {
					tok = strconv.Itoa(rng.IntN(len(c)))
				}
				if j, err := strconv.Atoi(tok); err == nil && j >= 0 && j < len(c) && tok == strconv.Itoa(j) {
					cur = c[j]
				} else {
					cur = nil
				}
			default:
				cur = nil
			}
			b.WriteString("/" + escape.Replace(tok))
		}
		ptr := b.String()
		p, err := ParsePointer(ptr)
		if err != nil {
			t.Fatalf("ParsePointer(%q): %v", ptr, err)
		}
		jp, err := jsonpointer.New(ptr)
		if err != nil {
			t.Fatalf("jsonpointer.New(%q): %v", ptr, err)
		}
		want, _, jerr := jp.Get(obj)
		paths := p.Paths(obj)
		if jerr == nil && len(paths) == 0 && leadingZero.MatchString(ptr) {
			// jsonpointer reads "01" as list index 1; RFC 6901 allows
			// no leading zeros in an index, and deliver follows it.
			continue
		}
		switch {
		case jerr != nil && len(paths) != 0:
			t.Errorf("%s in %v: reaches %v; jsonpointer: %v", ptr, obj, paths, jerr)
		case jerr == nil && len(paths) != 1:
			t.Errorf("%s in %v: reaches %v; jsonpointer: %v", ptr, obj, paths, want)
		case jerr == nil:
			got, _ := GetAt(obj, paths[0])
			if !cmp.Equal(got, want) {
				t.Errorf("%s in %v: %v; jsonpointer: %v", ptr, obj, got, want)
			}
			checked++
		}
	}
	if checked < 100 {
		t.Errorf("only %d pointers reached a value: the generator tests little", checked)
	}
}
