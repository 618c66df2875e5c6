package pipeline

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestRemoveApps: apps that left deliver.yaml are removed from a real
// control plane only by Remove. Its plan lists them (those this identity
// delivered, by their inventories) and writes nothing; Remove of a named
// app prunes its objects (the ones marked prune: disabled or Argo CD's
// Delete=false stay; Delete=false does not keep an object from a prune) and
// deletes its inventory; without names it removes the other one. An app
// deliver.yaml still lists, an app of another identity (a run of -f) and
// an app without an inventory are refused, naming them, and keep their
// objects.
func TestRemoveApps(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	cm := func(name, extra string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + extra + "}\ndata: {a: b}\n"
	}
	config := func(apps ...string) string {
		out := "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n"
		for _, a := range apps {
			out += "- {name: " + a + ", namespace: " + ns + ", manifests: {path: " + a + "}}\n"
		}
		return out
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml":  config("web", "api", "gone"),
		"web/cm.yaml":   cm("web", ""),
		"web/keep.yaml": cm("web-keep", ", annotations: {kustomize.toolkit.fluxcd.io/prune: disabled}"),
		"web/argo.yaml": cm("web-argo", ", annotations: {argocd.argoproj.io/sync-options: Delete=false}"),
		"api/argo.yaml": cm("api-argo", ", annotations: {argocd.argoproj.io/sync-options: Delete=false}"),
		"web/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n" +
			"  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: registry.example/web:1}]}\n",
		"api/cm.yaml":     cm("api", ""),
		"gone/cm.yaml":    cm("gone", ""),
		"foreign/cm.yaml": cm("foreign", ""),
	})
	mustRun(t, "apply", Apply, opts)
	foreign := opts
	foreign.Manifests, foreign.App, foreign.Namespace = "foreign", "foreign", ns
	mustRun(t, "apply -f foreign", Apply, foreign)
	repo.WriteFile("deliver.yaml", config("api"))
	repo.CommitAll("web and gone leave")

	core := env.Client().CoreV1()
	exists := func(name string) bool {
		t.Helper()
		return found(t, func() error {
			_, err := core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		})
	}
	inventory := func(app string) bool {
		t.Helper()
		return found(t, func() error {
			_, err := core.Secrets(inv).Get(ctx, apply.InventoryName(app), metav1.GetOptions{})
			return err
		})
	}
	names := func(res *Result) []string {
		var out []string
		for _, a := range res.Apps {
			out = append(out, a.Name)
		}
		return out
	}

	// The plan: the two apps that left, web's three objects to delete.
	res := mustRun(t, "plan", PlanRemove, opts)
	if got := names(res); !slices.Equal(got, []string{"gone", "web"}) {
		t.Fatalf("plan removes %v, want [gone web] (not api, listed; not foreign, another identity's)", got)
	}
	if got := planned(t, res, "web"); !strings.Contains(got, "ConfigMap/"+ns+"/web") || !strings.Contains(got, "Deployment/"+ns+"/web") {
		t.Errorf("web's plan does not delete its objects:\n%s", got)
	}
	if !exists("web") || !inventory("web") {
		t.Fatal("the plan wrote")
	}

	// Refused: listed, another identity's, never delivered here.
	for _, tc := range []struct{ app, want string }{
		{"api", "remove app api: deliver.yaml lists it"},
		{"foreign", "remove app foreign: "},
		{"nosuch", "remove app nosuch: nosuch: inventory namespace " + inv + ": no inventory"},
	} {
		o := opts
		o.Apps = []string{tc.app}
		res, err := Remove(ctx, o)
		if err == nil {
			err = res.Err()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("remove %s: %v, want an error containing %q", tc.app, err, tc.want)
		}
		if tc.app == "foreign" && !errors.As(err, new(*apply.IdentityError)) {
			t.Errorf("remove foreign: %v, want an identity error", err)
		}
	}
	if !exists("api") || !exists("foreign") || !inventory("foreign") {
		t.Fatal("a refused removal deleted objects")
	}

	// web by name: its objects but the one marked to stay, its inventory.
	o := opts
	o.Apps = []string{"web"}
	res = mustRun(t, "remove web", Remove, o)
	if rep := res.Apps[0].Report; rep == nil || rep.Count(apply.Deleted) != 2 {
		t.Errorf("remove web: report %v, want 2 deleted", rep)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("web's Deployment after the removal: %v", err)
	}
	if exists("web") || !exists("web-keep") || !exists("web-argo") || inventory("web") {
		t.Errorf("after removing web: ConfigMap web %v (want gone), web-keep %v and web-argo %v (want kept), inventory %v (want gone)",
			exists("web"), exists("web-keep"), exists("web-argo"), inventory("web"))
	}
	// Argo CD's Delete=false keeps an object when its app is removed, not
	// when the object leaves git: api-argo is pruned.
	repo.Git("rm", "-q", "api/argo.yaml")
	repo.CommitAll("api-argo leaves")
	mustRun(t, "apply without api-argo", Apply, opts)
	if exists("api-argo") {
		t.Error("api-argo, annotated Delete=false, was not pruned when it left git")
	}

	// Without names: gone only, now.
	res = mustRun(t, "remove the rest", Remove, opts)
	if got := names(res); !slices.Equal(got, []string{"gone"}) {
		t.Errorf("removed %v, want [gone]", got)
	}
	if exists("gone") || inventory("gone") || !exists("api") || !exists("foreign") {
		t.Error("removing the apps that left deleted the wrong objects")
	}
	if res := mustRun(t, "plan after", PlanRemove, opts); len(res.Apps) != 0 {
		t.Errorf("after the removals the plan still removes %v", names(res))
	}
}

