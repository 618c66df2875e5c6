package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestApplyShowsDiff: apply --diff prints what diff would have printed for
// the run it makes, in the same run, with Secret values masked.
func TestApplyShowsDiff(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	const canary = "canary-apply-diff-4f1e"
	dir := t.TempDir()
	write := func(level, password string) {
		t.Helper()
		testenv.WriteFiles(t, dir, map[string]string{
			"m/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: " + ns + "}\ndata: {level: \"" + level + "\"}\n",
			"m/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: " + ns + "}\nstringData: {password: " + password + "}\n",
		})
	}
	args := []string{"apply", "--diff", "--kubeconfig", env.Kubeconfig, "--path", dir, "-f", "m", "--app", ns, "--inventory-namespace", ns}

	write("debug", canary+"-1")
	out, code := run(t, args...)
	if code != 0 {
		t.Fatalf("first apply --diff: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"== app " + ns, "2 to create, 0 to change, 0 to delete, 0 unchanged", "+  level: debug", "ConfigMap/" + ns + "/settings created"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply --diff lacks %q:\n%s", want, out)
		}
	}

	write("info", canary+"-2")
	out, code = run(t, args...)
	if code != 0 {
		t.Fatalf("second apply --diff: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"0 to create, 2 to change, 0 to delete, 0 unchanged", "-  level: debug", "+  level: info", "*** (after)", "ConfigMap/" + ns + "/settings configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("second apply --diff lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, canary) {
		t.Errorf("apply --diff printed a secret value:\n%s", out)
	}

	write("warn", canary+"-3")
	out, code = run(t, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("apply --diff -o json: exit %d:\n%s", code, out)
	}
	var got struct {
		Apps []struct {
			Plan struct {
				Summary string `json:"summary"`
				Changes []struct {
					Diff string `json:"diff"`
				} `json:"changes"`
			} `json:"plan"`
			Report struct {
				Results []struct {
					Action string `json:"action"`
				} `json:"results"`
			} `json:"report"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("apply --diff -o json: %v\n%s", err, out)
	}
	if len(got.Apps) != 1 || got.Apps[0].Plan.Summary != "0 to create, 2 to change, 0 to delete, 0 unchanged" || len(got.Apps[0].Report.Results) != 2 {
		t.Errorf("apply --diff -o json: want the plan and the report of the app:\n%s", out)
	}
	if !strings.Contains(out, `+  level: warn`) || strings.Contains(out, canary) {
		t.Errorf("apply --diff -o json: want the masked diff, no secret value:\n%s", out)
	}
}
