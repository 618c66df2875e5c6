package apply

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

// TestMaskSecretFields: in an object of any kind, a field whose value in
// git holds a secret and differs from the live value is masked on both
// sides, whatever the live value was (the previous secret, which the
// redactor does not know), in maps and in lists; every other field is
// left to the text redaction; a create or a delete is not touched.
func TestMaskSecretFields(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-new"
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "***") }
	cm := func(data map[string]any, env []any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"kind": "ConfigMap", "data": data, "env": env}}
	}
	tests := []struct {
		name                  string
		before, after         *unstructured.Unstructured
		wantBefore, wantAfter *unstructured.Unstructured
	}{
		{
			name:       "rotated value",
			before:     cm(map[string]any{"token": "s3cret-old", "mode": "a"}, nil),
			after:      cm(map[string]any{"token": secret, "mode": "b"}, nil),
			wantBefore: cm(map[string]any{"token": maskBefore, "mode": "a"}, nil),
			wantAfter:  cm(map[string]any{"token": maskAfter, "mode": "b"}, nil),
		},
		{
			name:       "embedded, in a list, and an old value of another type",
			before:     cm(map[string]any{"url": int64(3)}, []any{"x", map[string]any{"value": "old"}}),
			after:      cm(map[string]any{"url": "https://u:" + secret + "@h"}, []any{"x", map[string]any{"value": "pre-" + secret}}),
			wantBefore: cm(map[string]any{"url": maskBefore}, []any{"x", map[string]any{"value": maskBefore}}),
			wantAfter:  cm(map[string]any{"url": maskAfter}, []any{"x", map[string]any{"value": maskAfter}}),
		},
		{
			name:       "unchanged secret: the text redaction masks both alike",
			before:     cm(map[string]any{"token": secret}, []any{secret}),
			after:      cm(map[string]any{"token": secret}, []any{secret}),
			wantBefore: cm(map[string]any{"token": secret}, []any{secret}),
			wantAfter:  cm(map[string]any{"token": secret}, []any{secret}),
		},
		{
			name:       "new field holding a secret",
			before:     cm(map[string]any{}, nil),
			after:      cm(map[string]any{"token": secret}, []any{secret}),
			wantBefore: cm(map[string]any{}, nil),
			wantAfter:  cm(map[string]any{"token": secret}, []any{secret}),
		},
		{
			name:      "create",
			after:     cm(map[string]any{"token": secret}, nil),
			wantAfter: cm(map[string]any{"token": secret}, nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var beforeCopy *unstructured.Unstructured
			if tt.before != nil {
				beforeCopy = tt.before.DeepCopy()
			}
			b, a := maskSecretFields(tt.before, tt.after, redact)
			if diff := cmp.Diff(tt.wantBefore, b); diff != "" {
				t.Errorf("before (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAfter, a); diff != "" {
				t.Errorf("after (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeCopy, tt.before); diff != "" {
				t.Errorf("the live object given was changed (-was +is):\n%s", diff)
			}
		})
	}
}

// TestLeftSecrets: the inventory records where secrets were (places, list
// items as "*", not in a Secret, which is masked whole), and a diff masks
// the live value there unless git holds the same value now.
func TestLeftSecrets(t *testing.T) {
	t.Parallel()
	redact := func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") }
	container := func(name, value string) any {
		return map[string]any{"env": []any{map[string]any{"name": name, "value": value}}}
	}
	applied := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "a"},
		"data": map[string]any{"dsn": "pg://u:s3cret@db", "a/b": "s3cret", "plain": "x"},
		"spec": map[string]any{"containers": []any{container("A", "s3cret"), container("B", "plain")}},
	}}
	pointers := secretPointers(applied, redact)
	if diff := cmp.Diff([]string{"/data/a~1b", "/data/dsn", "/spec/containers/*/env/*/value"}, pointers); diff != "" {
		t.Errorf("secretPointers (-want +got):\n%s", diff)
	}
	secret := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "data": map[string]any{"a": "s3cret"}}}
	if p := secretPointers(secret, redact); p != nil {
		t.Errorf("a Secret records %v, want none: it is masked whole", p)
	}
	fieldLeft := applied.DeepCopy()
	unstructured.RemoveNestedField(fieldLeft.Object, "data", "dsn")
	unstructured.RemoveNestedField(fieldLeft.Object, "data", "a/b")
	for _, tc := range []struct {
		name  string
		after *unstructured.Unstructured
		want  map[string]any // pointer -> the value before shows
	}{
		{"deleted", nil, map[string]any{"/data/dsn": maskBefore, "/data/a~1b": maskBefore, "/data/plain": "x",
			"/spec/containers/0/env/0/value": maskBefore, "/spec/containers/1/env/0/value": maskBefore}},
		{"fields left git", fieldLeft, map[string]any{"/data/dsn": maskBefore, "/data/a~1b": maskBefore, "/data/plain": "x",
			"/spec/containers/0/env/0/value": "s3cret", "/spec/containers/1/env/0/value": "plain"}},
		{"the same in git", applied, map[string]any{"/data/dsn": "pg://u:s3cret@db", "/spec/containers/0/env/0/value": "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := maskLeftSecrets(applied, tc.after, pointers)
			for ptr, want := range tc.want {
				p, err := object.ParsePointer(ptr)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := object.GetAt(before.Object, p.Paths(before.Object)[0])
				if got != want {
					t.Errorf("%s = %v, want %v", ptr, got, want)
				}
			}
		})
	}
	if v, _, _ := unstructured.NestedString(applied.Object, "data", "dsn"); v != "pg://u:s3cret@db" {
		t.Errorf("maskLeftSecrets changed its argument: dsn %q", v)
	}
}