// TestSecretsThatLeftGitMasked: a ConfigMap field held a Secret's value
// (a post-build substitution) when deliver applied it; once git no longer
// names the secret (the post-build and the field gone, so no run knows the
// value), the diff of the field's removal, of the object's prune and of
// the app's removal mask the live value at the places the inventory
// recorded, in every item of a list, and show the rest.
func TestSecretsThatLeftGitMasked(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	const token = "canary-left-git-7c1d"
	if _, err := env.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "upstream"}, Data: map[string][]byte{"token": []byte(token)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := func(postBuild string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n- {name: web, namespace: " + ns + ", manifests: {path: web}" + postBuild + "}\n"
	}
	withToken := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {plain: shown-value, token: \"${token}\", dsn: \"postgres://app:${token}@db\"}\n"
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml": config(", postBuild: {substituteFrom: [{kind: Secret, name: upstream}]}"),
		"web/cm.yaml":  withToken,
		"web/job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: job}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n" +
			"      - {name: a, image: busybox, env: [{name: TOKEN, value: \"${token}\"}, {name: MODE, value: fast}]}\n" +
			"      - {name: b, image: busybox, env: [{name: TOKEN, value: \"t=${token}\"}]}\n",
	})
	mustRun(t, "apply", Apply, opts)

	// The post-build and the token's field leave git; the Job leaves it.
	repo.WriteFile("deliver.yaml", config(""))
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {plain: shown-value}\n")
	repo.Git("rm", "-q", "web/job.yaml")
	repo.CommitAll("the token leaves git")
	res := mustRun(t, "diff", Diff, opts)
	text := planned(t, res, "web")
	if strings.Contains(text, "canary-left-git") {
		t.Errorf("the diff shows a secret that left git:\n%s", text)
	}
	for _, want := range []string{"token: '*** (before)'", "dsn: '*** (before)'", "value: '*** (before)'", "name: MODE", "shown-value", "Job/" + ns + "/job"} {
		if !strings.Contains(text, want) {
			t.Errorf("the diff lacks %q:\n%s", want, text)
		}
	}

	// The whole app leaves: its removal's plan masks the same places.
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: other, namespace: "+ns+", manifests: {path: other}}\n")
	repo.WriteFile("other/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {a: b}\n")
	repo.CommitAll("web leaves")
	res = mustRun(t, "plan the removal", PlanRemove, opts)
	if text := planned(t, res, "web"); strings.Contains(text, "canary-left-git") || !strings.Contains(text, "token: '*** (before)'") || !strings.Contains(text, "shown-value") {
		t.Errorf("the removal's plan, want the token masked and the rest shown:\n%s", text)
	}
}

