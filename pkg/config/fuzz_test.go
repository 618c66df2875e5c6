package config

import "testing"

// FuzzParse: deliver.yaml parsing never panics, and whatever it accepts
// validates and resolves for every environment it declares.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps: []\n"))
	f.Add([]byte("apps: [{name: a, dependsOn: [a]}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps: [{name: a, namespace: x, helm: {chart: c, values: &v {a: *v, b: yes, c: !!binary aGk=}}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("deliver.yaml", data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		for name := range c.Environments {
			if r, err := c.ForEnvironment(name); err == nil {
				_ = r.Levels()
			}
		}
	})
}
