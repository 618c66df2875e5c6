package object

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestIsHook(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]any
		want        bool
	}{
		{"none", nil, false},
		{"other annotation", map[string]any{"a": "b"}, false},
		{"helm", map[string]any{"helm.sh/hook": "pre-install"}, true},
		{"helm weight only", map[string]any{"helm.sh/hook-weight": "1"}, false},
		{"argocd", map[string]any{"argocd.argoproj.io/hook": "PreSync"}, true},
		{"deliver", map[string]any{"deliver.dev/hook": "PostSync"}, true},
		{"empty value", map[string]any{"helm.sh/hook": ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := map[string]any{"name": "x"}
			if tt.annotations != nil {
				md["annotations"] = tt.annotations
			}
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}}
			if got := IsHook(u); got != tt.want {
				t.Errorf("IsHook = %v, want %v", got, tt.want)
			}
		})
	}
	if IsHook(nil) {
		t.Error("IsHook(nil) = true")
	}
}
