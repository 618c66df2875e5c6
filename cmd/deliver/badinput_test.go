package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestConfigBadInput runs deliver over broken deliver.yaml files: each one
// exits 1 with a message naming the culprit, before touching a cluster.
func TestConfigBadInput(t *testing.T) {
	const base = `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- name: a
  namespace: ns
  manifests: {path: a}
- name: b
  namespace: ns
  dependsOn: [a]
  manifests: {path: b}
environments:
  prod: {}
`
	cm := func(name string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: ns}\n"
	}
	tests := []struct {
		name   string
		config string // "" leaves deliver.yaml out
		files  map[string]string
		args   []string
		want   string
	}{
		{name: "missing deliver.yaml", config: "", want: "deliver.yaml: "},
		{name: "unknown field", config: strings.Replace(base, "  dependsOn: [a]", "  dependson: [a]", 1), want: "deliver.yaml: line 9: field dependson not found"},
		{name: "unknown environment", config: base, args: []string{"--env", "staging"}, want: `unknown environment "staging" (deliver.yaml defines: prod)`},
		{name: "unknown app in dependsOn", config: strings.Replace(base, "dependsOn: [a]", "dependsOn: [c]", 1), want: `app b: dependsOn: unknown app "c"`},
		{name: "dependency cycle", config: strings.Replace(base, "  manifests: {path: a}", "  manifests: {path: a}\n  dependsOn: [b]", 1), want: "dependency cycle: a -> b -> a"},
		{name: "two apps own one object", config: base, files: map[string]string{"b/x.yaml": cm("shared")}, want: "ConfigMap/ns/shared: declared by two apps, a and b (a: a/shared.yaml#0; b: b/x.yaml#0)"},
		{name: "object outside allowed namespaces", config: base, files: map[string]string{"a/x.yaml": strings.Replace(cm("x"), "namespace: ns", "namespace: kube-system", 1)}, want: "kube-system"},
		{name: "unknown app flag", config: base, args: []string{"--app", "zzz"}, want: `unknown app "zzz"`},
		{name: "malformed manifest", config: base, files: map[string]string{"a/bad.yaml": "kind: [\n"}, want: "a/bad.yaml#0"},
		{name: "kubeconfig context missing", config: base, files: map[string]string{"b/x.yaml": cm("x")}, args: []string{"diff", "--context", "nope", "--kubeconfig", "KUBECONFIG"}, want: `context "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"a/shared.yaml": cm("shared")}
			for k, v := range tt.files {
				files[k] = v
			}
			if tt.config != "" {
				files["deliver.yaml"] = tt.config
			}
			testenv.WriteFiles(t, dir, files)
			args := []string{"render"}
			if len(tt.args) > 0 && !strings.HasPrefix(tt.args[0], "-") {
				args, tt.args = []string{tt.args[0]}, tt.args[1:]
			}
			args = append(args, "--path", dir)
			for _, a := range tt.args {
				if a == "KUBECONFIG" {
					a = writeKubeconfig(t)
				}
				args = append(args, a)
			}
			out, code := run(t, args...)
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// writeKubeconfig writes a kubeconfig whose only context is "c".
func writeKubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "x"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFailingAppSkipsDependents: an app the server rejects stops the apps
// that depend on it; an independent app still finishes; exit 1.
func TestFailingAppSkipsDependents(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	dir := t.TempDir()
	files := map[string]string{
		"deliver.yaml": `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- {name: a, namespace: NS, manifests: {path: a}}
- {name: b, namespace: NS, dependsOn: [a], manifests: {path: b}}
- {name: c, namespace: NS, manifests: {path: c}}
`,
		// Rejected by the server: a ConfigMap key may not contain a space.
		"a/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {\"bad key\": x}\n",
		"b/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
		"c/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
	}
	for name, content := range files {
		files[name] = strings.ReplaceAll(content, "NS", ns)
	}
	testenv.WriteFiles(t, dir, files)
	out, code := run(t, "apply", "--path", dir, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"ConfigMap/" + ns + "/a: apply", "bad key", "skipped: dependency a failed", "ConfigMap/" + ns + "/c created"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
