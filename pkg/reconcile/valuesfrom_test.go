package reconcile_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

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
	settings := func(color string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"values.yaml": "color: " + color + "\n"}}
	}
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
	settings := func(name, color string, watched bool) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"values.yaml": "color: " + color + "\n"}}
		if watched {
			cm.Labels = map[string]string{reconcile.LabelWatch: "Enabled"}
		}
		return cm
	}
	for _, cm := range []*corev1.ConfigMap{settings("watched", "blue", true), settings("plain", "blue", false)} {
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	chart := func(app string) map[string]string {
		return map[string]string{
			app + "/Chart.yaml":        "apiVersion: v2\nname: " + app + "\nversion: 0.1.0\n",
			app + "/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + app + "}\ndata: {color: {{ .Values.color | quote }}}\n",
		}
	}
	files := map[string]string{"deliver.yaml": deliverYAML(ns,
		"- {name: web, namespace: $NS, helm: {chart: web, valuesFrom: [{kind: ConfigMap, name: watched}]}}",
		"- {name: api, namespace: $NS, helm: {chart: api, valuesFrom: [{kind: ConfigMap, name: plain}]}}")}
	maps.Copy(files, chart("web"))
	maps.Copy(files, chart("api"))
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
