package config

import (
	"strings"
	"testing"
)

func postRenderConfig(postRenderers string) string {
	return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n  helm:\n    chart: charts/web\n    postRenderers:\n" + postRenderers
}

func TestPostRenderersParse(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(postRenderConfig(`
    - kustomize:
        patches:
        - target: {kind: Deployment, labelSelector: "app=web", name: "web-.*"}
          patch: |
            - op: replace
              path: /spec/replicas
              value: 2
        - patch: |
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec: {type: NodePort}
        images: [{name: nginx, newTag: "1.29"}]
        commonLabels: {team: shop}
    - kustomize:
        images: [{name: busybox, digest: "sha256:00"}]
`)))
	if err != nil {
		t.Fatal(err)
	}
	prs := c.Apps[0].Helm.PostRenderers
	if len(prs) != 2 || len(prs[0].Kustomize.Patches) != 2 || prs[0].Kustomize.Patches[0].Target.LabelSelector != "app=web" || prs[1].Kustomize.Images[0].Digest != "sha256:00" {
		t.Errorf("post-renderers = %+v", prs)
	}
	r, err := c.ForEnvironment("")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Apps[0].Helm.PostRenderers[0].Kustomize.CommonLabels["team"]; got != "shop" {
		t.Errorf("resolved commonLabels.team = %q, want shop", got)
	}
}

func TestPostRenderersInvalid(t *testing.T) {
	tests := []struct{ name, prs, want string }{
		{"no kustomize", "    - {}\n", "apps[0] (web): helm.postRenderers[0].kustomize: required"},
		{"empty", "    - kustomize: {}\n", "helm.postRenderers[0].kustomize: set patches, images or commonLabels"},
		{"empty patch", "    - kustomize: {patches: [{patch: ''}]}\n", "helm.postRenderers[0].kustomize.patches[0]: patch is required"},
		{"bad yaml", "    - kustomize: {images: [{name: a, newTag: b}]}\n    - kustomize: {patches: [{patch: 'kind: [', target: {kind: A}}]}\n", "helm.postRenderers[1].kustomize.patches[0]: patch: not YAML or JSON"},
		{"json6902 without target", "    - kustomize: {patches: [{patch: '[{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}]'}]}\n", "patches[0]: patch: a JSON 6902 patch (a list of operations) needs a target"},
		{"json6902 in flow YAML", "    - kustomize: {patches: [{patch: '[{op: add, path: /a, value: 1}]', target: {kind: A}}]}\n", "patches[0]: patch: a JSON 6902 patch that starts with [ must be JSON"},
		{"unknown op", "    - kustomize: {patches: [{patch: '[{\"op\": \"put\", \"path\": \"/a\"}]', target: {kind: A}}]}\n", "patches[0]: patch: operation 0: op must be one of"},
		{"smp naming nothing", "    - kustomize: {patches: [{patch: 'spec: {replicas: 1}'}]}\n", "patches[0]: patch: a strategic merge patch needs kind and metadata.name"},
		{"smp with a target but no kind", "    - kustomize: {patches: [{patch: 'metadata: {name: x}', target: {kind: Secret}}]}\n", "patches[0]: patch: a strategic merge patch needs kind and metadata.name"},
		{"scalar patch", "    - kustomize: {patches: [{patch: 'x', target: {kind: A}}]}\n", "want a strategic merge patch (an object) or a JSON 6902 patch"},
		{"bad label selector", "    - kustomize: {patches: [{patch: '{kind: A, metadata: {name: a}}', target: {labelSelector: 'a in (b'}}]}\n", "patches[0]: target.labelSelector: "},
		{"bad name pattern", "    - kustomize: {patches: [{patch: '{kind: A, metadata: {name: a}}', target: {name: 'web-('}}]}\n", "patches[0]: target.name: not a regular expression"},
		{"image without change", "    - kustomize: {images: [{name: nginx}]}\n", "helm.postRenderers[0].kustomize.images[0]: set newName, newTag or digest"},
		{"bad label", "    - kustomize: {commonLabels: {'a b': x}}\n", `helm.postRenderers[0].kustomize.commonLabels: key "a b"`},
		{"unknown field", "    - kustomize: {patchesJson6902: []}\n", "field patchesJson6902 not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte(postRenderConfig(tt.prs)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
