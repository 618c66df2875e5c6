package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// manyAppsRepo is a repository of 20 apps in ns: p00..p14 of plain
// manifests, h1 and h2 Helm releases of one local chart (which reads the
// cluster's .Capabilities) with a values file each, k1 and k2 kustomize overlays of the base bases/shared, k3 one of
// bases/other.
func manyAppsRepo(t *testing.T, ns string) *gitRepo {
	t.Helper()
	apps := []string{}
	files := map[string]string{
		"charts/demo/Chart.yaml":  "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"charts/demo/values.yaml": "color: blue\n",
		// The chart consults the cluster, as many public charts do: the
		// capabilities are read from the reconciler's session for the
		// skip as for the runs.
		"charts/demo/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {color: {{ .Values.color | quote }}, " +
			"minor: {{ .Capabilities.KubeVersion.Minor | quote }}, pdb: {{ .Capabilities.APIVersions.Has \"policy/v1/PodDisruptionBudget\" | quote }}}\n",
		"values/h1.yaml":                  "color: red\n",
		"values/h2.yaml":                  "color: red\n",
		"bases/shared/kustomization.yaml": "resources: [cm.yaml]\n",
		"bases/shared/cm.yaml":            configMap("shared", map[string]string{"v": "one"}),
		"bases/other/kustomization.yaml":  "resources: [cm.yaml]\n",
		"bases/other/cm.yaml":             configMap("other", map[string]string{"v": "one"}),
		"kust/k1/kustomization.yaml":      "namePrefix: k1-\nresources: [../../bases/shared]\n",
		"kust/k2/kustomization.yaml":      "namePrefix: k2-\nresources: [../../bases/shared]\n",
		"kust/k3/kustomization.yaml":      "namePrefix: k3-\nresources: [../../bases/other]\n",
	}
	for i := range 15 {
		name := fmt.Sprintf("p%02d", i)
		apps = append(apps, fmt.Sprintf("- {name: %s, namespace: $NS, manifests: {path: plain/%s}}", name, name))
		files["plain/"+name+"/cm.yaml"] = configMap(name, map[string]string{"v": "one"})
	}
	apps = append(apps,
		"- {name: h1, namespace: $NS, helm: {chart: charts/demo, valuesFiles: [values/h1.yaml]}}",
		"- {name: h2, namespace: $NS, helm: {chart: charts/demo, valuesFiles: [values/h2.yaml]}}",
		"- {name: k1, namespace: $NS, kustomize: {path: kust/k1}}",
		"- {name: k2, namespace: $NS, kustomize: {path: kust/k2}}",
		"- {name: k3, namespace: $NS, kustomize: {path: kust/k3}}")
	files["deliver.yaml"] = deliverYAML(ns, apps...)
	return newGitRepo(t, files)
}

// ranSince returns the apps whose last run ended after t, sorted, once
// every app is delivered at head and none runs; it fails the test if that
// does not happen in time.
func ranSince(t *testing.T, r *reconcile.Reconciler, head string, since time.Time) []string {
	t.Helper()
	return ranSinceOf(t, r, 20, head, since)
}

// ranSinceOf is ranSince for a repository of n apps.
func ranSinceOf(t *testing.T, r *reconcile.Reconciler, n int, head string, since time.Time) []string {
	t.Helper()
	waitFor(t, 60*time.Second, "every app at "+head[:12], func() bool {
		st := r.Status()
		if len(st.Apps) != n {
			return false
		}
		for _, a := range st.Apps {
			if a.Revision != head || a.Result != apply.ResultSucceeded {
				return false
			}
		}
		return true
	})
	var ran []string
	for _, a := range r.Status().Apps {
		if a.LastRun.After(since) {
			ran = append(ran, a.App)
		}
	}
	slices.Sort(ran)
	return ran
}

