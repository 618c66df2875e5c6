package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
)

// runStdout runs deliver and returns its stdout, stderr and exit code
// apart, so that a test can parse stdout.
func runStdout(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(deliverBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// outputFiles is a folder of one ConfigMap and one Secret, whose value
// must never be printed.
func outputFiles(t *testing.T, ns string) (dir string, canary string) {
	t.Helper()
	canary = "canary-output-7d2c"
	dir = t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{
		"m/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: " + ns + "}\ndata: {level: debug}\n",
		"m/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: " + ns + "}\nstringData: {password: " + canary + "}\n",
	})
	return dir, canary
}

// kindsOf returns "Kind/name" of each object.
func kindsOf(objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		md, _ := o["metadata"].(map[string]any)
		out = append(out, o["kind"].(string)+"/"+md["name"].(string))
	}
	return out
}

// TestOutputFormats: each command's -o accepts exactly the formats it
// prints, prints them, and refuses any other naming the accepted ones;
// reconcile, which prints nothing, has no -o.
func TestOutputFormats(t *testing.T) {
	dir, canary := outputFiles(t, "output")
	source := []string{"--path", dir, "-f", "m"}

	// No kubeconfig is needed: the flag is refused before anything is read.
	refused := []struct {
		args []string
		want string
	}{
		{[]string{"render", "-o", "text"}, `unknown output format "text" (want yaml or json)`},
		{[]string{"render", "-o", "xml"}, `unknown output format "xml" (want yaml or json)`},
		{[]string{"diff", "-o", "yaml"}, `unknown output format "yaml" (want text, json or markdown)`},
		{[]string{"apply", "-o", "yaml"}, `unknown output format "yaml" (want text or json)`},
		{[]string{"apply", "-o", ""}, `unknown output format "" (want text or json)`},
		{[]string{"status", "-o", "yaml"}, `unknown output format "yaml" (want text or json)`},
		{[]string{"version", "-o", "yaml"}, `unknown output format "yaml" (want text or json)`},
		{[]string{"reconcile", "-o", "json"}, `unknown shorthand flag: 'o' in -o`},
	}
	for _, tt := range refused {
		t.Run(strings.Join(tt.args, " ")+" refused", func(t *testing.T) {
			out, code := run(t, tt.args...)
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want 1 and %q:\n%s", code, tt.want, out)
			}
		})
	}

	t.Run("render", func(t *testing.T) {
		def, stderr, code := runStdout(t, append([]string{"render"}, source...)...)
		if code != 0 {
			t.Fatalf("render: exit %d: %s", code, stderr)
		}
		yml, _, code := runStdout(t, append([]string{"render", "-o", "yaml"}, source...)...)
		if code != 0 || yml != def {
			t.Errorf("render -o yaml: exit %d, want 0 and the default output:\n%s\nwant:\n%s", code, yml, def)
		}
		var docs []map[string]any
		for _, d := range strings.Split(def, "---\n")[1:] {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(d), &o); err != nil {
				t.Fatalf("render: document %q: %v", d, err)
			}
			docs = append(docs, o)
		}

		js, stderr, code := runStdout(t, append([]string{"render", "-o", "json"}, source...)...)
		if code != 0 {
			t.Fatalf("render -o json: exit %d: %s", code, stderr)
		}
		var list struct {
			APIVersion string           `json:"apiVersion"`
			Kind       string           `json:"kind"`
			Items      []map[string]any `json:"items"`
		}
		if err := json.Unmarshal([]byte(js), &list); err != nil {
			t.Fatalf("render -o json is not JSON: %v\n%s", err, js)
		}
		if list.APIVersion != "v1" || list.Kind != "List" {
			t.Errorf("render -o json: %s %s, want a v1 List", list.APIVersion, list.Kind)
		}
		got, want := kindsOf(list.Items), kindsOf(docs)
		if strings.Join(got, " ") != strings.Join(want, " ") || len(got) != 2 {
			t.Errorf("render -o json items %v, want the YAML's %v", got, want)
		}
		for _, o := range list.Items {
			if o["kind"] == "Secret" {
				if sd, _ := o["stringData"].(map[string]any); sd["password"] != "***" {
					t.Errorf("render -o json: Secret stringData %v, want the value masked", o["stringData"])
				}
			}
		}
		for name, out := range map[string]string{"default": def, "yaml": yml, "json": js} {
			if strings.Contains(out, canary) {
				t.Errorf("render (%s) printed a secret value", name)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		def, _, code := runStdout(t, "version")
		text, _, code2 := runStdout(t, "version", "-o", "text")
		if code != 0 || code2 != 0 || text != def || !strings.HasPrefix(def, "deliver ") {
			t.Errorf("version -o text: exit %d, %d; want 0 and the default output:\n%s\nwant:\n%s", code, code2, text, def)
		}
		js, _, code := runStdout(t, "version", "-o", "json")
		var info struct {
			Version, Go string
		}
		if err := json.Unmarshal([]byte(js), &info); code != 0 || err != nil || info.Version == "" || info.Go == "" {
			t.Errorf("version -o json: exit %d, %v, %+v:\n%s", code, err, info, js)
		}
	})

	t.Run("diff apply status", func(t *testing.T) {
		if env == nil {
			t.Skip("no control plane (-short)")
		}
		ns := env.Namespace(t)
		dir, canary := outputFiles(t, ns)
		cluster := []string{"--kubeconfig", env.Kubeconfig, "--path", dir, "-f", "m", "--app", ns, "--inventory-namespace", ns}
		// Each command, each format: the text, or JSON that parses with
		// what it must say.
		steps := []struct {
			args   []string
			code   int
			want   string // in the text output
			isJSON func(map[string]any) bool
		}{
			{args: []string{"diff"}, code: 2, want: "2 to create, 0 to change"},
			{args: []string{"diff", "-o", "text"}, code: 2, want: "2 to create, 0 to change"},
			{args: []string{"diff", "-o", "json"}, code: 2, isJSON: func(m map[string]any) bool { return m["changes"] == true }},
			{args: []string{"apply", "-o", "json"}, isJSON: func(m map[string]any) bool {
				apps, _ := m["apps"].([]any)
				return len(apps) == 1 && apps[0].(map[string]any)["report"] != nil
			}},
			{args: []string{"apply", "-o", "text"}, want: "2 unchanged"},
			{args: []string{"apply"}, want: "2 unchanged"},
			{args: []string{"status", "-o", "text"}, want: "APP"},
			{args: []string{"status"}, want: "APP"},
			{args: []string{"status", "-o", "json"}, isJSON: func(m map[string]any) bool {
				apps, _ := m["apps"].([]any)
				return len(apps) == 1 && apps[0].(map[string]any)["app"] == ns
			}},
		}
		for _, s := range steps {
			args := append(s.args, cluster...)
			if s.args[0] == "status" {
				args = append(s.args, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns)
			}
			out, stderr, code := runStdout(t, args...)
			name := strings.Join(s.args, " ")
			if code != s.code {
				t.Fatalf("%s: exit %d, want %d:\n%s%s", name, code, s.code, out, stderr)
			}
			if strings.Contains(out+stderr, canary) {
				t.Errorf("%s printed a secret value", name)
			}
			if s.isJSON == nil {
				if !strings.Contains(out, s.want) || json.Valid([]byte(out)) {
					t.Errorf("%s: want text with %q:\n%s", name, s.want, out)
				}
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil || !s.isJSON(m) {
				t.Errorf("%s: not the JSON wanted (%v):\n%s", name, err, out)
			}
		}
	})
}
