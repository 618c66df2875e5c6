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

func TestHookID(t *testing.T) {
	tests := []struct {
		name       string
		metadata   map[string]any
		want       ID
		wantPrefix string
		generated  bool
	}{
		{"named", map[string]any{"name": "migrate", "namespace": "ns"}, ID{Group: "batch", Kind: "Job", Namespace: "ns", Name: "migrate"}, "", false},
		{"generateName", map[string]any{"generateName": "migrate-", "namespace": "ns"}, ID{Group: "batch", Kind: "Job", Namespace: "ns", Name: "migrate-*"}, "migrate-", true},
		{"generateName without dash", map[string]any{"generateName": "upgrade-sql-schema"}, ID{Group: "batch", Kind: "Job", Name: "upgrade-sql-schema*"}, "upgrade-sql-schema", true},
		// The server uses the name when both are set, and so does deliver.
		{"name wins", map[string]any{"name": "migrate", "generateName": "migrate-"}, ID{Group: "batch", Kind: "Job", Name: "migrate"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job", "metadata": tt.metadata}}
			id := HookID(u)
			if id != tt.want {
				t.Errorf("HookID = %+v, want %+v", id, tt.want)
			}
			prefix, ok := GeneratedPrefix(id)
			if ok != tt.generated || (ok && prefix != tt.wantPrefix) {
				t.Errorf("GeneratedPrefix(%s) = %q, %v; want %q, %v", id, prefix, ok, tt.wantPrefix, tt.generated)
			}
		})
	}
}
