package config

import (
	"strings"
	"testing"
)

const clustersBase = `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- name: web
  namespace: web
  manifests: {path: web}
environments:
`

func TestKubeconfigSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		envs    string
		want    *KubeconfigSecretRef // of environment "prod" when no error
		wantErr []string
	}{
		{name: "none", envs: "  prod: {context: prod}\n"},
		{
			name: "defaults",
			envs: "  prod:\n    kubeconfigSecret: {name: prod-kubeconfig}\n",
			want: &KubeconfigSecretRef{Name: "prod-kubeconfig"},
		},
		{
			name: "every field",
			envs: "  prod:\n    context: prod\n    kubeconfigSecret: {name: prod-kubeconfig, key: kubeconfig.yaml, namespace: fleet}\n",
			want: &KubeconfigSecretRef{Name: "prod-kubeconfig", Key: "kubeconfig.yaml", Namespace: "fleet"},
		},
		{
			name:    "no name",
			envs:    "  prod:\n    kubeconfigSecret: {key: value}\n",
			wantErr: []string{"environments.prod.kubeconfigSecret.name is required"},
		},
		{
			name:    "bad name, key and namespace",
			envs:    "  prod:\n    kubeconfigSecret: {name: Prod_Kube, key: 'a/b', namespace: Fleet.ns}\n",
			wantErr: []string{`kubeconfigSecret.name "Prod_Kube"`, `kubeconfigSecret.key "a/b"`, `kubeconfigSecret.namespace "Fleet.ns"`},
		},
		{
			name:    "environment name unfit for a status ConfigMap",
			envs:    "  Prod_EU:\n    kubeconfigSecret: {name: k}\n",
			wantErr: []string{"environments.Prod_EU: a name must be a DNS label"},
		},
		{
			// deliver-status.<env> stays a valid object name.
			name:    "environment name of 49 characters",
			envs:    "  prod: {context: prod}\n  " + strings.Repeat("e", 49) + ":\n    kubeconfigSecret: {name: k}\n",
			wantErr: []string{"environments." + strings.Repeat("e", 49) + ": a name must be a DNS label of at most 48 characters"},
		},
		{
			name: "environment name of 48 characters",
			envs: "  prod: {context: prod}\n  " + strings.Repeat("e", 48) + ":\n    kubeconfigSecret: {name: k}\n",
		},
		{
			name:    "unknown field",
			envs:    "  prod:\n    kubeconfigSecret: {name: k, context: x}\n",
			wantErr: []string{"field context not found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("deliver.yaml", []byte(clustersBase+tt.envs))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.ForEnvironment("prod")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == nil && r.KubeconfigSecret != nil:
				t.Errorf("KubeconfigSecret = %+v, want none", r.KubeconfigSecret)
			case tt.want != nil && (r.KubeconfigSecret == nil || *r.KubeconfigSecret != *tt.want):
				t.Errorf("KubeconfigSecret = %+v, want %+v", r.KubeconfigSecret, tt.want)
			}
		})
	}
}

func TestKubeconfigSecretRefDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ref       KubeconfigSecretRef
		key, text string
	}{
		{KubeconfigSecretRef{Name: "k"}, "value", "Secret k (key value)"},
		{KubeconfigSecretRef{Name: "k", Key: "config", Namespace: "fleet"}, "config", "Secret fleet/k (key config)"},
	} {
		if got := tt.ref.SecretKey(); got != tt.key {
			t.Errorf("%+v: SecretKey() = %q, want %q", tt.ref, got, tt.key)
		}
		if got := tt.ref.String(); got != tt.text {
			t.Errorf("%+v: String() = %q, want %q", tt.ref, got, tt.text)
		}
	}
}
