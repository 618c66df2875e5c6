package reconcile_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// valuesConfigMap is a ConfigMap name holding a Helm values document that
// sets color, labelled for the reconciler's watch when watched.
func valuesConfigMap(name, color string, watched bool) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"values.yaml": "color: " + color + "\n"}}
	if watched {
		cm.Labels = map[string]string{reconcile.LabelWatch: "Enabled"}
	}
	return cm
}

// colorChart is the files of a chart folder app whose one ConfigMap, named
// app, holds the value color as its data.
func colorChart(app string) map[string]string {
	return map[string]string{
		app + "/Chart.yaml":        "apiVersion: v2\nname: " + app + "\nversion: 0.1.0\n",
		app + "/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + app + "}\ndata: {color: {{ .Values.color | quote }}}\n",
	}
}

// kvPut writes password as the field password of Vault's KV v2 secret
// secret/path.
func kvPut(t *testing.T, vc *vaultapi.Client, path, password string) {
	t.Helper()
	if _, err := vc.KVv2("secret").Put(context.Background(), path, map[string]any{"password": password}); err != nil {
		t.Fatal(err)
	}
}

// TestNewRevisionRunsValuesFromReaders: a Helm app's valuesFrom objects
// are inputs of the app: at a commit that changes no file of it, a
// reconcile --once pass runs it only when a ConfigMap it reads changed in
// the cluster since its last run, and applies the new value; the other
// app, which reads nothing, is not run.
func TestNewRevisionRunsValuesFromReaders(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	ctx := context.Background()
	cms := env.Client().CoreV1().ConfigMaps(ns)
	settings := func(color string) *corev1.ConfigMap { return valuesConfigMap("settings", color, false) }
	if _, err := cms.Create(ctx, settings("blue"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, helm: {chart: chart, valuesFrom: [{kind: ConfigMap, name: settings}]}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"chart/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"chart/values.yaml":       "color: red\n",
		"chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: {{ .Values.color | quote }}}\n",
		"other/cm.yaml":           configMap("other", map[string]string{"v": "one"}),
	})
	opts := options(t, repo, env.Config)
	if _, err := runPass(t, opts); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Fatalf("after the first pass: web color %q, want blue", got)
	}
	for _, step := range []struct {
		name  string
		color string // the ConfigMap's new color, "" for no edit
		want  []string
	}{
		{"no edit", "", nil},
		{"an edit of the ConfigMap", "green", []string{"web"}},
	} {
		if step.color != "" {
			if _, err := cms.Update(ctx, settings(step.color), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		repo.WriteFile("README.md", step.name+"\n")
		head := repo.CommitAll(step.name)
		before := time.Now()
		r, err := runPass(t, opts)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if ran := ranSinceOf(t, r, 2, head, before); !slices.Equal(ran, step.want) {
			t.Errorf("%s: ran %v, want %v", step.name, ran, step.want)
		}
	}
	if got := cmData(t, ns, "web")["color"]; got != "green" {
		t.Errorf("after the edit: web color %q, want green", got)
	}
}

// TestWatchedInputRunsApp: a ConfigMap labelled reconcile.fluxcd.io/watch:
// Enabled that a Helm app's valuesFrom reads runs the app as soon as it
// changes, without a commit, as Flux's label does; an edit of an
// unlabelled one made at the same time runs nothing until a commit.
func TestWatchedInputRunsApp(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	ctx := context.Background()
	cms := env.Client().CoreV1().ConfigMaps(ns)
	settings := valuesConfigMap
	for _, cm := range []*corev1.ConfigMap{settings("watched", "blue", true), settings("plain", "blue", false)} {
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"deliver.yaml": deliverYAML(ns,
		"- {name: web, namespace: $NS, helm: {chart: web, valuesFrom: [{kind: ConfigMap, name: watched}]}}",
		"- {name: api, namespace: $NS, helm: {chart: api, valuesFrom: [{kind: ConfigMap, name: plain}]}}")}
	maps.Copy(files, colorChart("web"))
	maps.Copy(files, colorChart("api"))
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour // no fetch but the first: only the watch may run web
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first delivery", func() bool {
		return appStatus(r, "web").Revision == repo.Head() && appStatus(r, "api").Revision == repo.Head() &&
			cmData(t, ns, "web")["color"] == "blue" && cmData(t, ns, "api")["color"] == "blue"
	})
	apiRun := appStatus(r, "api").LastRun

	for _, cm := range []*corev1.ConfigMap{settings("plain", "green", false), settings("watched", "green", true)} {
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "web run for its watched input", func() bool { return cmData(t, ns, "web")["color"] == "green" })
	// api did not run (no resync, no fetch either): web ran for the watch.
	if a := appStatus(r, "api"); !a.LastRun.Equal(apiRun) || cmData(t, ns, "api")["color"] != "blue" {
		t.Errorf("api ran for an unlabelled input: %+v", a)
	}
}

