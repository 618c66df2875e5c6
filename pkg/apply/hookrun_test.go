package apply_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// withHooks moves objects carrying a hook annotation into Set.Hooks, as the
// renderers do.
func withHooks(set *object.Set) *object.Set {
	out := &object.Set{}
	for _, o := range set.Objects {
		ann := o.GetAnnotations()
		if ann[apply.AnnotationHook] != "" || ann["helm.sh/hook"] != "" || ann["argocd.argoproj.io/hook"] != "" {
			out.Hooks = append(out.Hooks, o)
		} else {
			out.Objects = append(out.Objects, o)
		}
	}
	return out
}

// app is a config, a web Deployment reading it, and a migration Job.
func app(image, dbPassword, hookAnnotations, jobLabels string) string {
	r := strings.NewReplacer("IMAGE", image, "PASSWORD", dbPassword, "HOOKANN", hookAnnotations, "JOBLABELS", jobLabels)
	return r.Replace(`
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: NS}
stringData: {password: "PASSWORD"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: IMAGE
        envFrom: [{secretRef: {name: db}}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: NS
  annotations: HOOKANN
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: JOBLABELS
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: IMAGE
        command: [rake, db:migrate]
        envFrom: [{secretRef: {name: db}}]
`)
}

const preApply = `{deliver.dev/hook: pre-apply}`

func hookRuns(p *apply.Plan) map[string]string {
	out := map[string]string{}
	for _, h := range p.Hooks {
		out[h.ID.Name] = h.Reason
	}
	return out
}

