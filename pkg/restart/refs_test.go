package restart

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestReferences: every place a pod spec names a ConfigMap or Secret is
// found, in every kind of container, merged per object (a whole-object
// reference wins over key references), and nothing else is.
func TestReferences(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want []Ref
	}{
		{"none", `containers: [{name: a, env: [{name: X, value: "1"}]}]`, []Ref{}},
		{"env key refs", `containers: [{name: a, env: [
			{name: A, valueFrom: {configMapKeyRef: {name: cm, key: k2}}},
			{name: B, valueFrom: {configMapKeyRef: {name: cm, key: k1, optional: true}}},
			{name: C, valueFrom: {secretKeyRef: {name: s, key: pw}}},
			{name: D, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]`,
			[]Ref{{ConfigMap, "cm", []string{"k1", "k2"}}, {Secret, "s", []string{"pw"}}}},
		{"envFrom", `containers: [{name: a, envFrom: [{configMapRef: {name: cm}}, {secretRef: {name: s, optional: true}, prefix: P_}]}]`,
			[]Ref{{ConfigMap, "cm", nil}, {Secret, "s", nil}}},
		{"whole wins over a key", `containers: [{name: a, env: [{name: A, valueFrom: {configMapKeyRef: {name: cm, key: k}}}], envFrom: [{configMapRef: {name: cm}}]}]`,
			[]Ref{{ConfigMap, "cm", nil}}},
		{"init and ephemeral containers", `initContainers: [{name: i, envFrom: [{secretRef: {name: init}}]}]
containers: [{name: a}]
ephemeralContainers: [{name: e, env: [{name: X, valueFrom: {configMapKeyRef: {name: debug, key: level}}}]}]`,
			[]Ref{{ConfigMap, "debug", []string{"level"}}, {Secret, "init", nil}}},
		{"volumes", `containers: [{name: a}]
volumes:
- {name: v1, configMap: {name: cm}}
- {name: v2, configMap: {name: items, items: [{key: b, path: b}, {key: a, path: a}]}}
- {name: v3, secret: {secretName: tls, optional: true}}
- {name: v4, emptyDir: {}}`,
			[]Ref{{ConfigMap, "cm", nil}, {ConfigMap, "items", []string{"a", "b"}}, {Secret, "tls", nil}}},
		{"projected", `containers: [{name: a}]
volumes:
- name: p
  projected:
    sources:
    - configMap: {name: pcm, items: [{key: k, path: k}]}
    - secret: {name: ps}
    - serviceAccountToken: {path: token}
    - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}`,
			[]Ref{{ConfigMap, "pcm", []string{"k"}}, {Secret, "ps", nil}}},
		{"same name, both kinds", `containers: [{name: a, envFrom: [{configMapRef: {name: x}}, {secretRef: {name: x}}]}]`,
			[]Ref{{ConfigMap, "x", nil}, {Secret, "x", nil}}},
		{"image pull secrets are not config", `containers: [{name: a}]
imagePullSecrets: [{name: registry}]`, []Ref{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var spec corev1.PodSpec
			if err := yaml.UnmarshalStrict([]byte(tt.spec), &spec); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, References(&spec)); diff != "" {
				t.Errorf("references (-want +got):\n%s", diff)
			}
		})
	}
}