// TestInputsIntervalRunsApp: with no commit and no watch label, the
// reconciler reads the versions of the inputs apps take from outside git
// every InputsInterval, as Flux reads them at each interval, and runs
// exactly the apps whose inputs changed: a Helm app whose unlabelled
// valuesFrom ConfigMap was edited, then an app whose Vault secret got a
// new version (the new value reaches the cluster). An app whose inputs
// did not change, checked in the same pass, does not run, and an app
// whose inputs are all in git is never checked.
func TestInputsIntervalRunsApp(t *testing.T) {
	ns := env.Namespace(t) // first: skipped with -short before Vault starts
	t.Parallel()
	ctx := context.Background()
	const canary1, canary2 = "CANARY-ii-1-5be07d", "CANARY-ii-2-90c4a1"
	tv, vc := testenv.NewVault(t)
	kvPut(t, vc, "web", canary1)
	cms := env.Client().CoreV1().ConfigMaps(ns)
	settings := func(color string) *corev1.ConfigMap { return valuesConfigMap("settings", color, false) }
	if _, err := cms.Create(ctx, settings("blue"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: api, namespace: $NS, helm: {chart: api, valuesFrom: [{kind: ConfigMap, name: settings}]}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: \"ref+vault://secret/web#/password\"}\n",
		"other/cm.yaml":   configMap("other", map[string]string{"v": "one"}),
	}
	maps.Copy(files, colorChart("api"))
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour // no fetch but the first, and no full resync
	opts.InputsInterval = 300 * time.Millisecond
	opts.Pipeline.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": tv.Addr, "VAULT_TOKEN": tv.Token}[k]
	}
	r, _ := start(t, opts)
	secret := func() string {
		s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return string(s.Data["password"])
	}
	waitFor(t, 60*time.Second, "first delivery", func() bool {
		for _, app := range []string{"web", "api", "other"} {
			if a := appStatus(r, app); a.Revision != repo.Head() || a.Result != apply.ResultSucceeded {
				return false
			}
		}
		return secret() == canary1 && cmData(t, ns, "api")["color"] == "blue"
	})
	lastRun := func(app string) time.Time { return appStatus(r, app).LastRun }
	web, other := lastRun("web"), lastRun("other")

	if _, err := cms.Update(ctx, settings("green"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "api run for its edited valuesFrom", func() bool {
		return cmData(t, ns, "api")["color"] == "green" && appStatus(r, "api").Result == apply.ResultSucceeded
	})
	// The pass that found the edit checked web's Vault secret too.
	if got := lastRun("web"); !got.Equal(web) {
		t.Errorf("web ran, its inputs unchanged: last run %s, was %s", got, web)
	}
	api := lastRun("api")

	kvPut(t, vc, "web", canary2)
	waitFor(t, 30*time.Second, "web run for its new Vault secret version", func() bool {
		return secret() == canary2 && appStatus(r, "web").Result == apply.ResultSucceeded
	})
	if got := lastRun("api"); !got.Equal(api) {
		t.Errorf("api ran again, its inputs unchanged: last run %s, was %s", got, api)
	}
	if got := lastRun("other"); !got.Equal(other) {
		t.Errorf("other ran, all its inputs in git: last run %s, was %s", got, other)
	}

	// The metric counts each app's checks: api and web changed once each
	// and were found unchanged in the other passes; other is never checked.
	body := metricsBody(t, r)
	for _, want := range []string{
		`deliver_reconcile_inputs_checked_total{app="api",result="changed"} 1`,
		`deliver_reconcile_inputs_checked_total{app="web",result="changed"} 1`,
		`deliver_reconcile_inputs_checked_total{app="api",result="unchanged"} `,
		`deliver_reconcile_inputs_checked_total{app="web",result="unchanged"} `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `deliver_reconcile_inputs_checked_total{app="other"`) {
		t.Errorf("metrics count checks of other, whose inputs are all in git")
	}
}
