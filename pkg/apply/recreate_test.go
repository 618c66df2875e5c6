package apply_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// recreateWeb is a Deployment web of the recreate strategy; REPLICAS is
// its spec.replicas line (or nothing), LABELS its own labels, IMAGE the
// image.
func recreateWeb(replicas, labels, image string) string {
	return strings.NewReplacer("REPLICAS", replicas, "LABELS", labels, "IMAGE", image).Replace(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS, labels: LABELS}
spec:
  REPLICAS
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: IMAGE
`)
}

// webPods returns the names of the running web Pods, sorted, once the
// Deployment has want ready replicas of its latest generation.
func webPods(t *testing.T, ns string, want int32) []string {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	var names []string
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "web rolled out", func() bool {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != want || d.Status.Replicas != want {
			return false
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false
		}
		names = names[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				names = append(names, p.Name)
			}
		}
		return len(names) == int(want)
	})
	slices.Sort(names)
	return names
}

// scaleWeb scales the Deployment as kubectl scale does.
func scaleWeb(t *testing.T, ns string, replicas int32) {
	t.Helper()
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	if _, err := env.Client().AppsV1().Deployments(ns).UpdateScale(context.Background(), "web", s, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
}

// TestRecreateOnlyForANewTemplate: with the recreate strategy, a change
// that starts no new Pods (a kubectl scale reverted, a label of the
// Deployment) is applied in place, without scaling to zero; a new pod
// template still stops the old Pods first.
func TestRecreateOnlyForANewTemplate(t *testing.T) {
	t.Parallel()
	const (
		git     = "replicas: 2"
		labels  = "{tier: web}"
		image   = "registry.example/web:1.0"
		inPlace = true
	)
	for _, tc := range []struct {
		name string
		// change is made in the cluster (scale) and in git (manifest).
		scale    int32
		manifest string
		inPlace  bool
	}{
		{name: "scaled out of band", scale: 4, manifest: recreateWeb(git, labels, image), inPlace: inPlace},
		{name: "label of the Deployment", manifest: recreateWeb(git, "{tier: web, team: shop}", image), inPlace: inPlace},
		{name: "annotation and replicas in git", manifest: strings.Replace(recreateWeb("replicas: 3", labels, image), "labels: {tier: web}", "labels: {tier: web}, annotations: {owner: shop}", 1), inPlace: inPlace},
		{name: "new image", manifest: recreateWeb(git, labels, "registry.example/web:2.0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{})
			opts := apply.PlanOptions{App: ns, Strategy: apply.Recreate, Wait: true}
			if _, err := m.Apply(ctx, objects(t, ns, recreateWeb(git, labels, image)), opts); err != nil {
				t.Fatal(err)
			}
			before := webPods(t, ns, 2)
			if tc.scale != 0 {
				scaleWeb(t, ns, tc.scale)
				before = webPods(t, ns, tc.scale)
			}
			// The watch starts with an event per Pod: count from when
			// it has seen them all.
			fewest, seenAll := len(before), false
			stop := watchPods(t, ns, func(n map[string]int) {
				seenAll = seenAll || n["web"] >= len(before)
				if seenAll {
					fewest = min(fewest, n["web"])
				}
			})
			p, err := m.Plan(ctx, objects(t, ns, tc.manifest), opts)
			if err != nil {
				t.Fatal(err)
			}
			web := object.ID{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "web"}
			if got := changes(p)[web.String()]; got != apply.ChangeUpdate {
				t.Errorf("plan: %s, want an update", got)
			}
			var wantScaleDown []object.ID
			if !tc.inPlace {
				wantScaleDown = []object.ID{web}
			}
			if diff := cmp.Diff(wantScaleDown, p.ScaleDown); diff != "" {
				t.Errorf("scale-down plan (-want +got):\n%s", diff)
			}
			var out bytes.Buffer
			if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(out.String(), "will be scaled to 0 before the pre-apply hooks (recreate: its pod template changes)"); got == tc.inPlace {
				t.Errorf("diff says scaled to 0: %v, want %v:\n%s", got, !tc.inPlace, out.String())
			}
			rep, err := m.Execute(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			after := webPods(t, ns, *d.Spec.Replicas)
			stop()
			if tc.inPlace {
				if n := rep.Count(apply.ScaledDown); n != 0 {
					t.Errorf("report has %d scaled-down workloads, want none: %+v", n, rep.Results)
				}
				// No Pod of the old version stopped but for the
				// replicas scaled away, and none started but for
				// those added.
				if kept := len(slices.DeleteFunc(slices.Clone(after), func(n string) bool { return !slices.Contains(before, n) })); kept != min(len(before), len(after)) {
					t.Errorf("Pods before %v, after %v: want the old ones kept", before, after)
				}
				if fewest < min(len(before), len(after)) {
					t.Errorf("web Pods fell to %d during the apply, want at least %d", fewest, min(len(before), len(after)))
				}
			} else {
				if n := rep.Count(apply.ScaledDown); n != 1 {
					t.Errorf("report has %d scaled-down workloads, want 1: %+v", n, rep.Results)
				}
				if fewest != 0 || slices.ContainsFunc(after, func(n string) bool { return slices.Contains(before, n) }) {
					t.Errorf("Pods before %v, after %v, fewest during the apply %d: want all replaced, none left between", before, after, fewest)
				}
			}
			wantReplicas := int32(2)
			if strings.Contains(tc.manifest, "replicas: 3") {
				wantReplicas = 3
			}
			if *d.Spec.Replicas != wantReplicas {
				t.Errorf("replicas %d, want git's %d", *d.Spec.Replicas, wantReplicas)
			}
			if strings.Contains(tc.manifest, "team: shop") && d.Labels["team"] != "shop" {
				t.Errorf("labels %v, want team=shop applied", d.Labels)
			}
		})
	}
}

// patchBodies records the bodies of the PATCH requests to one namespace's
// Deployments that a Manager sends.
type patchBodies struct {
	mu     sync.Mutex
	bodies []string
}

func (pb *patchBodies) config(ns string) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPatch && strings.Contains(req.URL.Path, "/namespaces/"+ns+"/deployments/") && req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				var b strings.Builder
				_, _ = io.Copy(&b, body)
				pb.mu.Lock()
				pb.bodies = append(pb.bodies, req.URL.Path+" dryRun="+req.URL.Query().Get("dryRun")+"\n"+b.String())
				pb.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

func (pb *patchBodies) take() []string {
	pb.mu.Lock()
	defer pb.mu.Unlock()
	out := pb.bodies
	pb.bodies = nil
	return out
}

// hpa is a HorizontalPodAutoscaler of web; without metrics in the test
// cluster it leaves a replica count between its bounds alone.
const hpa = `
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: NS}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
`

// TestReplicasNotDelivers: the replica count of a Deployment that an
// autoscaler targets, or whose manifest sets none, is not deliver's: a
// scale made in the cluster shows no change in the plan, is not
// reverted, and (recreate strategy) stops no Pod; deliver sends no
// spec.replicas for an autoscaled Deployment whose manifest sets one.
func TestReplicasNotDelivers(t *testing.T) {
	t.Parallel()
	const image = "registry.example/web:1.0"
	for _, tc := range []struct {
		name     string
		manifest string
		// liveHPA creates the autoscaler in the cluster, outside the app.
		liveHPA bool
	}{
		{name: "live HorizontalPodAutoscaler", manifest: recreateWeb("replicas: 2", "{}", image), liveHPA: true},
		{name: "HorizontalPodAutoscaler in git", manifest: recreateWeb("replicas: 2", "{}", image) + "\n---\n" + hpa},
		{name: "no replicas in git", manifest: recreateWeb("", "{}", image)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			var pb patchBodies
			m, err := apply.New(pb.config(ns), apply.Options{Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			opts := apply.PlanOptions{App: ns, Strategy: apply.Recreate, Wait: true}
			if tc.liveHPA {
				var h autoscalingv2.HorizontalPodAutoscaler
				if err := yaml.UnmarshalStrict([]byte(strings.ReplaceAll(hpa, "NS", ns)), &h); err != nil {
					t.Fatal(err)
				}
				if _, err := env.Client().AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, &h, metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := m.Apply(ctx, objects(t, ns, tc.manifest), opts); err != nil {
				t.Fatal(err)
			}
			for _, b := range pb.take() {
				if strings.Contains(b, `"replicas":`) {
					t.Errorf("first apply sent spec.replicas:\n%s", b)
				}
			}
			d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			webPods(t, ns, *d.Spec.Replicas)
			scaleWeb(t, ns, 3)
			before := webPods(t, ns, 3)

			p, err := m.Plan(ctx, objects(t, ns, tc.manifest), opts)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if p.HasChanges() || len(p.ScaleDown) != 0 {
				t.Errorf("plan after a scale: %s, scale down %v, want no change:\n%s", p.Summary(), p.ScaleDown, out.String())
			}
			rep, err := m.Execute(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(rep)["Deployment/"+ns+"/web"]; got != apply.Unchanged || rep.Count(apply.ScaledDown) != 0 {
				t.Errorf("report: %+v, want the Deployment unchanged", rep.Results)
			}
			if after := webPods(t, ns, 3); !cmp.Equal(before, after) {
				t.Errorf("Pods before %v, after %v: want them kept", before, after)
			}
			for _, b := range pb.take() {
				if strings.Contains(b, `"replicas":`) {
					t.Errorf("apply after the scale sent spec.replicas:\n%s", b)
				}
			}
			// A new template is applied (and, recreate, replaces the
			// Pods) with the autoscaler's count kept.
			p, err = m.Plan(ctx, objects(t, ns, strings.Replace(tc.manifest, image, "registry.example/web:2.0", 1)), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.ScaleDown) != 1 {
				t.Errorf("scale down %v, want web", p.ScaleDown)
			}
			if _, err := m.Execute(ctx, p); err != nil {
				t.Fatal(err)
			}
			if after := webPods(t, ns, 3); slices.ContainsFunc(after, func(n string) bool { return slices.Contains(before, n) }) {
				t.Errorf("Pods before %v, after the new image %v: want all replaced", before, after)
			}
		})
	}
}

// TestRecreateForAMigration: a migration that runs because its inputs
// changed (here the Secret it reads) stops the recreate workloads first,
// although their own objects did not change, and brings them back after.
func TestRecreateForAMigration(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns, Wait: true, Strategy: apply.Recreate}
	if _, err := m.Apply(ctx, withHooks(objects(t, ns, app("app:1", "pw", preApply, "{app: migrate}"))), opts); err != nil {
		t.Fatal(err)
	}
	before := webPods(t, ns, 2)
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
	set := func() *object.Set {
		return withHooks(objects(t, ns, app("app:1", "rotated", preApply, "{app: migrate}")))
	}
	p, err := m.Plan(ctx, set(), opts)
	if err != nil {
		t.Fatal(err)
	}
	web := object.ID{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "web"}
	if got := changes(p)[web.String()]; got != apply.ChangeUnchanged {
		t.Errorf("web: %s, want unchanged", got)
	}
	if diff := cmp.Diff([]object.ID{web}, p.ScaleDown); diff != "" {
		t.Errorf("scale-down plan (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := web.String() + " will be scaled to 0 before the pre-apply hooks (recreate: a pre-apply hook runs)"; !strings.Contains(out.String(), want) {
		t.Errorf("diff lacks %q:\n%s", want, out.String())
	}
	rep, err := m.Execute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	after := webPods(t, ns, 2)
	stop()
	if violation != "" || !sawMig {
		t.Errorf("violation %q, saw migration pod %v", violation, sawMig)
	}
	if rep.Count(apply.ScaledDown) != 1 || rep.Count(apply.Restored) != 1 || slices.ContainsFunc(after, func(n string) bool { return slices.Contains(before, n) }) {
		t.Errorf("report %+v; Pods before %v, after %v: want web scaled down, restored and its Pods new", rep.Results, before, after)
	}
	// The inventory knows the workload as it is now: nothing to dry-run.
	p, err = m.Plan(ctx, set(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || p.DryRuns != 0 || len(p.ScaleDown) != 0 {
		t.Errorf("plan after the migration: %s, %d dry runs, scale down %v; want no change, no dry run", p.Summary(), p.DryRuns, p.ScaleDown)
	}
}

// TestAutoscalerAddedKeepsReplicas: when an autoscaler starts to target a
// Deployment whose replica count deliver applied, deliver stops applying
// the count without the server resetting it to 1: the count stays, owned
// no longer by deliver, and the plan shows no replica change.
func TestAutoscalerAddedKeepsReplicas(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	before := autoscalerAdded(t, ns, hpa, "HorizontalPodAutoscaler")
	d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Labels["team"] != "shop" {
		t.Errorf("replicas %d, labels %v: want 2 kept and team=shop", *d.Spec.Replicas, d.Labels)
	}
	for _, f := range d.ManagedFields {
		if f.Manager == apply.DefaultFieldManager && f.FieldsV1 != nil && strings.Contains(string(f.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("deliver still owns spec.replicas: %s", f.FieldsV1.Raw)
		}
	}
	if after := webPods(t, ns, 2); !cmp.Equal(before, after) {
		t.Errorf("Pods before %v, after %v: want them kept", before, after)
	}
}

// autoscalerAdded applies the Deployment web with 2 replicas, then adds the
// autoscaler (a HorizontalPodAutoscaler or ScaledObject of kind kind,
// named web, targeting it) with a change of the Deployment's labels, so
// that the Deployment is applied too; it checks that the plan shows no
// replica change, only the note that the count is left to the
// autoscaler, and returns the Pods from before.
func autoscalerAdded(t *testing.T, ns, autoscaler, kind string) []string {
	t.Helper()
	ctx := context.Background()
	m := newManager(t, apply.Options{})
	opts := apply.PlanOptions{App: ns}
	if _, err := m.Apply(ctx, objects(t, ns, recreateWeb("replicas: 2", "{}", autoscalerImage)), opts); err != nil {
		t.Fatal(err)
	}
	if owns, _ := deliverOwnsReplicas(t, ns); !owns {
		t.Fatal("deliver does not own spec.replicas it applied: the test proves nothing")
	}
	before := webPods(t, ns, 2)
	p, err := m.Plan(ctx, objects(t, ns, recreateWeb("replicas: 2", "{team: shop}", autoscalerImage)+"\n---\n"+autoscaler), opts)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "replicas:") && (strings.HasPrefix(line, "-") || strings.HasPrefix(line, "+")) {
			t.Errorf("diff shows a replica change %q:\n%s", line, out.String())
		}
	}
	if note := "Deployment/" + ns + "/web update (spec.replicas is left to " + kind + "/" + ns + "/web)"; !strings.Contains(out.String(), note) {
		t.Errorf("diff lacks %q:\n%s", note, out.String())
	}
	if _, err := m.Execute(ctx, p); err != nil {
		t.Fatal(err)
	}
	return before
}

// autoscalerImage is the image of the web Deployment of autoscalerAdded.
const autoscalerImage = "registry.example/web:1.0"

// TestSwitchToRecreate: a running Deployment delivered with the rolling
// strategy (the server defaulted its rollingUpdate settings, which no
// manager owns) switches to Recreate, by the app's strategy or by git, in
// a plan that says so and an apply that succeeds: the strategy is
// Recreate without rollingUpdate, and no manager but deliver keeps a
// claim on it, so that switching back to rolling makes it RollingUpdate
// again.
func TestSwitchToRecreate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		strategy apply.Strategy
		manifest string
	}{
		{"the app's strategy", apply.Recreate, strings.Replace(deployment, "web:1.0", "web:2.0", 1)},
		{"git's strategy type", apply.Rolling, strings.Replace(strings.Replace(deployment, "web:1.0", "web:2.0", 1), "  replicas: 2\n", "  replicas: 2\n  strategy: {type: Recreate}\n", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{})
			if _, err := m.Apply(ctx, objects(t, ns, deployment), apply.PlanOptions{App: ns}); err != nil {
				t.Fatal(err)
			}
			strategy := func() (string, bool, []string) {
				t.Helper()
				d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				var managers []string
				for _, f := range d.ManagedFields {
					managers = append(managers, f.Manager)
				}
				return string(d.Spec.Strategy.Type), d.Spec.Strategy.RollingUpdate != nil, managers
			}
			if typ, ru, _ := strategy(); typ != "RollingUpdate" || !ru {
				t.Fatalf("before: strategy %s %v, want the defaulted RollingUpdate", typ, ru)
			}
			opts := apply.PlanOptions{App: ns, Strategy: tc.strategy}
			p, err := m.Plan(ctx, objects(t, ns, tc.manifest), opts)
			if err != nil {
				t.Fatal(err)
			}
			if c := p.Changes[0]; c.Type != apply.ChangeUpdate || !strings.Contains(c.Note, "strategy becomes Recreate") {
				t.Errorf("plan: %s %q, want an update saying the strategy becomes Recreate", c.Type, c.Note)
			}
			if _, err := m.Execute(ctx, p); err != nil {
				t.Fatal(err)
			}
			typ, ru, managers := strategy()
			if typ != "Recreate" || ru || slices.Contains(managers, "deliver-strategy") {
				t.Errorf("after: strategy %s %v, managers %v; want Recreate alone, and no deliver-strategy", typ, ru, managers)
			}
			// Back to rolling: git and the app say nothing of a strategy.
			if _, err := m.Apply(ctx, objects(t, ns, deployment), apply.PlanOptions{App: ns}); err != nil {
				t.Fatal(err)
			}
			if typ, _, _ := strategy(); typ != "RollingUpdate" {
				t.Errorf("back to rolling: strategy %s, want RollingUpdate", typ)
			}
		})
	}
}
