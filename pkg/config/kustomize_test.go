package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

// TestKustomizeEnvironment: an environment's kustomize fields and
// commonMetadata are merged over the app's, as documented on
// KustomizeFields.Merge and CommonMetadata.Merge, without changing the
// app of another environment; they are refused on apps they do not apply
// to, and checked as the app's own are.
func TestKustomizeEnvironment(t *testing.T) {
	const cfg = `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- name: web
  namespace: web
  commonMetadata: {labels: {team: shop, tier: front}}
  kustomize:
    path: app
    namePrefix: a-
    components: [../c1]
    images: [{name: nginx, newTag: "1.29"}, {name: redis, newTag: "7"}]
    patches: [{patch: '{kind: Deployment, metadata: {name: web}, spec: {replicas: 2}}'}]
environments:
  prod:
    apps:
      web:
        path: overlays/prod
        commonMetadata: {labels: {tier: edge, cluster: prod}, annotations: {owner: sre}}
        kustomize:
          targetNamespace: web-prod
          components: [../c2]
          ignoreMissingComponents: true
          images: [{name: nginx, newName: mirror.example/nginx}, {name: busybox, newTag: "1"}]
          patches: [{patch: '{kind: Deployment, metadata: {name: web}, spec: {replicas: 5}}'}]
`
	c, err := Parse("deliver.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := c.ForEnvironment("prod")
	if err != nil {
		t.Fatal(err)
	}
	want := Kustomize{Path: "overlays/prod", KustomizeFields: KustomizeFields{
		TargetNamespace: "web-prod", NamePrefix: "a-",
		Components:              []string{"../c1", "../c2"},
		IgnoreMissingComponents: true,
		Images:                  []KustomizeImage{{Name: "nginx", NewName: "mirror.example/nginx"}, {Name: "redis", NewTag: "7"}, {Name: "busybox", NewTag: "1"}},
		Patches: []KustomizePatch{
			{Patch: "{kind: Deployment, metadata: {name: web}, spec: {replicas: 2}}"},
			{Patch: "{kind: Deployment, metadata: {name: web}, spec: {replicas: 5}}"},
		},
	}}
	if diff := cmp.Diff(want, *prod.Apps[0].Kustomize); diff != "" {
		t.Errorf("prod kustomize (-want +got):\n%s", diff)
	}
	wantMeta := &CommonMetadata{Labels: map[string]string{"team": "shop", "tier": "edge", "cluster": "prod"}, Annotations: map[string]string{"owner": "sre"}}
	if diff := cmp.Diff(wantMeta, prod.Apps[0].CommonMetadata); diff != "" {
		t.Errorf("prod commonMetadata (-want +got):\n%s", diff)
	}
	base, err := c.ForEnvironment("")
	if err != nil {
		t.Fatal(err)
	}
	if k := base.Apps[0].Kustomize; k.Path != "app" || k.TargetNamespace != "" || len(k.Images) != 2 || k.Images[0].NewTag != "1.29" || len(k.Patches) != 1 || len(base.Apps[0].CommonMetadata.Labels) != 2 {
		t.Errorf("the app without an environment changed: %+v, %+v", k, base.Apps[0].CommonMetadata)
	}

	for _, tt := range []struct{ name, app, override, want string }{
		{"manifests app", "manifests: {path: m}", "kustomize: {targetNamespace: x}", "environments.prod.apps.web.kustomize: applies to kustomize apps; app web is not one"},
		{"helm app", "helm: {chart: c}", "commonMetadata: {labels: {a: b}}", "environments.prod.apps.web: commonMetadata applies to kustomize and manifests apps"},
		{"image", "kustomize: {path: k}", "kustomize: {images: [{name: nginx}]}", "environments.prod.apps.web: kustomize.images[0]: set newName, newTag or digest"},
		{"namespace", "kustomize: {path: k}", "kustomize: {targetNamespace: Bad_NS}", `environments.prod.apps.web: kustomize.targetNamespace "Bad_NS" is not a valid namespace`},
		{"label", "kustomize: {path: k}", "commonMetadata: {labels: {deliver.dev/app: x}}", `environments.prod.apps.web: commonMetadata.labels: key "deliver.dev/app": deliver.dev/ keys are deliver's own`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n  "+tt.app+
				"\nenvironments:\n  prod:\n    apps:\n      web: {"+tt.override+"}\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
