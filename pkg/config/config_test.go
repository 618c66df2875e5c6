package config

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const valid = `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults:
  waitTimeout: 2m
apps:
- name: db
  namespace: data
  manifests: {path: db}
- name: web
  namespace: web
  dependsOn: [db]
  strategy: recreate
  helm:
    chart: charts/web
    valuesFiles: [values.yaml]
    secretValuesFiles: [secrets.enc.yaml]
    values: {image: {tag: "1.0"}, replicas: 2}
    valuesFrom: [{kind: ConfigMap, name: shared}]
- name: worker
  namespace: web
  dependsOn: [db]
  kustomize: {path: overlays/base}
environments:
  prod:
    context: prod-cluster
    apps:
      web:
        namespace: web-prod
        valuesFiles: [values-prod.yaml]
        values: {image: {tag: "2.0"}}
        strategy: rolling
        secretValuesFiles: [secrets-prod.enc.yaml]
        set: [replicas=3]
        serviceAccountName: deployer
        valuesFrom: [{kind: Secret, name: prod-values, valuesKey: v.yaml, targetPath: a.b}]
      worker: {path: overlays/prod}
  dev:
    apps:
      worker: {disabled: true}
`

func TestParseAndEnvironment(t *testing.T) {
	c, err := Parse("deliver.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.ForEnvironment("prod")
	if err != nil {
		t.Fatal(err)
	}
	web := r.Apps[1]
	if r.Context != "prod-cluster" || web.Namespace != "web-prod" || web.Strategy != "rolling" || web.ServiceAccountName != "deployer" || web.WaitTimeout != 2*time.Minute || !web.Prune || !web.Wait {
		t.Errorf("resolved web = %+v (context %q)", web, r.Context)
	}
	if diff := cmp.Diff([]string{"values.yaml", "values-prod.yaml"}, web.Helm.ValuesFiles); diff != "" {
		t.Errorf("values files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"secrets.enc.yaml", "secrets-prod.enc.yaml"}, web.Helm.SecretValuesFiles); diff != "" {
		t.Errorf("secret values files (-want +got):\n%s", diff)
	}
	wantFrom := []ValuesReference{{SubstituteReference: SubstituteReference{Kind: "ConfigMap", Name: "shared"}},
		{SubstituteReference: SubstituteReference{Kind: "Secret", Name: "prod-values"}, ValuesKey: "v.yaml", TargetPath: "a.b"}}
	if diff := cmp.Diff(wantFrom, web.Helm.ValuesFrom); diff != "" {
		t.Errorf("valuesFrom (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"replicas=3"}, web.Helm.Set); diff != "" {
		t.Errorf("set (-want +got):\n%s", diff)
	}
	// Numbers are floats, as Helm reads them from a values file.
	if diff := cmp.Diff(Values{"image": map[string]any{"tag": "2.0"}, "replicas": 2.0}, web.Helm.Values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web-prod"}, web.AllowedNamespaces); diff != "" {
		t.Errorf("allowed namespaces (-want +got):\n%s", diff)
	}
	if got := r.Apps[2].Kustomize.Path; got != "overlays/prod" {
		t.Errorf("worker path = %q", got)
	}
	if c.Apps[1].Helm.ValuesFiles[0] != "values.yaml" || len(c.Apps[1].Helm.ValuesFiles) != 1 {
		t.Errorf("the environment changed the base config: %v", c.Apps[1].Helm.ValuesFiles)
	}
	var levels [][]string
	for _, l := range r.Levels() {
		var names []string
		for _, a := range l {
			names = append(names, a.Name)
		}
		levels = append(levels, names)
	}
	if diff := cmp.Diff([][]string{{"db"}, {"web", "worker"}}, levels); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}
	dev, err := c.ForEnvironment("dev")
	if err != nil || len(dev.Apps) != 2 {
		t.Errorf("dev: %v, %d apps, want worker disabled", err, len(dev.Apps))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, env, want string
	}{
		{"unknown field with line", strings.Replace(valid, "  strategy: recreate", "  stratgy: recreate", 1), "", "deliver.yaml: line 12: field stratgy not found"},
		{"wrong type", strings.Replace(valid, "dependsOn: [db]\n  strategy", "dependsOn: db\n  strategy", 1), "", "deliver.yaml: line 11: cannot unmarshal"},
		{"bad duration", strings.Replace(valid, "waitTimeout: 2m", "waitTimeout: soon", 1), "", `"soon" is not a duration`},
		{"wrong apiVersion", strings.Replace(valid, "v1alpha1", "v9", 1), "", "apiVersion/kind must be deliver.dev/v1alpha1/Config"},
		{"two sources", strings.Replace(valid, "  manifests: {path: db}", "  manifests: {path: db}\n  kustomize: {path: db}", 1), "", "apps[0] (db): set exactly one of helm, kustomize or manifests"},
		{"unknown dependsOn", strings.Replace(valid, "dependsOn: [db]\n  strategy", "dependsOn: [dbb]\n  strategy", 1), "", `app web: dependsOn: unknown app "dbb"`},
		{"cycle", strings.Replace(valid, "  manifests: {path: db}", "  manifests: {path: db}\n  dependsOn: [worker]", 1), "", "dependency cycle: db -> worker -> db"},
		{"self cycle", strings.Replace(valid, "  manifests: {path: db}", "  manifests: {path: db}\n  dependsOn: [db]", 1), "", "dependency cycle: db -> db"},
		{"bad strategy", strings.Replace(valid, "strategy: recreate", "strategy: bluegreen", 1), "", `unknown strategy "bluegreen"`},
		{"valuesFrom of another kind", strings.Replace(valid, "name: shared}", "name: shared}, {kind: Pod, name: x, valuesKey: \"a b\"}", 1), "", "apps[1] (web): helm.valuesFrom[1]: kind must be ConfigMap or Secret, got \"Pod\""},
		{"valuesFrom with a bad key", strings.Replace(valid, "name: shared}", "name: shared, valuesKey: \"a b\"}", 1), "", "helm.valuesFrom[0]: valuesKey \"a b\" is not a valid data key"},
		{"environment valuesFrom on a kustomize app", strings.Replace(valid, "worker: {path: overlays/prod}", "worker: {path: overlays/prod, valuesFrom: [{kind: ConfigMap, name: x}]}", 1), "", "environments.prod.apps.worker.valuesFrom: applies to Helm apps"},
		{"environment waitFor without name", strings.Replace(valid, "      worker: {path: overlays/prod}", "      worker: {path: overlays/prod}\n      db: {waitFor: [{apiVersion: v1, kind: Secret}]}", 1), "", "environments.prod.apps.db: waitFor[0]: apiVersion, kind and name are required"},
		{"waitFor without name", strings.Replace(valid, "  manifests: {path: db}", "  manifests: {path: db}\n  waitFor: [{apiVersion: v1, kind: Secret}]", 1), "", "apps[0] (db): waitFor[0]: apiVersion, kind and name are required"},
		{"duplicate app", strings.Replace(valid, "- name: worker", "- name: web", 1), "", "duplicate app name"},
		{"bad name", strings.Replace(valid, "- name: worker", "- name: Worker_1", 1), "", "name must be a DNS label"},
		{"env names unknown app", strings.Replace(valid, "      worker: {path: overlays/prod}", "      wrker: {path: overlays/prod}", 1), "", `environments.prod.apps: unknown app "wrker"`},
		{"unknown environment", valid, "staging", `unknown environment "staging" (deliver.yaml defines: dev, prod)`},
		{"not yaml", "apps: [", "", "deliver.yaml: yaml: line 1"},
		{"two documents", valid + "---\nkind: Other\n", "", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("deliver.yaml", []byte(tt.yaml))
			if err == nil {
				_, err = c.ForEnvironment(tt.env)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSchema(t *testing.T) {
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"apps"`, `"dependsOn"`, `"secretValuesFiles"`, `"additionalProperties": false`, `"rolling"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("schema lacks %s", want)
		}
	}
}

// TestSchemaFileUpToDate keeps docs/deliver.schema.json (which the
// examples point editors at) equal to what the Go types generate.
func TestSchemaFileUpToDate(t *testing.T) {
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("../../docs/deliver.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(data)+"\n", string(file)); diff != "" {
		t.Errorf("docs/deliver.schema.json is stale; run: go run ./cmd/deliver schema > docs/deliver.schema.json (-want +got):\n%s", diff)
	}
}

// TestRestartOnConfigChange: the app's setting wins over defaults, which
// win over off; a non-boolean value is a parse error naming the line.
func TestRestartOnConfigChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		defaults   string
		app        string
		want       bool
		wantErrSub string
	}{
		{name: "unset", want: false},
		{name: "defaults on", defaults: "defaults: {restartOnConfigChange: true}\n", want: true},
		{name: "app on", app: ", restartOnConfigChange: true", want: true},
		{name: "app off over defaults on", defaults: "defaults: {restartOnConfigChange: true}\n", app: ", restartOnConfigChange: false", want: false},
		{name: "not a bool", app: ", restartOnConfigChange: sometimes", wantErrSub: "line 4: cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := "apiVersion: deliver.dev/v1alpha1\nkind: Config\n" + tt.defaults +
				"apps:\n- {name: web, namespace: web, manifests: {path: web}" + tt.app + "}\n"
			c, err := Parse("deliver.yaml", []byte(doc))
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("parse: %v, want an error with %q", err, tt.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.ForEnvironment("")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Apps[0].RestartOnConfigChange; got != tt.want {
				t.Errorf("restartOnConfigChange = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDeletionPolicy: deletionPolicy resolves app over defaults, an
// environment's over the app's, MirrorPrune when unset; an unknown value
// is an error naming where it is.
func TestDeletionPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, defaults, app, env, want, wantErr string
	}{
		{name: "unset", want: "MirrorPrune"},
		{name: "defaults", defaults: "defaults: {deletionPolicy: Orphan}\n", want: "Orphan"},
		{name: "app over defaults", defaults: "defaults: {deletionPolicy: Orphan}\n", app: ", deletionPolicy: Delete", want: "Delete"},
		{name: "environment over app", app: ", deletionPolicy: Delete", env: "WaitForTermination", want: "WaitForTermination"},
		{name: "unknown in app", app: ", deletionPolicy: Keep", wantErr: `apps[0] (web): unknown deletionPolicy "Keep" (want MirrorPrune, Delete, WaitForTermination or Orphan)`},
		{name: "unknown in defaults", defaults: "defaults: {deletionPolicy: delete}\n", wantErr: `defaults: unknown deletionPolicy "delete"`},
		{name: "unknown in environment", env: "Never", wantErr: `environments.prod.apps.web: unknown deletionPolicy "Never"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, envName := oneApp(tt.defaults, tt.app, "deletionPolicy", tt.env)
			c, err := Parse("deliver.yaml", []byte(doc))
			var r *Resolved
			if err == nil {
				r, err = c.ForEnvironment(envName)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Apps[0].DeletionPolicy; got != tt.want {
				t.Errorf("deletionPolicy = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBoolSettings: createNamespace and force (defaults, app, environment) and
// suspend (app, environment), each environment's value over the app's
// and the app's over the defaults'.
func TestBoolSettings(t *testing.T) {
	t.Parallel()
	get := map[string]func(ResolvedApp) bool{
		"createNamespace": func(a ResolvedApp) bool { return a.CreateNamespace },
		"force":           func(a ResolvedApp) bool { return a.Force },
		"suspend":         func(a ResolvedApp) bool { return a.Suspend },
	}
	for _, tt := range []struct {
		field, name, defaults, app, env string
		want                            bool
	}{
		{field: "createNamespace", name: "unset"},
		{field: "createNamespace", name: "defaults on", defaults: "defaults: {createNamespace: true}\n", want: true},
		{field: "createNamespace", name: "app on", app: ", createNamespace: true", want: true},
		{field: "createNamespace", name: "app off over defaults on", defaults: "defaults: {createNamespace: true}\n", app: ", createNamespace: false"},
		{field: "createNamespace", name: "environment off over app on", app: ", createNamespace: true", env: "false"},
		{field: "createNamespace", name: "environment on", env: "true", want: true},
		{field: "force", name: "unset"},
		{field: "force", name: "defaults on", defaults: "defaults: {force: true}\n", want: true},
		{field: "force", name: "app off over defaults on", defaults: "defaults: {force: true}\n", app: ", force: false"},
		{field: "force", name: "environment on over app off", app: ", force: false", env: "true", want: true},
		{field: "suspend", name: "unset"},
		{field: "suspend", name: "app on", app: ", suspend: true", want: true},
		{field: "suspend", name: "environment off over app on", app: ", suspend: true", env: "false"},
		{field: "suspend", name: "environment on", env: "true", want: true},
		{field: "suspend", name: "environment silent keeps app on", app: ", suspend: true", env: "null", want: true},
	} {
		t.Run(tt.field+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			doc, envName := oneApp(tt.defaults, tt.app, tt.field, tt.env)
			c, err := Parse("deliver.yaml", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.ForEnvironment(envName)
			if err != nil {
				t.Fatal(err)
			}
			if got := get[tt.field](r.Apps[0]); got != tt.want {
				t.Errorf("%s = %v, want %v", tt.field, got, tt.want)
			}
		})
	}
}

// TestWaitForEnvironment: an environment's waitFor is added to the app's,
// the other environments keep the app's alone.
func TestWaitForEnvironment(t *testing.T) {
	t.Parallel()
	doc, _ := oneApp("", ", waitFor: [{apiVersion: v1, kind: Secret, name: tls}]", "waitFor", "[{apiVersion: apps/v1, kind: Deployment, name: operator, namespace: ops}]")
	c, err := Parse("deliver.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	app := ObjectRef{APIVersion: "v1", Kind: "Secret", Name: "tls"}
	for env, want := range map[string][]ObjectRef{
		"":     {app},
		"prod": {app, {APIVersion: "apps/v1", Kind: "Deployment", Name: "operator", Namespace: "ops"}},
	} {
		r, err := c.ForEnvironment(env)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Apps[0].WaitFor; !slices.Equal(got, want) {
			t.Errorf("environment %q: waitFor %+v, want %+v", env, got, want)
		}
	}
}

// oneApp is a deliver.yaml of one app web with defaults and the app's
// extra fields (", key: value"); with envValue, environment prod sets
// field to it, and prod is returned to resolve.
func oneApp(defaults, app, field, envValue string) (doc, env string) {
	doc = "apiVersion: deliver.dev/v1alpha1\nkind: Config\n" + defaults +
		"apps:\n- {name: web, namespace: web, manifests: {path: web}" + app + "}\n"
	if envValue == "" {
		return doc, ""
	}
	return doc + "environments:\n  prod:\n    apps:\n      web: {" + field + ": " + envValue + "}\n", "prod"
}
