package pipeline

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// TestPostBuildAsFlux: Flux's post-build substitution on a real control
// plane. Variables come as kustomize-controller merges them: the
// substituteFrom ConfigMaps and Secrets in order (a later one wins, a
// missing optional one is skipped), then the inline substitute over them,
// then the environment's; a value that is a secret ref (ref+sops://) is
// resolved where the substitution put it; a SOPS Secret is decrypted
// before it is substituted; an object marked substitute: disabled keeps
// its ${HOME}; substituteStrategy: Always applies defaults with no
// variable. The value of a Secret read for substitution is masked in the
// diff. The objects read are inputs by their version: unchanged, the app
// is planned from its inventory; an edit there is a change, rendered and
// shown. A key that cannot be a variable, a missing reference and an
// undefined variable (strict, the default) fail the run naming the
// reference or the file and object, and write nothing; offline render
// leaves the references out.
func TestPostBuildAsFlux(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := sopstest.Encrypt("secret.enc.yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  url: https://${cluster_name}.db.example\n"), recipient)
	if err != nil {
		t.Fatal(err)
	}
	const sopsPassword = "canary-sops-6b3e"
	vars, err := sopstest.Encrypt("vars.enc.yaml", []byte("password: "+sopsPassword+"\n"), recipient)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "age.key")
	if err := os.WriteFile(keyFile, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repo, opts := servedRepo(t, ns, map[string]string{
		"deliver.yaml": `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults: {wait: false}
apps:
- name: web
  namespace: ` + ns + `
  kustomize: {path: apps/web}
  postBuild:
    substitute: {cluster_name: dev, replicas: "2", region: eu-1, db_password: "ref+sops://secrets/vars.enc.yaml#/password"}
    substituteFrom:
    - {kind: ConfigMap, name: cluster-vars}
    - {kind: Secret, name: cluster-secrets}
    - {kind: Secret, name: absent, optional: true}
- name: api
  namespace: ` + ns + `
  manifests: {path: apps/api}
  postBuild: {substituteStrategy: Always}
environments:
  prod:
    apps:
      web: {substitute: {cluster_name: prod}}
`,
		"apps/web/kustomization.yaml": "resources: [cm.yaml, deploy.yaml, script.yaml, secret.enc.yaml]\n",
		"apps/web/cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-${cluster_name}
data:
  region: ${region}
  zone: "${zone}"
  token: ${token}
  shared: ${shared}
  dsn: postgres://app:${db_password}+@db:5432
`,
		"apps/web/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "registry.example/web:1"}]}
`,
		"apps/web/script.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: script
  annotations: {kustomize.toolkit.fluxcd.io/substitute: disabled}
data:
  run.sh: echo ${HOME}
`,
		"apps/web/secret.enc.yaml": string(enc),
		"secrets/vars.enc.yaml":    string(vars),
		"apps/api/cm.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata:\n  level: ${log_level:=info}\n",
	})
	opts.Secrets.AgeKeyFiles = []string{keyFile}
	const token, token2 = "canary-token-8d1f", "canary-token-2c07"
	core := env.Client().CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-vars"},
		Data:       map[string]string{"region": "from-configmap", "zone": "z1", "shared": "from-configmap"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-secrets"},
		Data:       map[string][]byte{"token": []byte(token), "shared": []byte("from-secret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	mustRun(t, "apply", Apply, opts)
	cm, err := core.ConfigMaps(ns).Get(ctx, "settings-dev", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"region": "eu-1", "zone": "z1", "token": token, "shared": "from-secret", "dsn": "postgres://app:" + sopsPassword + "@db:5432"}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("settings-dev %s = %q, want %q", k, cm.Data[k], v)
		}
	}
	dep, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2 (a number from ${replicas})", dep.Spec.Replicas)
	}
	script, err := core.ConfigMaps(ns).Get(ctx, "script", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := script.Data["run.sh"]; got != "echo ${HOME}" {
		t.Errorf("the object marked substitute: disabled was substituted: %q", got)
	}
	db, err := core.Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(db.Data["url"]); got != "https://dev.db.example" {
		t.Errorf("SOPS Secret url = %q, want it decrypted, then substituted", got)
	}
	api, err := core.ConfigMaps(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := api.Data["level"]; got != "info" {
		t.Errorf("api level = %q, want the default (substituteStrategy: Always)", got)
	}

	// Nothing changed, in git or in the objects the post-build read: both
	// apps are planned from their inventories.
	res := mustRun(t, "diff", Diff, opts)
	if res.HasChanges() {
		t.Error("diff after the apply shows changes")
	}
	for _, a := range res.Apps {
		if !a.Unchanged {
			t.Errorf("app %s: rendered again, with unchanged inputs", a.Name)
		}
	}

	// A new token in the cluster's Secret is a change, masked.
	sec, err := core.Secrets(ns).Get(ctx, "cluster-secrets", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["token"] = []byte(token2)
	if _, err := core.Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := opts
	o.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	res = mustRun(t, "diff with a new token", Diff, o)
	for _, a := range res.Apps {
		if a.Unchanged != (a.Name == "api") {
			t.Errorf("app %s: unchanged %v after a Secret it reads changed", a.Name, a.Unchanged)
		}
	}
	var text strings.Builder
	for _, a := range res.Apps {
		diffs, err := a.Plan.Diffs()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			text.WriteString(d.Text)
		}
	}
	if !strings.Contains(text.String(), "settings-dev") || !strings.Contains(text.String(), secrets.Mask) {
		t.Errorf("the diff does not show the token's change, masked:\n%s", text.String())
	}
	if strings.Contains(text.String(), "canary") || !strings.Contains(text.String(), "dsn: postgres://app:***@db:5432") {
		t.Errorf("a Secret's value read for substitution shows in the diff:\n%s", text.String())
	}

	// Offline render of prod: the environment's variable, no cluster.
	ro := Options{Repo: opts.Repo, Ref: "main", CacheDir: opts.CacheDir, Env: "prod",
		Secrets: SecretsOptions{AgeKeyFiles: []string{keyFile}, Getenv: func(string) string { return "" }}}
	res = mustRun(t, "render prod", Render, ro)
	got := map[string]string{}
	for _, obj := range res.Apps[0].Set.Objects {
		if obj.GetKind() == "ConfigMap" && obj.GetName() != "script" {
			got["name"] = obj.GetName()
			for _, k := range []string{"region", "zone"} {
				got[k], _, _ = unstructured.NestedString(obj.Object, "data", k)
			}
		}
	}
	if got["name"] != "settings-prod" || got["region"] != "eu-1" || got["zone"] != "" {
		t.Errorf("offline render of prod: %v, want settings-prod, region eu-1 and no zone (substituteFrom left out)", got)
	}

	// A key that cannot be a variable, then a missing reference: each
	// fails the run, naming it, and writes nothing.
	vcm, err := core.ConfigMaps(ns).Get(ctx, "cluster-vars", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vcm.Data["app-name"] = "web"
	if _, err := core.ConfigMaps(ns).Update(ctx, vcm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	runFails(t, opts, "deliver.yaml: apps.web.postBuild.substituteFrom[0]: ConfigMap/"+ns+`/cluster-vars: key "app-name" is not a valid variable name`)
	if err := core.ConfigMaps(ns).Delete(ctx, "cluster-vars", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wantErr := "deliver.yaml: apps.web.postBuild.substituteFrom[0]: ConfigMap/" + ns + "/cluster-vars: "
	runFails(t, opts, wantErr)
	if cm, err := core.ConfigMaps(ns).Get(ctx, "settings-dev", metav1.GetOptions{}); err != nil || cm.Data["token"] != token {
		t.Errorf("the failed apply changed settings-dev (%v)", err)
	}

	// An undefined variable, strict by default: the file and object.
	repo.WriteFile("apps/api/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata:\n  level: ${log_level:=info}\n  owner: ${team}\n")
	repo.CommitAll("undefined variable")
	o = opts
	o.Apps = []string{"api"}
	runFails(t, o, `api: apps/api/cm.yaml#0: ConfigMap/api: post-build substitution: variable not set (strict mode): "team"`)
	if got, err := core.ConfigMaps(ns).Get(ctx, "api", metav1.GetOptions{}); err != nil || got.Data["owner"] != "" {
		t.Errorf("the failed apply changed the api ConfigMap (%v)", err)
	}
}

// runFails runs Apply with opts and checks that it fails with an error
// containing want.
func runFails(t *testing.T, opts Options, want string) {
	t.Helper()
	res, err := Apply(context.Background(), opts)
	if err == nil {
		err = res.Err()
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply: error %v, want one containing %q", err, want)
	}
}

// TestPostBuildReadsAsTheApp: the substituteFrom objects are read with
// the app's identity: a ServiceAccount that may read ConfigMaps but not
// Secrets gets its variables from a ConfigMap, and its run fails, naming
// the reference, when it names a Secret that deliver itself could read.
func TestPostBuildReadsAsTheApp(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update", "delete"}, "configmaps")
	core := env.Client().CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vars"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vars"}, Data: map[string][]byte{"color": []byte("red")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := func(kind string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: tenant, namespace: " + ns +
			", manifests: {path: tenant}, serviceAccountName: deployer, wait: false, postBuild: {substituteFrom: [{kind: " + kind + ", name: vars}]}}\n"
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml":   config("ConfigMap"),
		"tenant/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tenant}\ndata: {color: \"${color}\"}\n",
	})
	mustRun(t, "apply", Apply, opts)
	if cm, err := core.ConfigMaps(ns).Get(ctx, "tenant", metav1.GetOptions{}); err != nil || cm.Data["color"] != "blue" {
		t.Fatalf("tenant ConfigMap: %v, %v; want color blue", cm.Data, err)
	}
	repo.WriteFile("deliver.yaml", config("Secret"))
	repo.CommitAll("variables from a Secret")
	runFails(t, opts, "apps.tenant.postBuild.substituteFrom[0]: Secret/"+ns+`/vars: secrets "vars" is forbidden: User "system:serviceaccount:`+ns+`:deployer"`)
	if cm, err := core.ConfigMaps(ns).Get(ctx, "tenant", metav1.GetOptions{}); err != nil || cm.Data["color"] != "blue" {
		t.Errorf("tenant ConfigMap after the refused run: %v, %v; want color blue", cm.Data, err)
	}
}

// TestPostBuildFromDependency: a post-build's ConfigMap and Secret that an
// app it depends on delivers (Flux's cluster-vars in an infrastructure
// Kustomization) are taken from that app's render in the same run, as
// they will be when the app is applied after it: the first diff and apply
// need no earlier run, a commit that changes a variable re-renders and
// applies its readers (directly or through another app) in that one run,
// and their inputs are recorded once the dependency is applied, so that
// the next run renders nothing, nor when the dependency renders them as
// the cluster holds them; a key another writer added to the live object
// is not seen, and leaves the readers without recorded inputs. A
// dependency that does not render fails
// its readers, naming it, and nothing is written; a dependency planned
// from its inventory leaves the objects to the cluster.
func TestPostBuildFromDependency(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	const token = "canary-dep-token-51aa"
	vars := func(color string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cluster-vars}\ndata: {color: " + color + ", size: large}\n" +
			"---\napiVersion: v1\nkind: Secret\nmetadata: {name: cluster-secrets}\ndata: {user: YWRtaW4=}\nstringData: {token: " + token + "}\n"
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml": `apiVersion: deliver.dev/v1alpha1
kind: Config
defaults: {wait: false}
apps:
- name: web
  namespace: ` + ns + `
  dependsOn: [vars]
  manifests: {path: web}
  postBuild:
    substituteFrom:
    - {kind: ConfigMap, name: cluster-vars}
    - {kind: Secret, name: cluster-secrets}
- name: edge
  namespace: ` + ns + `
  dependsOn: [web]
  manifests: {path: edge}
  postBuild:
    substituteFrom: [{kind: ConfigMap, name: cluster-vars}]
- name: vars
  namespace: ` + ns + `
  manifests: {path: vars}
`,
		"vars/vars.yaml": vars("blue"),
		"web/cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: \"${color}\", size: \"${size}\", login: \"${user}:${token}\"}\n",
		"edge/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: edge}\ndata: {color: \"${color}\"}\n",
	})
	core := env.Client().CoreV1()
	check := func(when, color string) {
		t.Helper()
		for name, want := range map[string]map[string]string{
			"web":  {"color": color, "size": "large", "login": "admin:" + token},
			"edge": {"color": color},
		} {
			cm, err := core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if !maps.Equal(cm.Data, want) {
				t.Errorf("%s: ConfigMap %s = %v, want %v", when, name, cm.Data, want)
			}
		}
	}

	// Nothing delivered yet: the diff reads the variables from vars'
	// render, not from a cluster that has none.
	res := mustRun(t, "first diff", Diff, opts)
	if got := planned(t, res, "web"); !strings.Contains(got, "color: blue") || strings.Contains(got, token) {
		t.Errorf("first diff of web, want color blue and the token masked:\n%s", got)
	}
	mustRun(t, "first apply", Apply, opts)
	check("first apply", "blue")
	runRendering(t, "diff after the apply", Diff, opts, nil)

	// A new color in git: vars, and both readers, in one run.
	repo.WriteFile("vars/vars.yaml", vars("green"))
	repo.CommitAll("green")
	res = runRendering(t, "diff of green", Diff, opts, []string{"edge", "vars", "web"})
	if got := planned(t, res, "edge"); !strings.Contains(got, "color: green") {
		t.Errorf("diff of edge after the commit, want color green:\n%s", got)
	}
	runRendering(t, "apply of green", Apply, opts, []string{"edge", "vars", "web"})
	check("apply of green", "green")
	runRendering(t, "diff after green", Diff, opts, nil)

	// Only web changes: vars is planned from its inventory and web reads
	// its objects from the cluster.
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, labels: {tier: front}}\ndata: {color: \"${color}\", size: \"${size}\", login: \"${user}:${token}\"}\n")
	repo.CommitAll("web label")
	runRendering(t, "apply of web's label", Apply, opts, []string{"web"})
	check("apply of web's label", "green")
	runRendering(t, "diff after web's label", Diff, opts, nil)

	// vars renders, but its cluster-vars and cluster-secrets hold what
	// the cluster holds (stringData as the API server stores it): their
	// readers stay planned from their inventories.
	repo.WriteFile("vars/more.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\ndata: {a: b}\n")
	repo.CommitAll("unrelated")
	runRendering(t, "apply of an unrelated object", Apply, opts, []string{"vars"})

	// Another writer gave the live cluster-vars a key git does not: the
	// readers see git's keys, and record no inputs (the live object is
	// not what they substituted), so the next run renders them again.
	if _, err := core.ConfigMaps(ns).Patch(ctx, "cluster-vars", types.MergePatchType, []byte(`{"data":{"extra":"by-hand"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	repo.WriteFile("vars/vars.yaml", vars("yellow"))
	repo.CommitAll("yellow")
	runRendering(t, "apply of yellow", Apply, opts, []string{"edge", "vars", "web"})
	check("apply of yellow", "yellow")
	runRendering(t, "diff after yellow", Diff, opts, []string{"edge", "web"})

	// vars does not render: its readers fail naming it; nothing written.
	repo.WriteFile("vars/vars.yaml", vars("red")+"---\nkind: [\n")
	repo.CommitAll("broken vars")
	runFails(t, opts, "app web: deliver.yaml: apps.web.postBuild.substituteFrom[0]: ConfigMap/"+ns+"/cluster-vars: app vars, a dependency, did not render")
	check("the refused run", "yellow")
}

// planned is the diff text of app name's plan in res.
func planned(t *testing.T, res *Result, name string) string {
	t.Helper()
	var text strings.Builder
	for _, a := range res.Apps {
		if a.Name != name || a.Plan == nil {
			continue
		}
		diffs, err := a.Plan.Diffs()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diffs {
			text.WriteString(d.Text)
		}
	}
	return text.String()
}

// writtenDiff is what deliver diff prints for the plans of res: each
// plan's WriteDiff, notes and summary included.
func writtenDiff(t *testing.T, res *Result) string {
	t.Helper()
	var b strings.Builder
	for _, a := range res.Apps {
		if a.Plan != nil {
			if err := a.Plan.WriteDiff(&b, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b.String()
}
