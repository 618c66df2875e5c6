package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/pkg/render"
)

func postBuildConfig(app, envs string) string {
	return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- name: web\n  namespace: web\n" + app + envs
}

func TestPostBuildParseAndEnvironment(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(postBuildConfig(`  kustomize: {path: apps/web}
  postBuild:
    substitute: {cluster_name: dev, region: eu-1}
    substituteFrom:
    - {kind: ConfigMap, name: cluster-vars}
    - {kind: Secret, name: cluster-secrets, namespace: flux-system, optional: true}
- name: api
  namespace: api
  manifests: {path: apps/api}
`, `environments:
  prod:
    apps:
      web: {substitute: {cluster_name: prod}}
      api: {substitute: {replicas: "3"}}
`)))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.ForEnvironment("")
	if err != nil {
		t.Fatal(err)
	}
	pb := dev.Apps[0].PostBuild
	if !pb.IsStrict() || pb.SubstituteFrom[1].Namespace != "flux-system" || !pb.SubstituteFrom[1].Optional {
		t.Errorf("post-build = %+v", pb)
	}
	if dev.Apps[1].PostBuild != nil {
		t.Errorf("api has a post-build without one: %+v", dev.Apps[1].PostBuild)
	}
	prod, err := c.ForEnvironment("prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"cluster_name": "prod", "region": "eu-1"}, prod.Apps[0].PostBuild.Substitute); diff != "" {
		t.Errorf("prod web substitute (-want +got):\n%s", diff)
	}
	if len(prod.Apps[0].PostBuild.SubstituteFrom) != 2 {
		t.Errorf("prod web lost its substituteFrom: %+v", prod.Apps[0].PostBuild)
	}
	if diff := cmp.Diff(map[string]string{"replicas": "3"}, prod.Apps[1].PostBuild.Substitute); diff != "" {
		t.Errorf("prod api substitute (-want +got):\n%s", diff)
	}
	// The environment's merge leaves the app's own map alone.
	if got := c.Apps[0].PostBuild.Substitute["cluster_name"]; got != "dev" {
		t.Errorf("the config's own substitute changed to %q", got)
	}
}

func TestPostBuildInvalid(t *testing.T) {
	tests := []struct{ name, app, envs, want string }{
		{"helm", "  helm: {chart: charts/web}\n  postBuild: {substitute: {a: b}}\n", "", "apps[0] (web): postBuild applies to kustomize and manifests apps"},
		{"bad name", "  kustomize: {path: k}\n  postBuild: {substitute: {my-var: b}}\n", "", `apps[0] (web): postBuild.substitute: variable name "my-var" is invalid`},
		{"digit first", "  kustomize: {path: k}\n  postBuild: {substitute: {1a: b}}\n", "", `variable name "1a" is invalid`},
		{"strategy", "  kustomize: {path: k}\n  postBuild: {substituteStrategy: Sometimes}\n", "", `postBuild.substituteStrategy must be WithVariables or Always, got "Sometimes"`},
		{"kind", "  kustomize: {path: k}\n  postBuild: {substituteFrom: [{kind: Pod, name: a}]}\n", "", "postBuild.substituteFrom[0]: kind must be ConfigMap or Secret"},
		{"no name", "  kustomize: {path: k}\n  postBuild: {substituteFrom: [{kind: Secret}]}\n", "", `postBuild.substituteFrom[0]: name "" is not a valid object name`},
		{"namespace", "  kustomize: {path: k}\n  postBuild: {substituteFrom: [{kind: Secret, name: a, namespace: Bad_NS}]}\n", "", `namespace "Bad_NS" is not a valid namespace`},
		{"env bad name", "  kustomize: {path: k}\n", "environments:\n  prod:\n    apps:\n      web: {substitute: {a.b: c}}\n", `environments.prod.apps.web.substitute: variable name "a.b" is invalid`},
		{"env helm", "  helm: {chart: c}\n", "environments:\n  prod:\n    apps:\n      web: {substitute: {a: c}}\n", "environments.prod.apps.web.substitute: post-build variables apply to kustomize and manifests apps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte(postBuildConfig(tt.app, tt.envs)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVarNamesAsRender checks that config accepts the variable names the
// render's substitution accepts, and no others.
func TestVarNamesAsRender(t *testing.T) {
	for _, name := range []string{"a", "A_1", "_", "_9", "1a", "a-b", "a.b", "", "é", "a b", "ab$", "REGION"} {
		got := len(checkVarNames("x", map[string]string{name: "v"})) == 0
		if want := render.ValidVarName(name); got != want {
			t.Errorf("%q: config accepts %v, render %v", name, got, want)
		}
	}
}

func TestPostBuildStrict(t *testing.T) {
	f := false
	for _, tt := range []struct {
		pb   PostBuild
		want bool
	}{{PostBuild{}, true}, {PostBuild{Strict: &f}, false}} {
		if got := tt.pb.IsStrict(); got != tt.want {
			t.Errorf("%+v: strict %v, want %v", tt.pb, got, tt.want)
		}
	}
}

func TestDependencies(t *testing.T) {
	t.Parallel()
	app := func(name string, deps ...string) ResolvedApp {
		return ResolvedApp{App: App{Name: name, DependsOn: deps}}
	}
	r := &Resolved{Apps: []ResolvedApp{
		app("web", "api"), app("api", "db", "vars"), app("db", "vars"), app("vars"), app("solo"),
		// left out by a selection: "gone" ends the chain of "edge".
		app("edge", "gone"),
	}}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"web", []string{"api", "db", "vars"}}, // transitive, in r's order, once each
		{"api", []string{"db", "vars"}},
		{"vars", nil},
		{"solo", nil},
		{"edge", nil},
		{"unknown", nil},
	} {
		if diff := cmp.Diff(tc.want, r.Dependencies(tc.name)); diff != "" {
			t.Errorf("Dependencies(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
	var a App
	if a.ReadsClusterVars() {
		t.Error("an app without a post-build reads cluster variables")
	}
	a.PostBuild = &PostBuild{Substitute: map[string]string{"x": "1"}}
	if a.ReadsClusterVars() {
		t.Error("substitute alone reads cluster variables")
	}
	a.PostBuild.SubstituteFrom = []SubstituteReference{{Kind: "ConfigMap", Name: "vars"}}
	if !a.ReadsClusterVars() {
		t.Error("substituteFrom does not read cluster variables")
	}
}