// TestNewRevisionRunsOnlyChangedApps: with 20 apps, a new commit runs (and
// renders) only the apps whose inputs it changed; the others are marked
// delivered at the new commit without a run, with the reason "unchanged"
// in their status and a metric: a Helm values file and a plain manifest
// run their two apps, a kustomize base in another folder the two
// overlays that use it, a value in deliver.yaml its one app, a README
// none. An edit in the cluster of an app that was not run is still
// reverted. A reconcile --once after a restart runs only the app its new
// commit changed.
func TestNewRevisionRunsOnlyChangedApps(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	repo := manyAppsRepo(t, ns)
	opts := options(t, repo, env.Config)
	r, stop := start(t, opts)
	first := time.Now()
	if ran := ranSince(t, r, repo.Head(), first); len(ran) != 20 {
		t.Fatalf("first revision ran %v, want all 20 apps", ran)
	}

	steps := []struct {
		name  string
		files func() map[string]string
		want  []string
		check func(t *testing.T)
	}{
		{"helm values file and a plain manifest", func() map[string]string {
			return map[string]string{"values/h1.yaml": "color: green\n", "plain/p03/cm.yaml": configMap("p03", map[string]string{"v": "two"})}
		}, []string{"h1", "p03"}, func(t *testing.T) {
			if cmData(t, ns, "h1")["color"] != "green" || cmData(t, ns, "p03")["v"] != "two" {
				t.Error("the changes were not applied")
			}
		}},
		{"kustomize base shared by two overlays", func() map[string]string {
			return map[string]string{"bases/shared/cm.yaml": configMap("shared", map[string]string{"v": "two"})}
		}, []string{"k1", "k2"}, func(t *testing.T) {
			if cmData(t, ns, "k1-shared")["v"] != "two" || cmData(t, ns, "k2-shared")["v"] != "two" {
				t.Error("the base's change was not applied to both overlays")
			}
		}},
		{"value in deliver.yaml", func() map[string]string {
			data, err := os.ReadFile(filepath.Join(repo.Dir, "deliver.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			return map[string]string{"deliver.yaml": strings.Replace(string(data), "valuesFiles: [values/h2.yaml]}", "valuesFiles: [values/h2.yaml], values: {color: white}}", 1)}
		}, []string{"h2"}, func(t *testing.T) {
			if cmData(t, ns, "h2")["color"] != "white" {
				t.Error("the value was not applied")
			}
		}},
		{"no app's file", func() map[string]string { return map[string]string{"README.md": "docs\n"} }, nil, nil},
	}
	for _, st := range steps {
		for name, content := range st.files() {
			repo.WriteFile(name, content)
		}
		before := time.Now()
		head := repo.CommitAll(st.name)
		r.Trigger()
		ran := ranSince(t, r, head, before)
		if !slices.Equal(ran, st.want) {
			t.Errorf("%s: ran %v, want %v", st.name, ran, st.want)
		}
		if st.check != nil {
			st.check(t)
		}
		for _, a := range r.Status().Apps {
			if !slices.Contains(st.want, a.App) && !strings.HasPrefix(a.Message, "unchanged") {
				t.Errorf("%s: app %s not run, message %q, want unchanged", st.name, a.App, a.Message)
			}
		}
	}

	// The metric counts the revisions p00 was not run for: all four.
	if want := `deliver_reconcile_unchanged_total{app="p00"} 4`; !strings.Contains(metricsBody(t, r), want) {
		t.Errorf("metrics lack %s", want)
	}

	// An edit of an object of an app that was never run again. The stop
	// waits for the end of the run that reverts it: a run stopped after
	// its apply is not done (prune, the inventory's last write), and the
	// next process runs the app again, rightly.
	edited := time.Now()
	_, err := env.Client().CoreV1().ConfigMaps(ns).Patch(context.Background(), "p05", types.MergePatchType, []byte(`{"data":{"v":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "drift of a skipped app reverted", func() bool {
		for _, a := range r.Status().Apps {
			if a.App == "p05" {
				return a.Result == "succeeded" && a.LastRun.After(edited) && cmData(t, ns, "p05")["v"] == "one"
			}
		}
		return false
	})
	stop()

	// reconcile --once, by a new process: the inventories tell it what
	// each app was made from.
	repo.WriteFile("plain/p07/cm.yaml", configMap("p07", map[string]string{"v": "two"}))
	head := repo.CommitAll("p07")
	once := opts
	once.Once = true
	before := time.Now()
	r2, err := reconcile.New(once)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r2.Run(ctx); err != nil {
		t.Fatalf("once: %v", err)
	}
	if ran := ranSince(t, r2, head, before); !slices.Equal(ran, []string{"p07"}) {
		t.Errorf("once: ran %v, want [p07]", ran)
	}
	if cmData(t, ns, "p07")["v"] != "two" {
		t.Error("once: p07's change was not applied")
	}
}

// TestNewRevisionSkipsVaultApp: an app whose Secret holds a ref to a Vault
// KV v2 secret is not run for a new commit that changes none of its
// files, the secret unchanged (its version is read from Vault's
// metadata); after a kv put, the next commit runs it and applies the new
// value. The other app, without refs, is skipped both times.
func TestNewRevisionSkipsVaultApp(t *testing.T) {
	ns := env.Namespace(t) // first: skipped with -short before Vault starts
	t.Parallel()
	ctx := context.Background()
	const canary1, canary2 = "CANARY-rv-1-a41f07", "CANARY-rv-2-c3d9e8"
	tv, vc := testenv.NewVault(t)
	kvPut(t, vc, "web", canary1)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: \"ref+vault://secret/web#/password\"}\n",
		"other/cm.yaml":   configMap("other", map[string]string{"v": "one"}),
		"README.md":       "one\n",
	})
	opts := options(t, repo, env.Config)
	opts.Pipeline.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": tv.Addr, "VAULT_TOKEN": tv.Token}[k]
	}
	r, _ := start(t, opts)
	// ran waits for both apps delivered at head and returns those whose
	// last run ended after since.
	ran := func(head string, since time.Time) []string {
		t.Helper()
		waitFor(t, 60*time.Second, "both apps at "+head[:12], func() bool {
			for _, app := range []string{"web", "other"} {
				if a := appStatus(r, app); a.Revision != head || a.Result != apply.ResultSucceeded {
					return false
				}
			}
			return true
		})
		var out []string
		for _, a := range r.Status().Apps {
			if a.LastRun.After(since) {
				out = append(out, a.App)
			}
		}
		slices.Sort(out)
		return out
	}
	secret := func() string {
		t.Helper()
		s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["password"])
	}
	ran(repo.Head(), time.Time{})
	if secret() != canary1 {
		t.Fatal("first apply: the secret value is not in the cluster")
	}

	repo.WriteFile("README.md", "two\n")
	before := time.Now()
	head := repo.CommitAll("readme")
	r.Trigger()
	if got := ran(head, before); len(got) != 0 {
		t.Errorf("commit of no app's file, secret unchanged: ran %v, want none", got)
	}
	if a := appStatus(r, "web"); !strings.HasPrefix(a.Message, "unchanged") {
		t.Errorf("web message %q, want unchanged", a.Message)
	}

	kvPut(t, vc, "web", canary2)
	repo.WriteFile("README.md", "three\n")
	before = time.Now()
	head = repo.CommitAll("readme again")
	r.Trigger()
	if got := ran(head, before); !slices.Equal(got, []string{"web"}) {
		t.Errorf("commit of no app's file after a kv put: ran %v, want [web]", got)
	}
	if secret() != canary2 {
		t.Error("the new secret version's value was not applied")
	}
}

// TestNewRevisionRunsPostBuildReaders: an app whose post-build reads a
// ConfigMap that an app it depends on delivers (Flux's cluster-vars) runs
// in the revision that changes that ConfigMap, after it, though none of
// its own files changed; a revision in which the dependency runs without
// changing the ConfigMap leaves it unchanged, without a run, once its
// inputs are checked again after the dependency; an app that does not
// depend on it is skipped at once.
func TestNewRevisionRunsPostBuildReaders(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	vars := func(color string) string { return configMap("cluster-vars", map[string]string{"color": color}) }
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, dependsOn: [vars], manifests: {path: web}, postBuild: {substituteFrom: [{kind: ConfigMap, name: cluster-vars}]}}",
			"- {name: vars, namespace: $NS, manifests: {path: vars}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"vars/cm.yaml":  vars("blue"),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "${color}"}),
		"other/cm.yaml": configMap("other", map[string]string{"v": "one"}),
	})
	r, _ := start(t, options(t, repo, env.Config))
	if ran := ranSinceOf(t, r, 3, repo.Head(), time.Time{}); len(ran) != 3 {
		t.Fatalf("first revision ran %v, want all 3 apps", ran)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("web color %q, want blue", got)
	}
	for _, st := range []struct {
		name, file, content string
		want                []string
		color               string
	}{
		{"a new color", "vars/cm.yaml", vars("green"), []string{"vars", "web"}, "green"},
		{"another object of vars", "vars/more.yaml", configMap("more", map[string]string{"a": "b"}), []string{"vars"}, "green"},
		{"no app's file", "README.md", "docs\n", nil, "green"},
	} {
		repo.WriteFile(st.file, st.content)
		before := time.Now()
		head := repo.CommitAll(st.name)
		r.Trigger()
		if ran := ranSinceOf(t, r, 3, head, before); !slices.Equal(ran, st.want) {
			t.Errorf("%s: ran %v, want %v", st.name, ran, st.want)
		}
		if got := cmData(t, ns, "web")["color"]; got != st.color {
			t.Errorf("%s: web color %q, want %q", st.name, got, st.color)
		}
		for _, a := range r.Status().Apps {
			if !slices.Contains(st.want, a.App) && !strings.HasPrefix(a.Message, "unchanged") {
				t.Errorf("%s: app %s not run, message %q, want unchanged", st.name, a.App, a.Message)
			}
		}
	}
}