func TestMigrationHookOrderAndRunOnlyWhenNeeded(t *testing.T) {
	for _, tt := range []struct{ name, ann string }{
		{"deliver", preApply},
		{"helm", `{helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-weight: "-5"}`},
		{"argo", `{argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/sync-wave: "1"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{})
			opts := apply.PlanOptions{App: ns, Wait: true}
			set := func(image, pw string) *object.Set {
				return withHooks(objects(t, ns, app(image, pw, tt.ann, "{app: migrate}")))
			}
			rep, err := m.Apply(ctx, set("app:1", "pw1"), opts)
			if err != nil {
				t.Fatal(err)
			}
			cs := env.Client()
			job, err := cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The migration sees the new Secret and ends before the workload exists.
			if job.Status.Succeeded != 1 || job.CreationTimestamp.Before(&sec.CreationTimestamp) || dep.CreationTimestamp.Before(job.Status.CompletionTime) {
				t.Errorf("order: secret %v, job %v done %v (succeeded %d), deployment %v",
					sec.CreationTimestamp, job.CreationTimestamp, job.Status.CompletionTime, job.Status.Succeeded, dep.CreationTimestamp)
			}
			var order []string
			for _, r := range rep.Results {
				order = append(order, string(r.Action)+" "+r.ID.Kind)
			}
			if diff := cmp.Diff([]string{"created Secret", "hook-ran Job", "created Deployment"}, order); diff != "" {
				t.Errorf("report order (-want +got):\n%s", diff)
			}

			for _, step := range []struct {
				image, pw, want string
				run             bool
			}{
				{"app:1", "pw1", "unchanged since its last successful run", false},
				{"app:2", "pw1", "spec or referenced config changed", true},
				{"app:2", "pw2", "spec or referenced config changed", true}, // new credentials
				{"app:2", "pw2", "unchanged since its last successful run", false},
			} {
				p, err := m.Plan(ctx, set(step.image, step.pw), opts)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(map[string]string{"migrate": step.want}, hookRuns(p)); diff != "" || p.Hooks[0].Run != step.run {
					t.Errorf("%s/%s: hook plan (-want +got):\n%s", step.image, step.pw, diff)
				}
				var out bytes.Buffer
				_ = p.WriteDiff(&out, apply.DiffOptions{})
				if !strings.Contains(out.String(), "hook Job/"+ns+"/migrate (pre-apply") {
					t.Errorf("diff does not show the hook plan:\n%s", out.String())
				}
				if strings.Contains(out.String(), step.pw) {
					t.Errorf("diff leaks the password:\n%s", out.String())
				}
				if _, err := m.Execute(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestFailingMigrationKeepsOldVersion(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Wait: true}
	if _, err := m.Apply(ctx, withHooks(objects(t, ns, app("app:1", "pw", preApply, "{app: migrate}"))), opts); err != nil {
		t.Fatal(err)
	}
	notify := `
---
apiVersion: batch/v1
kind: Job
metadata: {name: notify, namespace: NS, annotations: {deliver.dev/hook: on-failure}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: notify, image: curl}]
`
	v2 := app("app:2", "pw", preApply, "{app: migrate, "+testenv.FailLabel+": \"true\"}") + notify
	_, err := m.Apply(ctx, withHooks(objects(t, ns, v2)), opts)
	for _, want := range []string{"hook Job/" + ns + "/migrate", "Job failed", "exited 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to contain %q", err, want)
		}
	}
	cs := env.Client()
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "app:1" || dep.Status.AvailableReplicas != 2 {
		t.Errorf("old version not kept: image %s, available %d", img, dep.Status.AvailableReplicas)
	}
	n, err := cs.BatchV1().Jobs(ns).Get(ctx, "notify", metav1.GetOptions{})
	if err != nil || n.Status.Succeeded != 1 {
		t.Errorf("on-failure hook did not run: %v, status %+v", err, n.Status)
	}
	inv, _ := m.ReadInventory(ctx, ns)
	if inv.Result != apply.ResultFailed {
		t.Errorf("inventory result %s, want failed", inv.Result)
	}
}

func TestHookTimeout(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	ann := `{deliver.dev/hook: pre-apply, deliver.dev/hook-timeout: 2s}`
	_, err := m.Apply(ctx, withHooks(objects(t, ns, app("app:1", "pw", ann, "{app: migrate, "+testenv.NeverReadyLabel+": \"true\"}"))), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "hook Job/"+ns+"/migrate") || !strings.Contains(err.Error(), "not ready after 2s") {
		t.Fatalf("error = %v, want a hook timeout naming the Job", err)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err == nil {
		t.Error("the Deployment was created although the migration timed out")
	}
}

// TestRecreate watches Pods during the apply: while the migration Pod
// exists, no Pod of the web Deployment may.
func TestRecreate(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Wait: true, Strategy: apply.Recreate}
	if _, err := m.Apply(ctx, withHooks(objects(t, ns, app("app:1", "pw", preApply, "{app: migrate}"))), opts); err != nil {
		t.Fatal(err)
	}
	var (
		violation string
		sawMig    bool
	)
	stop := watchPods(t, ns, func(n map[string]int) {
		if n["migrate"] > 0 {
			sawMig = true
			if n["web"] > 0 && violation == "" {
				violation = "a web Pod ran beside the migration Pod"
			}
		}
	})
	p, err := m.Plan(ctx, withHooks(objects(t, ns, app("app:2", "pw", preApply, "{app: migrate}"))), opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]object.ID{{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "web"}}, p.ScaleDown); diff != "" {
		t.Errorf("scale-down plan (-want +got):\n%s", diff)
	}
	if _, err := m.Execute(ctx, p); err != nil {
		t.Fatal(err)
	}
	stop()
	if violation != "" || !sawMig {
		t.Errorf("violation %q, saw migration pod %v", violation, sawMig)
	}
	dep, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Template.Spec.Containers[0].Image != "app:2" || dep.Status.AvailableReplicas != 2 || dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("after recreate: image %s, available %d, strategy %s", dep.Spec.Template.Spec.Containers[0].Image, dep.Status.AvailableReplicas, dep.Spec.Strategy.Type)
	}

	// A failed migration brings the old version back.
	_, err = m.Apply(ctx, withHooks(objects(t, ns, app("app:3", "pw", preApply, "{app: migrate, "+testenv.FailLabel+": \"true\"}"))), opts)
	if err == nil {
		t.Fatal("failing migration succeeded")
	}
	if err := m.Wait(ctx, []*object.Object{objects(t, ns, app("app:2", "pw", preApply, "{}")).Objects[1]}); err != nil {
		t.Fatal(err)
	}
	dep, _ = env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if dep.Spec.Template.Spec.Containers[0].Image != "app:2" || *dep.Spec.Replicas != 2 {
		t.Errorf("after failed migration: image %s replicas %d, want app:2 with 2 back", dep.Spec.Template.Spec.Containers[0].Image, *dep.Spec.Replicas)
	}
	inv, _ := m.ReadInventory(ctx, ns)
	if len(inv.ScaledDown) != 0 {
		t.Errorf("inventory still records scaled-down workloads: %+v", inv.ScaledDown)
	}
	_ = time.Second
}

// TestPodHookMustFinish: a hook Pod is a task; running and ready is not
// done, and a failed one fails the run with its exit code.
func TestPodHookMustFinish(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	pod := func(labels string) *object.Set {
		return withHooks(objects(t, ns, cms("a=1")+"\n---\n"+strings.ReplaceAll(`
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: NS
  labels: LABELS
  annotations: {deliver.dev/hook: pre-apply, deliver.dev/hook-timeout: 2s}
spec:
  restartPolicy: Never
  containers: [{name: smoke, image: curl}]
`, "LABELS", labels)))
	}
	_, err := m.Apply(ctx, pod("{}"), apply.PlanOptions{App: ns})
	for _, want := range []string{"hook Pod/" + ns + "/smoke", "not ready after 2s", "Pod running"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("running Pod hook: error = %v, want it to contain %q", err, want)
		}
	}
	_, err = m.Apply(ctx, pod(`{`+testenv.FailLabel+`: "true"}`), apply.PlanOptions{App: ns})
	for _, want := range []string{"hook Pod/" + ns + "/smoke", "Pod failed", "exited 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("failed Pod hook: error = %v, want it to contain %q", err, want)
		}
	}
}

// TestHookRemovedFromGit: the run a hook kept is deleted once the hook
// leaves git, and the inventory forgets it.
func TestHookRemovedFromGit(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns}
	set := withHooks(objects(t, ns, app("app:1", "pw", preApply, "{app: migrate}")))
	if _, err := m.Apply(ctx, set, opts); err != nil {
		t.Fatal(err)
	}
	set = withHooks(objects(t, ns, app("app:1", "pw", preApply, "{app: migrate}")))
	set.Hooks = nil
	p, err := m.Plan(ctx, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = p.WriteDiff(&out, apply.DiffOptions{})
	if want := "hook Job/" + ns + "/migrate left git: its last run will be deleted"; !strings.Contains(out.String(), want) {
		t.Errorf("diff lacks %q:\n%s", want, out.String())
	}
	rep, err := m.Execute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep)["Job/"+ns+"/migrate"]; got != apply.Deleted {
		t.Errorf("migrate: %s, want deleted: %+v", got, rep.Results)
	}
	if j, err := env.Client().BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
		t.Error("the migration Job is still there")
	}
	inv, _ := m.ReadInventory(ctx, ns)
	if len(inv.Hooks) != 0 {
		t.Errorf("inventory still records %+v", inv.Hooks)
	}
}

// watchPods follows the Pods of ns while a test runs and calls onChange
// with the number of Pods per app label after every event; a finished
// migration Pod runs no code and is not counted. The returned stop ends
// the watch; onChange's state may be read once stop has returned.
func watchPods(t *testing.T, ns string, onChange func(n map[string]int)) (stop func()) {
	t.Helper()
	w, err := env.Client().CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]string{} // pod name -> app label
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
			if ev.Type == watch.Deleted || (finished && pod.Labels["app"] == "migrate") {
				delete(live, pod.Name)
			} else {
				live[pod.Name] = pod.Labels["app"]
			}
			n := map[string]int{}
			for _, a := range live {
				n[a]++
			}
			onChange(n)
		}
	}()
	return func() {
		w.Stop()
		<-done
	}
}

// generatedJobs returns the names of the Jobs of ns that are runs of a
// hook named by generateName, sorted.
func generatedJobs(t *testing.T, ns string) []string {
	t.Helper()
	jobs, err := env.Client().BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: apply.LabelHookID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs.Items {
		if j.GenerateName != "migrate-" || !strings.HasPrefix(j.Name, "migrate-") || j.Labels[apply.LabelApp] != ns {
			t.Errorf("Job %s: generateName %q, labels %v", j.Name, j.GenerateName, j.Labels)
		}
		if j.Status.Succeeded != 1 {
			t.Errorf("Job %s did not complete: %+v", j.Name, j.Status)
		}
		out = append(out, j.Name)
	}
	slices.Sort(out)
	return out
}

// TestGenerateNameHook: a migration Job named by generateName (as in Argo
// CD's helm-hooks and sync-waves examples) runs before the workload, does
// not run again while its inputs are unchanged, and on a change runs as a
// new Job once the earlier one is gone; hook-succeeded deletes it after
// success, a failed run names the Job it created, and once the hook leaves
// git its last run is deleted.
func TestGenerateNameHook(t *testing.T) {
	for _, tt := range []struct{ name, ann, keep, succeeded string }{
		{"helm", `{helm.sh/hook: "pre-install,pre-upgrade"}`, `{helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-delete-policy: before-hook-creation}`, `{helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-delete-policy: "before-hook-creation,hook-succeeded"}`},
		{"argo", `{argocd.argoproj.io/hook: PreSync}`, `{argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: BeforeHookCreation}`, `{argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: HookSucceeded}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{})
			opts := apply.PlanOptions{App: ns, Wait: true}
			set := func(image, ann, jobLabels string) *object.Set {
				manifest := strings.Replace(app(image, "pw", ann, jobLabels), "  name: migrate\n", "  generateName: migrate-\n", 1)
				if !strings.Contains(manifest, "generateName: migrate-") {
					t.Fatal("the test's manifest has no migrate Job to rename")
				}
				return withHooks(objects(t, ns, manifest))
			}
			hookID := object.ID{Group: "batch", Kind: "Job", Namespace: ns, Name: "migrate-*"}

			rep, err := m.Apply(ctx, set("app:1", tt.ann, "{app: migrate}"), opts)
			if err != nil {
				t.Fatal(err)
			}
			first := generatedJobs(t, ns)
			if len(first) != 1 {
				t.Fatalf("after the first apply: Jobs %v, want one", first)
			}
			var order []string
			for _, r := range rep.Results {
				order = append(order, string(r.Action)+" "+r.ID.String())
			}
			want := []string{"created Secret/" + ns + "/db", "hook-ran Job/" + ns + "/migrate-*", "created Deployment/" + ns + "/web"}
			if diff := cmp.Diff(want, order); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			job, err := env.Client().BatchV1().Jobs(ns).Get(ctx, first[0], metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dep, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if job.Status.CompletionTime == nil || dep.CreationTimestamp.Before(job.Status.CompletionTime) {
				t.Errorf("the Deployment (%v) was created before the migration ended (%v)", dep.CreationTimestamp, job.Status.CompletionTime)
			}

			// Unchanged: planned not to run, and not run.
			p, err := m.Plan(ctx, set("app:1", tt.keep, "{app: migrate}"), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Hooks) != 1 || p.Hooks[0].ID != hookID || p.Hooks[0].Run || p.Hooks[0].Reason != "unchanged since its last successful run" {
				t.Fatalf("hook plan with unchanged inputs: %+v", p.Hooks)
			}
			var out bytes.Buffer
			_ = p.WriteDiff(&out, apply.DiffOptions{})
			if want := "hook Job/" + ns + "/migrate-* (pre-apply, weight 0) will not run"; !strings.Contains(out.String(), want) {
				t.Errorf("diff lacks %q:\n%s", want, out.String())
			}
			if _, err := m.Execute(ctx, p); err != nil {
				t.Fatal(err)
			}
			if got := generatedJobs(t, ns); !slices.Equal(got, first) {
				t.Errorf("after an apply with unchanged inputs: Jobs %v, want %v", got, first)
			}

			// Changed: a new Job, the earlier one deleted before it.
			p, err = m.Plan(ctx, set("app:2", tt.keep, "{app: migrate}"), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Hooks) != 1 || !p.Hooks[0].Run || p.Hooks[0].Reason != "spec or referenced config changed" {
				t.Fatalf("hook plan with a new image: %+v", p.Hooks)
			}
			if _, err := m.Execute(ctx, p); err != nil {
				t.Fatal(err)
			}
			second := generatedJobs(t, ns)
			if len(second) != 1 || second[0] == first[0] {
				t.Fatalf("after a change: Jobs %v, want one other than %v", second, first)
			}
			inv, err := m.ReadInventory(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Hooks) != 1 || inv.Hooks[0].ID != hookID {
				t.Errorf("inventory hooks %+v, want one record of %s", inv.Hooks, hookID)
			}

			// hook-succeeded: the earlier run and this one are deleted.
			if _, err := m.Apply(ctx, set("app:3", tt.succeeded, "{app: migrate}"), opts); err != nil {
				t.Fatal(err)
			}
			if got := generatedJobs(t, ns); len(got) != 0 {
				t.Errorf("after a run under hook-succeeded: Jobs %v, want none", got)
			}

			// A failed run names the Job it created; it is kept for
			// inspection.
			_, err = m.Apply(ctx, set("app:4", tt.keep, "{app: migrate, "+testenv.FailLabel+`: "true"}`), opts)
			for _, want := range []string{"hook Job/" + ns + "/migrate-*: Job/" + ns + "/migrate-", "Job failed", "exited 1"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("failed run: error = %v, want it to contain %q", err, want)
				}
			}
			jobs, err := env.Client().BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: apply.LabelHookID})
			if err != nil || len(jobs.Items) != 1 || jobs.Items[0].Status.Failed == 0 {
				t.Fatalf("after a failed run: %v, %+v; want the failed Job", err, jobs)
			}

			// The next run replaces the failed one; once the hook leaves
			// git, its last run goes too.
			if _, err := m.Apply(ctx, set("app:5", tt.keep, "{app: migrate}"), opts); err != nil {
				t.Fatal(err)
			}
			last := generatedJobs(t, ns)
			if len(last) != 1 || last[0] == jobs.Items[0].Name {
				t.Fatalf("after a run that followed a failed one: Jobs %v, want one other than %s", last, jobs.Items[0].Name)
			}
			gone := set("app:5", tt.keep, "{app: migrate}")
			gone.Hooks = nil
			rep, err = m.Apply(ctx, gone, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(rep)["Job/"+ns+"/"+last[0]]; got != apply.Deleted {
				t.Errorf("%s: %s, want deleted: %+v", last[0], got, rep.Results)
			}
			if j, err := env.Client().BatchV1().Jobs(ns).Get(ctx, last[0], metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
				t.Error("the last run is still there after its hook left git")
			}
			if inv, _ := m.ReadInventory(ctx, ns); len(inv.Hooks) != 0 {
				t.Errorf("inventory still records %+v", inv.Hooks)
			}
		})
	}
}
