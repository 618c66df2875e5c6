package main

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/plan"
)

// plansRepo is a deliver.yaml with two environments in one namespace of
// the test's cluster: staging delivers app web-staging, prod app
// web-prod (each environment disables the other's app, as one cluster
// holds both). Each app is a ConfigMap and a Secret whose value is a
// canary.
func plansRepo(t *testing.T, ns, canary string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	repo := gitserver.NewRepo(t, dir)
	repo.WriteFile("deliver.yaml", `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
  - name: web-staging
    namespace: `+ns+`
    manifests: {path: staging}
  - name: web-prod
    namespace: `+ns+`
    manifests: {path: prod}
environments:
  staging:
    apps:
      web-prod: {disabled: true}
  prod:
    apps:
      web-staging: {disabled: true}
`)
	for _, env := range []string{"staging", "prod"} {
		repo.WriteFile(env+"/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings-"+env+"}\ndata: {level: debug}\n")
		repo.WriteFile(env+"/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db-"+env+"}\nstringData: {password: "+canary+"-"+env+"}\n")
	}
	repo.CommitAll("two environments")
	return dir
}

// TestDiffSeveralEnvironments: one diff run covers staging and prod: in
// Markdown (one body, a section per environment), JSON and text; it exits
// 2 while any environment has changes and 0 once none has. No Secret
// value shows in any output.
func TestDiffSeveralEnvironments(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	const canary = "canary-plans-env-8c3a"
	dir := plansRepo(t, ns, canary)
	common := []string{"--kubeconfig", env.Kubeconfig, "--path", dir, "--inventory-namespace", ns}
	diff := func(args ...string) (string, int) {
		t.Helper()
		out, stderr, code := runStdout(t, append(append([]string{"diff", "--env", "staging", "--env", "prod"}, common...), args...)...)
		if strings.Contains(out+stderr, canary) {
			t.Errorf("diff %v printed a secret value:\n%s\n%s", args, out, stderr)
		}
		if code != 0 && code != 2 {
			t.Fatalf("diff %v: exit %d:\n%s\n%s", args, code, out, stderr)
		}
		return out, code
	}
	apply := func(envName string) {
		t.Helper()
		if out, code := run(t, append([]string{"apply", "--env", envName}, common...)...); code != 0 {
			t.Fatalf("apply --env %s: exit %d:\n%s", envName, code, out)
		}
	}

	// Nothing applied: both environments create their objects.
	md, code := diff("-o", "markdown")
	if code != 2 {
		t.Errorf("diff -o markdown of two new environments: exit %d, want 2", code)
	}
	for _, want := range []string{
		plan.Marker + "\n", "(2 environments): 4 to create",
		"### deliver diff: `staging` at", "### deliver diff: `prod` at",
		"| `web-staging` | `" + ns + "` | 2 | 0 | 0 | 0 |", "| `web-prod` | `" + ns + "` | 2 | 0 | 0 | 0 |",
		"<code>ConfigMap/" + ns + "/settings-staging</code> create", "<code>Secret/" + ns + "/db-prod</code> create",
		"+  password: '***'",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("diff -o markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "`staging` at") > strings.Index(md, "`prod` at") {
		t.Errorf("diff -o markdown: environments not in the order of --env:\n%s", md)
	}
	// What CI does with it (examples/app/ci): post it as the pull
	// request's comment, as is.
	gh := &fakeGitHub{}
	srv := httptest.NewServer(gh)
	defer srv.Close()
	if out, err := runPostPlan(t, srv.URL, ciToken, md); err != nil {
		t.Fatalf("post-plan.sh: %v\n%s", err, out)
	}
	gh.mu.Lock()
	if len(gh.comments) != 1 || gh.comments[0].Body != md {
		t.Errorf("post-plan.sh: want one comment holding the body as diff printed it; got %+v", gh.comments)
	}
	gh.mu.Unlock()

	// Staging applied: only prod has changes, and the exit code says so.
	apply("staging")
	js, code := diff("-o", "json")
	if code != 2 {
		t.Errorf("diff -o json with prod not applied: exit %d, want 2", code)
	}
	var got struct {
		Changes      bool `json:"changes"`
		Environments []struct {
			Environment string `json:"environment"`
			Changes     bool   `json:"changes"`
			Apps        []struct {
				Name string `json:"name"`
			} `json:"apps"`
		} `json:"environments"`
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatalf("diff -o json: %v\n%s", err, js)
	}
	if !got.Changes || len(got.Environments) != 2 ||
		got.Environments[0].Environment != "staging" || got.Environments[0].Changes ||
		got.Environments[1].Environment != "prod" || !got.Environments[1].Changes ||
		got.Environments[1].Apps[0].Name != "web-prod" {
		t.Errorf("diff -o json: want staging without changes, then prod with:\n%s", js)
	}
	text, code := diff()
	if code != 2 {
		t.Errorf("diff with prod not applied: exit %d, want 2", code)
	}
	staging, prod, _ := strings.Cut(text, "=== environment prod")
	if !strings.HasPrefix(staging, "=== environment staging at ") || !strings.Contains(staging, "0 to create, 0 to change, 0 to delete") ||
		!strings.Contains(prod, "2 to create, 0 to change, 0 to delete") {
		t.Errorf("diff: want a section per environment, staging unchanged and prod to create:\n%s", text)
	}

	// Both applied: no changes anywhere, exit 0, the tables still there.
	apply("prod")
	md, code = diff("-o", "markdown")
	if code != 0 {
		t.Errorf("diff -o markdown of two applied environments: exit %d, want 0:\n%s", code, md)
	}
	if strings.Contains(md, "| changes |") || strings.Contains(md, "<details>") || !strings.Contains(md, "| `web-prod` |") {
		t.Errorf("diff -o markdown of two applied environments: want the tables and no change:\n%s", md)
	}

	// apply and render take one environment.
	for _, args := range [][]string{append([]string{"apply"}, common...), {"render", "--path", dir}} {
		verb := args[0]
		out, code := run(t, append(args, "--env", "staging,prod")...)
		if code != 1 || !strings.Contains(out, "--env: "+verb+" takes one environment") {
			t.Errorf("%s with two environments: exit %d, want 1 and a refusal:\n%s", verb, code, out)
		}
	}
}

// TestDiffEnvironmentsOfTwoContexts: environments that name different
// kubeconfig contexts are refused in one diff run, naming both contexts
// (the kubeconfig loader would keep the first one's cluster for all);
// --context chooses one cluster for all of them.
func TestDiffEnvironmentsOfTwoContexts(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	current := cfg.Contexts[cfg.CurrentContext]
	for _, name := range []string{"ctx-a", "ctx-b"} {
		c := *current
		cfg.Contexts[name] = &c
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	repo := gitserver.NewRepo(t, dir)
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n  - {name: web, namespace: "+ns+", manifests: {path: m}}\n"+
		"environments:\n  a: {context: ctx-a}\n  b: {context: ctx-b}\n")
	repo.WriteFile("m/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n")
	repo.CommitAll("two contexts")
	args := []string{"diff", "--env", "a,b", "--kubeconfig", kubeconfig, "--path", dir, "--inventory-namespace", ns}
	out, code := run(t, args...)
	if code != 1 || !strings.Contains(out, `environment b: kubeconfig: the environments name different kubeconfig contexts ("ctx-a", then "ctx-b")`) {
		t.Errorf("diff of two contexts: exit %d, want 1 and a refusal naming both:\n%s", code, out)
	}
	out, code = run(t, append(args, "--context", "ctx-b")...)
	if code != 2 || !strings.Contains(out, "=== environment a") || !strings.Contains(out, "=== environment b") {
		t.Errorf("diff of two contexts with --context: exit %d, want 2 and both environments:\n%s", code, out)
	}
}
