package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestAppDigest: the digest of an app's inputs changes with what the
// recorded reads saw (a file's content, a folder's listing, a path's
// existence) and with the app's configuration and the Kubernetes version,
// and with nothing else: not with a file no read recorded, not with the
// content of a file in a folder that was only listed, not with the
// directory the same content is in.
func TestAppDigest(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"app/values.yaml":         "color: blue\n",
		"app/templates/cm.yaml":   "kind: ConfigMap\n",
		"app/templates/other.txt": "x\n",
		"unrelated/file.yaml":     "a: b\n",
	}
	paths := []string{"d:app/templates", "f:app/values.yaml", "s:app/kustomization.yml"}
	app := config.ResolvedApp{App: config.App{Name: "web", Namespace: "prod", Helm: &config.Helm{Chart: "app", Values: map[string]any{"replicas": 2}}}, Strategy: "rolling", Prune: true}

	snapshot := func(t *testing.T, files map[string]string) *source.Snapshot {
		t.Helper()
		dir := t.TempDir()
		testenv.WriteFiles(t, dir, files)
		snap, err := source.Fetch(context.Background(), source.Options{URL: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { snap.Close() })
		return snap
	}
	digest := func(t *testing.T, files map[string]string, a config.ResolvedApp, o Options, paths []string) (string, error) {
		t.Helper()
		return appDigest(context.Background(), &o, snapshot(t, files), nil, a, paths, nil, nil)
	}
	with := func(change func(map[string]string)) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		change(m)
		return m
	}
	withApp := func(change func(*config.ResolvedApp)) config.ResolvedApp {
		a := app
		h := *a.Helm
		h.Values = map[string]any{"replicas": 2}
		a.Helm = &h
		change(&a)
		return a
	}
	want, err := digest(t, base, app, Options{}, paths)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(want, "sha256:") {
		t.Fatalf("digest = %q, want sha256:...", want)
	}
	tests := []struct {
		name  string
		files map[string]string
		app   config.ResolvedApp
		opts  Options
		same  bool
	}{
		{"same content elsewhere", base, app, Options{}, true},
		{"unrecorded file changed", with(func(m map[string]string) { m["unrelated/file.yaml"] = "a: c\n" }), app, Options{}, true},
		{"listed folder's file content changed", with(func(m map[string]string) { m["app/templates/other.txt"] = "y\n" }), app, Options{}, true},
		{"read file changed", with(func(m map[string]string) { m["app/values.yaml"] = "color: green\n" }), app, Options{}, false},
		{"file added to a listed folder", with(func(m map[string]string) { m["app/templates/new.yaml"] = "kind: Secret\n" }), app, Options{}, false},
		{"file removed from a listed folder", with(func(m map[string]string) { delete(m, "app/templates/other.txt") }), app, Options{}, false},
		{"read file removed", with(func(m map[string]string) { delete(m, "app/values.yaml") }), app, Options{}, false},
		{"path checked absent now exists", with(func(m map[string]string) { m["app/kustomization.yml"] = "resources: []\n" }), app, Options{}, false},
		{"value in deliver.yaml", base, withApp(func(a *config.ResolvedApp) { a.Helm.Values["replicas"] = 3 }), Options{}, false},
		{"namespace", base, withApp(func(a *config.ResolvedApp) { a.Namespace = "staging" }), Options{}, false},
		{"strategy", base, withApp(func(a *config.ResolvedApp) { a.Strategy = "recreate" }), Options{}, false},
		{"prune", base, withApp(func(a *config.ResolvedApp) { a.Prune = false }), Options{}, false},
		{"restartOnConfigChange", base, withApp(func(a *config.ResolvedApp) { a.RestartOnConfigChange = true }), Options{}, false},
		{"ignore rule", base, withApp(func(a *config.ResolvedApp) {
			a.IgnoreDifferences = []config.IgnoreRule{{Group: "apps", Kind: "Deployment", JSONPointers: []string{"/spec/replicas"}}}
		}), Options{}, false},
		{"health checks", base, withApp(func(a *config.ResolvedApp) {
			a.HealthChecks = []health.Check{{APIVersion: "example.com/v1", Kind: "Widget", Current: "self.status.ready == true"}}
		}), Options{}, false},
		{"kube version", base, app, Options{KubeVersion: "v1.30.0"}, false},
		{"post-build variable", base, withApp(func(a *config.ResolvedApp) {
			a.PostBuild = &config.PostBuild{Substitute: map[string]string{"cluster_name": "prod"}}
		}), Options{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := digest(t, tt.files, tt.app, tt.opts, paths)
			if err != nil {
				t.Fatal(err)
			}
			if (got == want) != tt.same {
				t.Errorf("digest %s, base %s: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
	// A Vault secret counts by its path and version.
	t.Run("vault versions", func(t *testing.T) {
		t.Parallel()
		snap := snapshot(t, base)
		d := func(vault ...apply.VaultVersion) string {
			got, err := appDigest(context.Background(), &Options{}, snap, nil, app, paths, vault, nil)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		v1 := apply.VaultVersion{Path: "secret/web", Version: 1}
		if d(v1) != d(v1) {
			t.Error("same vault versions, different digests")
		}
		for _, other := range [][]apply.VaultVersion{nil, {{Path: "secret/web", Version: 2}}, {{Path: "secret/api", Version: 1}}, {v1, {Path: "secret/api", Version: 1}}} {
			if d(v1) == d(other...) {
				t.Errorf("digest with %v = digest with %v", []apply.VaultVersion{v1}, other)
			}
		}
	})
	// The parts of the cluster a chart consulted count by what the
	// cluster serves for them; the parts it did not consult do not count.
	t.Run("cluster capabilities", func(t *testing.T) {
		t.Parallel()
		snap := snapshot(t, base)
		caps := func(git, minor, api string) *clusterCaps {
			c := &clusterCaps{}
			c.once.Do(func() {
				c.caps = &apply.Capabilities{Version: version.Info{GitVersion: git, Major: "1", Minor: minor}, APIDigest: api}
			})
			return c
		}
		d := func(c *clusterCaps, parts ...string) string {
			t.Helper()
			got, err := appDigest(context.Background(), &Options{}, snap, c, app, append(slices.Clone(paths), parts...), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		kv, av := render.ReadCluster+render.CapKubeVersion, render.ReadCluster+render.CapAPIVersions
		c1 := caps("v1.30.1", "30", "sha256:a")
		for _, tt := range []struct {
			name  string
			other *clusterCaps
			parts []string
			same  bool
		}{
			{"nothing consulted, new version and API", caps("v1.31.0", "31", "sha256:b"), nil, true},
			{"version consulted, same", caps("v1.30.1", "30", "sha256:a"), []string{kv}, true},
			{"version consulted, new version", caps("v1.31.0", "31", "sha256:a"), []string{kv}, false},
			{"version consulted, new minor string (28+)", caps("v1.30.1", "30+", "sha256:a"), []string{kv}, false},
			{"version consulted, new API", caps("v1.30.1", "30", "sha256:b"), []string{kv}, true},
			{"API consulted, new API", caps("v1.30.1", "30", "sha256:b"), []string{av}, false},
			{"API consulted, new version", caps("v1.31.0", "31", "sha256:a"), []string{av}, true},
			{"both consulted, new API", caps("v1.30.1", "30", "sha256:b"), []string{av, kv}, false},
		} {
			if got := d(c1, tt.parts...) == d(tt.other, tt.parts...); got != tt.same {
				t.Errorf("%s: same digest = %v, want %v", tt.name, got, tt.same)
			}
		}
		// Consulting is itself an input: the same cluster, another part.
		if d(c1) == d(c1, kv) || d(c1, kv) == d(c1, av) {
			t.Error("the parts consulted do not count")
		}
		// Without the cluster's capabilities, a chart that consulted them
		// cannot be digested (the app is rendered).
		if _, err := appDigest(context.Background(), &Options{}, snap, nil, app, []string{kv}, nil, nil); err == nil {
			t.Error("digest of a consulted part without a cluster: no error")
		}
	})
	// A recorded ".." is cleaned into the snapshot, never read outside it.
	t.Run("path outside the snapshot", func(t *testing.T) {
		t.Parallel()
		d1, _ := digest(t, base, app, Options{}, []string{"f:../../unrelated/file.yaml"})
		d2, _ := digest(t, with(func(m map[string]string) { m["unrelated/file.yaml"] = "a: c\n" }), app, Options{}, []string{"f:../../unrelated/file.yaml"})
		if d1 == d2 {
			t.Errorf("a path with .. was not hashed inside the snapshot: digests equal after its file changed")
		}
	})
}

// TestDigestIgnoresWhereAndWhen: what says where or when an app is
// delivered, or who hears of it (an environment's kubeconfigSecret,
// notifications, change windows), is not part of its input digest: adding
// them does not make every app render again. What it delivers is: the
// app's values.
func TestDigestIgnoresWhereAndWhen(t *testing.T) {
	t.Parallel()
	const base = `apiVersion: deliver.dev/v1alpha1
kind: Config
environments:
  prod:
    context: prod
apps:
- {name: web, namespace: shop, helm: {chart: charts/web, values: {replicas: 2}}}
`
	digest := func(t *testing.T, yaml string, o Options) string {
		t.Helper()
		c, err := config.Parse("deliver.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.ForEnvironment("prod")
		if err != nil {
			t.Fatal(err)
		}
		d, err := appDigest(context.Background(), &o, nil, nil, r.Apps[0], nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	want := digest(t, base, Options{})
	for _, tt := range []struct {
		name, yaml string
		same       bool
	}{
		{"kubeconfigSecret", strings.Replace(base, "    context: prod\n", "    context: prod\n    kubeconfigSecret: {name: prod-kubeconfig}\n", 1), true},
		{"notifications", base + "notifications:\n- {name: hook, type: webhook, address: https://audit.example/deliver}\n", true},
		{"windows", base + "windows:\n- {kind: deny, schedule: \"0 18 * * 5\", duration: 60h}\n", true},
		{"values", strings.Replace(base, "replicas: 2", "replicas: 3", 1), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := digest(t, tt.yaml, Options{}); (got == want) != tt.same {
				t.Errorf("digest %s, base %s: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
}

// TestUncertainInputsNotRecorded: an app whose render depended on what
// its recorded paths cannot see (a chart at a version range, a remote
// file, a secret of a backend without versions: render.Reads.Uncertain)
// records no inputs after a successful apply, so that the next run renders
// it; the app next to it, whose reads cover its render, records them.
func TestUncertainInputsNotRecorded(t *testing.T) {
	t.Parallel()
	repo := gitserver.NewRepo(t, t.TempDir())
	repo.WriteFile("a/cm.yaml", "kind: ConfigMap\n")
	repo.WriteFile("b/cm.yaml", "kind: ConfigMap\n")
	repo.CommitAll("first")
	snap, err := source.Fetch(context.Background(), source.Options{URL: repo.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Dirty() {
		t.Fatal("the snapshot of a clean checkout is dirty: nothing would be recorded")
	}
	certain, uncertain := &render.Reads{}, &render.Reads{}
	certain.Add(render.ReadFile, "a/cm.yaml")
	uncertain.Add(render.ReadFile, "b/cm.yaml")
	uncertain.Uncertain(`chart app from https://charts.example at a version that is not exact ("~1")`)
	apps := []*AppResult{
		{Name: "a", app: config.ResolvedApp{App: config.App{Name: "a"}}, reads: certain},
		{Name: "b", app: config.ResolvedApp{App: config.App{Name: "b"}}, reads: uncertain},
	}
	opts := Options{}
	opts.defaults()
	recordInputs(context.Background(), &opts, snap, nil, nil, apps)
	if apps[0].inputs == nil || !slices.Equal(apps[0].inputs.Paths, []string{"f:a/cm.yaml"}) {
		t.Errorf("app a: inputs %+v, want its one read recorded", apps[0].inputs)
	}
	if apps[1].inputs != nil {
		t.Errorf("app b, uncertain: inputs %+v recorded, want none", apps[1].inputs)
	}
}

// inputsRepo is a repository of seven apps: two of plain manifests, two
// Helm releases of one local chart with a values file each, two kustomize
// overlays of one shared base and one of another base.
func inputsRepo(t *testing.T, ns string) (*gitserver.Repo, Options) {
	t.Helper()
	files := map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: p1, namespace: NS, manifests: {path: plain/p1}}\n" +
			"- {name: p2, namespace: NS, manifests: {path: plain/p2}}\n" +
			"- {name: h1, namespace: NS, helm: {chart: charts/demo, valuesFiles: [values/h1.yaml]}}\n" +
			"- {name: h2, namespace: NS, helm: {chart: charts/demo, valuesFiles: [values/h2.yaml]}}\n" +
			"- {name: k1, namespace: NS, kustomize: {path: kust/k1}}\n" +
			"- {name: k2, namespace: NS, kustomize: {path: kust/k2}}\n" +
			"- {name: k3, namespace: NS, kustomize: {path: kust/k3}}\n",
		"plain/p1/cm.yaml":                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p1}\ndata: {v: one}\n",
		"plain/p2/cm.yaml":                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p2}\ndata: {v: one}\n",
		"charts/demo/Chart.yaml":          "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"charts/demo/values.yaml":         "color: blue\n",
		"charts/demo/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {color: {{ .Values.color | quote }}}\n",
		"values/h1.yaml":                  "color: red\n",
		"values/h2.yaml":                  "color: red\n",
		"bases/shared/kustomization.yaml": "resources: [cm.yaml]\n",
		"bases/shared/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {v: one}\n",
		"bases/other/kustomization.yaml":  "resources: [cm.yaml]\n",
		"bases/other/cm.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {v: one}\n",
		"kust/k1/kustomization.yaml":      "namePrefix: k1-\nresources: [../../bases/shared]\n",
		"kust/k2/kustomization.yaml":      "namePrefix: k2-\nresources: [../../bases/shared]\n",
		"kust/k3/kustomization.yaml":      "namePrefix: k3-\nresources: [../../bases/other]\n",
		"README.md":                       "apps\n",
	}
	for name, content := range files {
		files[name] = strings.ReplaceAll(content, "NS", ns)
	}
	return servedRepo(t, ns, files)
}

// servedRepo commits files to a new repository served by a local git
// server over HTTP, and returns it with the options of a run against the
// test cluster that follows its main branch, the inventories in ns.
func servedRepo(t *testing.T, ns string, files map[string]string) (*gitserver.Repo, Options) {
	t.Helper()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	for name, content := range files {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("first")
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{})
	opts := clusterOptions("", ns)
	opts.Repo, opts.Ref, opts.CacheDir = srv.RepoURL("deploy"), "main", filepath.Join(root, "cache")
	return repo, opts
}

// rendered returns the apps a run rendered, sorted.
func rendered(res *Result) []string {
	var out []string
	for _, a := range res.Apps {
		if !a.Unchanged {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out
}

// runRendering runs do (Diff or Apply) with o, fails the test on an error
// of the run or of one of its apps, and checks that it rendered exactly
// the apps want (sorted).
func runRendering(t *testing.T, what string, do func(context.Context, Options) (*Result, error), o Options, want []string) *Result {
	t.Helper()
	res := mustRun(t, what, do, o)
	if got := rendered(res); !slices.Equal(got, want) {
		t.Errorf("%s: rendered %v, want %v", what, got, want)
	}
	return res
}

// mustRun runs do (Render, Diff or Apply) with o and fails the test on an
// error of the run or of one of its apps.
func mustRun(t *testing.T, what string, do func(context.Context, Options) (*Result, error), o Options) *Result {
	t.Helper()
	res, err := do(context.Background(), o)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return res
}

// TestUnchangedInputsNotRendered: against a real git server and control
// plane, diff and apply render only the apps whose inputs changed since
// their last successful apply: none after a commit that changes no app
// (an unchanged app is planned from its inventory and one LIST per kind,
// no dry run), the one whose Helm values file changed, both overlays of a
// kustomize base in another folder, the one whose values in deliver.yaml
// changed. An unchanged app whose object was edited in the cluster is
// rendered and the edit reverted; --force-render renders everything.
func TestUnchangedInputsNotRendered(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	repo, opts := inputsRepo(t, ns)
	ctx := context.Background()
	all := []string{"h1", "h2", "k1", "k2", "k3", "p1", "p2"}

	run := func(what string, do func(context.Context, Options) (*Result, error), o Options, want []string) *Result {
		t.Helper()
		return runRendering(t, what, do, o, want)
	}
	commit := func(files map[string]string) {
		t.Helper()
		for name, content := range files {
			repo.WriteFile(name, content)
		}
		repo.CommitAll("change")
	}

	run("first apply", Apply, opts, all)
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := map[string][]string{
		"h1": {"f:values/h1.yaml", "f:charts/demo/templates/cm.yaml", "d:charts/demo/templates"},
		"k1": {"f:bases/shared/cm.yaml", "f:kust/k1/kustomization.yaml"},
		"p1": {"f:plain/p1/cm.yaml"},
	}
	for app, want := range wantPaths {
		inv, err := mgr.ReadInventory(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Inputs == nil || !strings.HasPrefix(inv.Inputs.Digest, "sha256:") {
			t.Fatalf("inventory of %s: inputs %+v, want a digest", app, inv.Inputs)
		}
		for _, p := range want {
			if !slices.Contains(inv.Inputs.Paths, p) {
				t.Errorf("inventory of %s: paths %v lack %s", app, inv.Inputs.Paths, p)
			}
		}
		if slices.Contains(inv.Inputs.Paths, "f:README.md") || slices.Contains(inv.Inputs.Paths, "f:deliver.yaml") {
			t.Errorf("inventory of %s: paths %v hold files the render did not read", app, inv.Inputs.Paths)
		}
	}

	// A commit that changes no app's inputs.
	commit(map[string]string{"README.md": "apps, more\n"})
	res := run("diff, nothing changed", Diff, opts, nil)
	if res.HasChanges() {
		t.Error("diff with nothing changed has changes")
	}
	for _, a := range res.Apps {
		if a.Plan == nil || a.Plan.DryRuns != 0 || len(a.Plan.Changes) != 1 || a.Plan.Changes[0].Type != apply.ChangeUnchanged {
			t.Errorf("app %s: plan %+v, want one unchanged object and no dry run", a.Name, a.Plan)
		}
	}
	res = run("apply, nothing changed", Apply, opts, nil)
	for _, a := range res.Apps {
		if a.Report == nil || a.Report.Count(apply.Unchanged) != 1 {
			t.Errorf("app %s: report %+v, want one unchanged object", a.Name, a.Report)
		}
	}

	// A Helm values file of one app, and a plain manifest of another.
	commit(map[string]string{"values/h1.yaml": "color: green\n", "plain/p2/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p2}\ndata: {v: two}\n"})
	res = run("diff, values file", Diff, opts, []string{"h1", "p2"})
	if !res.HasChanges() {
		t.Error("diff of a changed values file has no changes")
	}
	run("apply, values file", Apply, opts, []string{"h1", "p2"})
	if got := cmData(t, ns, "h1")["color"]; got != "green" {
		t.Errorf("h1 color = %q, want green", got)
	}

	// A kustomize base in another folder, shared by two overlays.
	commit(map[string]string{"bases/shared/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {v: two}\n"})
	run("apply, shared base", Apply, opts, []string{"k1", "k2"})
	if cmData(t, ns, "k1-shared")["v"] != "two" || cmData(t, ns, "k2-shared")["v"] != "two" {
		t.Error("the shared base's change was not applied to both overlays")
	}

	// A value of one app in deliver.yaml.
	data, err := os.ReadFile(filepath.Join(repo.Dir, "deliver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	commit(map[string]string{"deliver.yaml": strings.Replace(string(data), "valuesFiles: [values/h2.yaml]}", "valuesFiles: [values/h2.yaml], values: {color: white}}", 1)})
	run("apply, value in deliver.yaml", Apply, opts, []string{"h2"})
	if got := cmData(t, ns, "h2")["color"]; got != "white" {
		t.Errorf("h2 color = %q, want white", got)
	}

	// An edit in the cluster of an app whose inputs did not change.
	_, err = env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "p1", types.MergePatchType, []byte(`{"data":{"v":"edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	res = run("diff, drift", Diff, opts, []string{"p1"})
	if !res.HasChanges() {
		t.Error("diff of an edited object has no changes")
	}
	run("apply, drift", Apply, opts, []string{"p1"})
	if got := cmData(t, ns, "p1")["v"]; got != "one" {
		t.Errorf("p1 v = %q after apply, want the edit reverted to one", got)
	}

	// A run that fails before writing (the server refuses the object)
	// leaves the record of the last success, which still describes the
	// cluster: going back to its inputs needs no render.
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p2}\ndata: {v: two}\n"
	before, err := mgr.ReadInventory(ctx, "p2")
	if err != nil {
		t.Fatal(err)
	}
	commit(map[string]string{"plain/p2/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\ndata: {v: two}\n"})
	if res, err := Apply(ctx, opts); err != nil || res.Err() == nil || !strings.Contains(res.Err().Error(), "Not_Valid") {
		t.Fatalf("apply of an invalid object: err %v, want p2 failed naming it", err)
	}
	after, err := mgr.ReadInventory(ctx, "p2")
	if err != nil || after.Inputs == nil || after.Inputs.Digest != before.Inputs.Digest || after.Result != apply.ResultSucceeded {
		t.Fatalf("inventory of p2 after a failed plan: %+v, %v; want the last success's", after, err)
	}
	commit(map[string]string{"plain/p2/cm.yaml": good})
	run("apply back at the last success's inputs", Apply, opts, nil)
	if got := cmData(t, ns, "p2")["v"]; got != "two" {
		t.Errorf("p2 v = %q, want two", got)
	}

	// Forced.
	forced := opts
	forced.ForceRender = true
	run("diff, forced", Diff, forced, all)
	full := opts
	full.FullDryRun = true
	run("diff, full dry run", Diff, full, all)
}

func cmData(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ConfigMap %s: %v", name, err)
	}
	return cm.Data
}
