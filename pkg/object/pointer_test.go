package object

import (
	"encoding/json"
	"strings"
	"testing"

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
