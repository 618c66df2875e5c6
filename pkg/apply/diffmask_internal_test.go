package apply

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