// TestPruneApps: with pruneApps, a diff plans the removal of the apps
// that left deliver.yaml (this identity's) and an apply removes them,
// after the listed apps were delivered, and only when every one was: a
// listed app that fails holds the removal back.
func TestPruneApps(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	config := func(apps ...string) string {
		out := "apiVersion: deliver.dev/v1alpha1\nkind: Config\npruneApps: true\ndefaults: {wait: false}\napps:\n"
		for _, a := range apps {
			out += "- {name: " + a + ", namespace: " + ns + ", manifests: {path: " + a + "}}\n"
		}
		return out
	}
	cm := func(name, data string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {a: " + data + "}\n"
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml": config("web", "api", "old"),
		"web/cm.yaml":  cm("web", "b"),
		"api/cm.yaml":  cm("api", "b"),
		"old/cm.yaml":  cm("old", "b"),
	})
	mustRun(t, "apply", Apply, opts)
	exists := func(name string) bool {
		t.Helper()
		return found(t, func() error {
			_, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
			return err
		})
	}
	removed := func(res *Result) []string {
		var out []string
		for _, a := range res.Apps {
			if a.Removed {
				out = append(out, a.Name)
			}
		}
		return out
	}

	// old leaves, and web fails: nothing is removed, nor planned.
	repo.WriteFile("deliver.yaml", config("web", "api"))
	repo.WriteFile("web/cm.yaml", cm("web", "1"))
	repo.CommitAll("old leaves, web breaks")
	if res, err := Apply(context.Background(), opts); err != nil || res.Err() == nil || len(removed(res)) > 0 {
		t.Fatalf("apply with web failing: %v, removed %v; want web's failure and no removal", err, removed(res))
	}
	if !exists("old") {
		t.Fatal("old was removed while web failed")
	}

	// web mended: the diff plans old's removal, the apply makes it.
	repo.WriteFile("web/cm.yaml", cm("web", "c"))
	repo.CommitAll("web mended")
	res := mustRun(t, "diff", Diff, opts)
	if got := removed(res); !slices.Equal(got, []string{"old"}) || !strings.Contains(planned(t, res, "old"), "ConfigMap/"+ns+"/old") || !res.HasChanges() {
		t.Errorf("diff: removed %v, want old's removal planned:\n%s", got, planned(t, res, "old"))
	}
	if !exists("old") {
		t.Fatal("the diff removed old")
	}
	res = mustRun(t, "apply", Apply, opts)
	if got := removed(res); !slices.Equal(got, []string{"old"}) {
		t.Errorf("apply removed %v, want [old]", got)
	}
	if exists("old") || !exists("web") || !exists("api") {
		t.Errorf("after the apply: old %v (want gone), web %v, api %v", exists("old"), exists("web"), exists("api"))
	}
	if res := mustRun(t, "diff after", Diff, opts); len(removed(res)) > 0 || res.HasChanges() {
		t.Errorf("diff after the removal: removed %v, changes %v", removed(res), res.HasChanges())
	}
}