// TestMaskUnknownSecrets: against an inventory that recorded no places,
// every live string value that git does not hold at the same place is
// masked, in maps and lists, but the object's identity; a value git
// holds unchanged shows; the argument is not changed.
func TestMaskUnknownSecrets(t *testing.T) {
	t.Parallel()
	live := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "a", "namespace": "ns", "labels": map[string]any{"team": "x"}},
			"data":     map[string]any{"token": "s3cret", "plain": "p", "n": int64(3)},
			"list":     []any{"s3cret", "kept"},
		}}
	}
	after := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "a", "namespace": "ns", "labels": map[string]any{"team": "x"}},
		"data":     map[string]any{"plain": "p"},
		"list":     []any{"other", "kept"},
	}}
	for _, tc := range []struct {
		name  string
		after *unstructured.Unstructured
		want  map[string]any
	}{
		{"deleted", nil, map[string]any{"/apiVersion": "v1", "/kind": "ConfigMap", "/metadata/name": "a", "/metadata/namespace": "ns",
			"/metadata/labels/team": maskBefore, "/data/token": maskBefore, "/data/plain": maskBefore, "/data/n": int64(3),
			"/list/0": maskBefore, "/list/1": maskBefore}},
		{"changed", after, map[string]any{"/metadata/name": "a", "/metadata/labels/team": "x", "/data/token": maskBefore,
			"/data/plain": "p", "/list/0": maskBefore, "/list/1": "kept"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := live()
			got := maskUnknownSecrets(in, tc.after)
			for ptr, want := range tc.want {
				p, err := object.ParsePointer(ptr)
				if err != nil {
					t.Fatal(err)
				}
				if v, _ := object.GetAt(got.Object, p.Paths(got.Object)[0]); v != want {
					t.Errorf("%s = %v, want %v", ptr, v, want)
				}
			}
			if diff := cmp.Diff(live().Object, in.Object); diff != "" {
				t.Errorf("maskUnknownSecrets changed its argument (-want +got):\n%s", diff)
			}
		})
	}
	if maskUnknownSecrets(nil, after) != nil {
		t.Error("a create's before is not nil")
	}
}
