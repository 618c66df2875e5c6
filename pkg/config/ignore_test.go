package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const withIgnore = `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults:
  ignoreDifferences:
  - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}
apps:
- name: web
  namespace: web
  manifests: {path: web}
  ignoreDifferences:
  - {group: "", kind: ConfigMap, name: cfg, jsonPointers: ["/data/size", "/metadata/annotations/a~1b"]}
- name: db
  namespace: db
  manifests: {path: db}
`

// TestIgnoreDifferences: an app's rules add to the defaults' (defaults
// first), and an app without its own gets the defaults'.
func TestIgnoreDifferences(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(withIgnore))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ForEnvironment("")
	if err != nil {
		t.Fatal(err)
	}
	replicas := IgnoreRule{Group: "apps", Kind: "Deployment", JSONPointers: []string{"/spec/replicas"}}
	want := map[string][]IgnoreRule{
		"web": {replicas, {Kind: "ConfigMap", Name: "cfg", JSONPointers: []string{"/data/size", "/metadata/annotations/a~1b"}}},
		"db":  {replicas},
	}
	for _, a := range r.Apps {
		if diff := cmp.Diff(want[a.Name], a.IgnoreDifferences); diff != "" {
			t.Errorf("app %s: ignoreDifferences (-want +got):\n%s", a.Name, diff)
		}
	}
	if len(c.Apps[0].IgnoreDifferences) != 1 || len(c.Defaults.IgnoreDifferences) != 1 {
		t.Errorf("resolving changed the parsed config: %+v, %+v", c.Apps[0].IgnoreDifferences, c.Defaults.IgnoreDifferences)
	}
}

// TestIgnoreDifferencesErrors: a bad rule fails Parse with an error that
// names the app (or the defaults), the rule's index and the pointer's.
func TestIgnoreDifferencesErrors(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"no leading slash", "/data/size", "data/size", `app "web": ignoreDifferences[0].jsonPointers[0]: JSON pointer "data/size" must start with /`},
		{"bad escape", "/metadata/annotations/a~1b", "/metadata/annotations/a~2b", `app "web": ignoreDifferences[0].jsonPointers[1]: JSON pointer "/metadata/annotations/a~2b": ~ must be followed by 0 or 1`},
		{"empty pointer", "[/spec/replicas]", `[""]`, `defaults: ignoreDifferences[0].jsonPointers[0]: empty JSON pointer`},
		{"no pointers", `jsonPointers: ["/data/size", "/metadata/annotations/a~1b"]`, "jsonPointers: []", `app "web": ignoreDifferences[0]: jsonPointers: at least one is required`},
		{"no kind", "kind: ConfigMap, ", "", `app "web": ignoreDifferences[0]: kind is required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte(strings.Replace(withIgnore, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
