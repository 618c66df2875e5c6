package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/pkg/health"
)

// healthHeader starts a deliver.yaml whose defaults have health checks.
const healthHeader = `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults:
  healthChecks:
`

// TestHealthChecksMerge: an app's rule replaces the defaults' rule for the
// same apiVersion and kind; the defaults' other rules stay, and an app
// without rules gets the defaults'.
func TestHealthChecksMerge(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(healthHeader+`  - {apiVersion: example.com/v1, kind: Widget, current: "self.status.ready == true"}
  - {apiVersion: example.com/v1, kind: Gadget, current: "has(self.status)"}
apps:
- name: web
  namespace: web
  manifests: {path: web}
  healthChecks:
  - apiVersion: example.com/v1
    kind: Widget
    current: "self.status.phase == 'Ready'"
    failed: "self.status.phase == 'Failed'"
- name: db
  namespace: db
  manifests: {path: db}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ForEnvironment("")
	if err != nil {
		t.Fatal(err)
	}
	want := []health.Check{
		{APIVersion: "example.com/v1", Kind: "Gadget", Current: "has(self.status)"},
		{APIVersion: "example.com/v1", Kind: "Widget", Current: "self.status.phase == 'Ready'", Failed: "self.status.phase == 'Failed'"},
	}
	if diff := cmp.Diff(want, r.Apps[0].HealthChecks); diff != "" {
		t.Errorf("web's rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c.Defaults.HealthChecks, r.Apps[1].HealthChecks); diff != "" {
		t.Errorf("db's rules (-want +got):\n%s", diff)
	}
	if len(c.Apps[0].HealthChecks) != 1 {
		t.Errorf("resolving changed the parsed app: %v", c.Apps[0].HealthChecks)
	}
}

// TestHealthChecksParseErrors: a broken expression is a parse error
// naming the app (or defaults), the rule's index and the field.
func TestHealthChecksParseErrors(t *testing.T) {
	_, err := Parse("deliver.yaml", []byte(healthHeader+`  - {apiVersion: example.com/v1, kind: Widget, current: "self.status.ready =="}
apps:
- name: web
  namespace: web
  manifests: {path: web}
  healthChecks:
  - {apiVersion: example.com/v1, kind: Widget, current: "true"}
  - {apiVersion: example.com/v1, kind: Gadget, current: "true", inProgress: "slef.status.x"}
  - {apiVersion: example.com/v1, kind: Gizmo}
`))
	for _, want := range []string{
		"deliver.yaml: ",
		"defaults: healthChecks[0].current: ",
		`app "web": healthChecks[1].inProgress: `, "undeclared reference to 'slef'",
		`app "web": healthChecks[2].current is required`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want %q in it", err, want)
		}
	}
}
