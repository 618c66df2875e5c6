package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestSuspendedAppCommands: for an app deliver.yaml suspends, and one that
// depends on it, diff and apply say why they skip them and exit as if
// there were nothing to do (0), in text and in JSON.
func TestSuspendedAppCommands(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n" +
			"- {name: db, namespace: " + ns + ", manifests: {path: db}, suspend: true}\n" +
			"- {name: api, namespace: " + ns + ", manifests: {path: api}, dependsOn: [db]}\n",
		"db/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n",
		"api/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\n",
	})
	common := []string{"--path", dir, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns}
	wantText := []string{"skipped: suspended in deliver.yaml", "skipped: dependency db is suspended"}
	for _, cmd := range []string{"diff", "apply"} {
		out := runExpect(t, 0, []string{cmd}, common...)
		for _, want := range wantText {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", cmd, want, out)
			}
		}
		out = runExpect(t, 0, []string{cmd, "-o", "json"}, common...)
		var res struct {
			Apps []struct {
				Name, Skipped string
				Suspended     bool
			}
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%s -o json: %v\n%s", cmd, err, out)
		}
		if len(res.Apps) != 2 || !res.Apps[0].Suspended || res.Apps[0].Skipped != "suspended in deliver.yaml" ||
			res.Apps[1].Suspended || res.Apps[1].Skipped != "dependency db is suspended" {
			t.Errorf("%s -o json: apps %+v, want db suspended and api skipped naming it", cmd, res.Apps)
		}
	}
}
