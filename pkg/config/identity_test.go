package config

import (
	"strings"
	"testing"
)

// TestServiceAccountName: an app's serviceAccountName overrides the
// defaults', an environment's replaces both, and a name the API server
// would refuse is an error naming the app and the field.
func TestServiceAccountName(t *testing.T) {
	const doc = `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults: {serviceAccountName: deployer}
apps:
- {name: web, namespace: team-a, manifests: {path: web}}
- {name: api, namespace: team-b, manifests: {path: api}, serviceAccountName: api-deployer}
environments:
  prod:
    apps:
      web: {serviceAccountName: prod-deployer}
`
	c, err := Parse("deliver.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env      string
		web, api string
	}{
		{"", "deployer", "api-deployer"},
		{"prod", "prod-deployer", "api-deployer"},
	} {
		r, err := c.ForEnvironment(tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := [2]string{r.Apps[0].ServiceAccountName, r.Apps[1].ServiceAccountName}; got != [2]string{tt.web, tt.api} {
			t.Errorf("environment %q: serviceAccountName of web, api = %v, want %s, %s", tt.env, got, tt.web, tt.api)
		}
	}

	for _, tt := range []struct{ name, from, to, want string }{
		{"app", "serviceAccountName: api-deployer", "serviceAccountName: Api_Deployer", `apps[1] (api): serviceAccountName "Api_Deployer": a lowercase RFC 1123 subdomain`},
		{"defaults", "{serviceAccountName: deployer}", "{serviceAccountName: -x}", `defaults: serviceAccountName "-x"`},
		{"environment", "{serviceAccountName: prod-deployer}", "{serviceAccountName: a/b}", `environments.prod.apps.web: serviceAccountName "a/b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte(strings.Replace(doc, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