// found reports whether get found its object: false when it is not found,
// and the test fails on any other error.
func found(t *testing.T, get func() error) bool {
	t.Helper()
	err := get()
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestRemoveDeletionPolicy: the deletionPolicy each run records decides
// what removing the app does, as Flux's: MirrorPrune (the default) of an
// app with prune: false leaves its objects (Orphan), of a pruning app
// deletes them; Orphan leaves them whatever prune says; the plan and the
// report name the objects left; Options.RemovePolicy replaces the
// recorded policy. The inventory goes in every case.
func TestRemoveDeletionPolicy(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	apps := map[string]string{
		"mirror-keep":  "prune: false",
		"mirror-prune": "prune: true",
		"orphan":       "deletionPolicy: Orphan",
		"deleted":      "prune: false, deletionPolicy: Delete",
	}
	files := map[string]string{"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n"}
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		files["deliver.yaml"] += "- {name: " + name + ", namespace: " + ns + ", manifests: {path: " + name + "}, " + apps[name] + "}\n"
		files[name+"/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {a: b}\n"
	}
	files["stays/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stays}\ndata: {a: b}\n"
	repo, opts := servedRepo(t, inv, files)
	mustRun(t, "apply", Apply, opts)
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	for name := range apps {
		i, err := mgr.ReadInventory(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]apply.DeletionPolicy{"mirror-keep": apply.DeletionOrphan, "mirror-prune": apply.DeletionDelete, "orphan": apply.DeletionOrphan, "deleted": apply.DeletionDelete}[name]
		if i.DeletionPolicy != want {
			t.Errorf("inventory of %s records deletionPolicy %q, want %q", name, i.DeletionPolicy, want)
		}
	}
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: stays, namespace: "+ns+", manifests: {path: stays}}\n")
	repo.CommitAll("every app leaves but stays")

	res := mustRun(t, "plan", PlanRemove, opts)
	orphans := map[string][]apply.Result{}
	for _, a := range res.Apps {
		if a.Plan == nil {
			t.Fatalf("no plan for %s", a.Name)
		}
		var text strings.Builder
		if err := a.Plan.WriteDiff(&text, apply.DiffOptions{}); err != nil {
			t.Fatal(err)
		}
		orphaned := len(a.Plan.Orphaned) == 1
		if orphaned != (a.Name == "mirror-keep" || a.Name == "orphan") || orphaned == strings.Contains(text.String(), "ConfigMap/"+ns+"/"+a.Name+" delete") {
			t.Errorf("plan of %s: orphaned %v:\n%s", a.Name, a.Plan.Orphaned, text.String())
		}
		if orphaned && !strings.Contains(text.String(), "ConfigMap/"+ns+"/"+a.Name+" stays in the cluster (deletionPolicy Orphan)") {
			t.Errorf("plan of %s does not say what stays:\n%s", a.Name, text.String())
		}
	}
	// An override replaces the recorded policy for one removal: deleted
	// (recorded Delete) is orphaned.
	o := opts
	o.Apps, o.RemovePolicy = []string{"deleted"}, apply.DeletionOrphan
	res = mustRun(t, "remove deleted as Orphan", Remove, o)
	overridden := res.Apps
	res = mustRun(t, "remove", Remove, opts)
	for _, a := range append(overridden, res.Apps...) {
		if a.Report != nil {
			for _, r := range a.Report.Results {
				if r.Action == apply.Orphaned {
					orphans[a.Name] = append(orphans[a.Name], r)
				}
			}
		}
	}
	core := env.Client().CoreV1()
	for name := range apps {
		keep := name == "mirror-keep" || name == "orphan" || name == "deleted"
		exists := found(t, func() error { _, err := core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); return err })
		if exists != keep || (len(orphans[name]) == 1) != keep {
			t.Errorf("after removing %s: ConfigMap exists %v, orphaned results %v; want kept %v", name, exists, orphans[name], keep)
		}
		if found(t, func() error {
			_, err := core.Secrets(inv).Get(ctx, apply.InventoryName(name), metav1.GetOptions{})
			return err
		}) {
			t.Errorf("the inventory of %s is still there", name)
		}
	}
}
