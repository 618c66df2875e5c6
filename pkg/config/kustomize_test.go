package config

import (
	"strings"
	"testing"
)

func TestKustomizeFieldsInvalid(t *testing.T) {
	tests := []struct{ name, k, want string }{
		{"namespace", "{path: k, targetNamespace: Bad_NS}", `kustomize.targetNamespace "Bad_NS" is not a valid namespace`},
		{"patch", "{path: k, patches: [{patch: 'kind: ['}]}", "kustomize.patches[0]: patch: not YAML or JSON"},
		{"json6902 without target", "{path: k, patches: [{patch: '- {op: add, path: /a, value: 1}'}]}", "kustomize.patches[0]: patch: a JSON 6902 patch (a list of operations) needs a target"},
		{"image", "{path: k, images: [{name: nginx}]}", "kustomize.images[0]: set newName, newTag or digest"},
		{"remote component", "{path: k, components: [https://github.com/x/y]}", `kustomize.components[0]: "https://github.com/x/y" must be a local relative path`},
		{"absolute component", "{path: k, components: [/etc/c]}", `kustomize.components[0]: "/etc/c" must be a local relative path`},
		{"file URL component", "{path: k, components: ['file:///etc/c']}", `kustomize.components[0]: "file:///etc/c" must be a local relative path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n  kustomize: "+tt.k+"\n"))
			if err == nil || !strings.Contains(err.Error(), "apps[0] (web): "+tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Parse("deliver.yaml", []byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n  kustomize: {path: k, targetNamespace: prod, namePrefix: p-, components: [../components/tls], images: [{name: nginx, newTag: '1.29'}], patches: [{patch: '{kind: Deployment, metadata: {name: web}, spec: {replicas: 2}}'}]}\n")); err != nil {
		t.Errorf("valid fields refused: %v", err)
	}
}

func TestCommonMetadataInvalid(t *testing.T) {
	for _, tt := range []struct{ name, app, want string }{
		{"helm", "  helm: {chart: c}\n  commonMetadata: {labels: {a: b}}\n", "apps[0] (web): commonMetadata applies to kustomize and manifests apps"},
		{"label value", "  manifests: {path: m}\n  commonMetadata: {labels: {a: 'b c'}}\n", `commonMetadata.labels.a: value "b c"`},
		{"key", "  manifests: {path: m}\n  commonMetadata: {annotations: {'a b': c}}\n", `commonMetadata.annotations: key "a b"`},
		{"deliver's own", "  manifests: {path: m}\n  commonMetadata: {labels: {deliver.dev/app: other}}\n", `commonMetadata.labels: key "deliver.dev/app": deliver.dev/ keys are deliver's own`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n"+tt.app))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
