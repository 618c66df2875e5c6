package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	corev1 "k8s.io/api/core/v1"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// The apps rows measure many small apps in one repository, in the shape of
// Flux's own benchmark (fluxcd/flux-benchmark): each app is a
// ServiceAccount, a headless Service, a Deployment scaled to zero and an
// Ingress, in a folder of its own; the apps are spread over ten
// namespaces; one deliver.yaml lists them all. Every deliver command runs
// as users run it, waiting for readiness.

// appsNamespaces is how many namespaces the apps of a repository share.
const appsNamespaces = 10

// appsChanged is how many apps the change rows edit in one commit.
const appsChanged = 10

// appsRepo is one generated repository of the apps rows. Each first
// delivery gets a repository of its own, so that it starts from empty
// namespaces and an empty inventory.
type appsRepo struct {
	// Name is a DNS label: the repository's folder under the served
	// root, the prefix of its namespaces and of its inventory namespace.
	Name string
	Dir  string
	N    int
	gen  []int // per app: revision of its Deployment's pod template
}

func appName(i int) string { return fmt.Sprintf("app-%04d", i) }

// namespace is app i's namespace.
func (r *appsRepo) namespace(i int) string { return fmt.Sprintf("%s-%d", r.Name, i%appsNamespaces) }

// inventory is the namespace of deliver's inventory for this repository:
// a namespace per repository keeps the repositories' apps, which share
// their names, apart.
func (r *appsRepo) inventory() string { return r.Name + "-deliver" }

// writeAppsRepo writes and commits a repository of n apps under root.
func writeAppsRepo(root, name string, n int) (*appsRepo, error) {
	r := &appsRepo{Name: name, Dir: filepath.Join(root, name), N: n, gen: make([]int, n)}
	var cfg strings.Builder
	cfg.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	for i := range n {
		fmt.Fprintf(&cfg, "- name: %s\n  namespace: %s\n  manifests: {path: apps/%s}\n", appName(i), r.namespace(i), appName(i))
		if err := r.write(i); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "deliver.yaml"), []byte(cfg.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write apps workload: %w", err)
	}
	return r, gitCommit(r.Dir)
}

// write writes app i's four files.
func (r *appsRepo) write(i int) error {
	name, ns := appName(i), r.namespace(i)
	dir := filepath.Join(r.Dir, "apps", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	labels := fmt.Sprintf("{app.kubernetes.io/name: %s, app.kubernetes.io/part-of: bench}", name)
	files := map[string]string{
		"serviceaccount.yaml": fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\n", name, ns, labels),
		"service.yaml":        fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  clusterIP: None\n  selector: {app: %s}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n", name, ns, labels, name),
		"deployment.yaml": fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {app: %s}\n  template:\n    metadata:\n      labels: {app: %s}\n    spec:\n      serviceAccountName: %s\n      containers:\n      - name: app\n        image: registry.example/bench/app:1.0.0\n        ports: [{name: http, containerPort: 8080}]\n        env: [{name: REVISION, value: \"%d\"}]\n        resources: {requests: {cpu: 10m, memory: 16Mi}}\n",
			name, ns, labels, name, name, name, r.gen[i]),
		"ingress.yaml": fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: %s\n  labels: %s\nspec:\n  rules:\n  - host: %s.%s.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service: {name: %s, port: {name: http}}\n", name, ns, labels, name, ns, name),
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write apps workload: %w", err)
		}
	}
	return nil
}

// change edits the Deployments of k apps spread over the repository (a new
// pod template each), commits, and returns the apps and the new commit.
func (r *appsRepo) change(k int) ([]int, string, error) {
	step := max(1, r.N/k)
	var changed []int
	for i := 0; i < r.N && len(changed) < k; i += step {
		r.gen[i]++
		if err := r.write(i); err != nil {
			return nil, "", err
		}
		changed = append(changed, i)
	}
	cmd := exec.Command("git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "-a", "--no-gpg-sign", "-m", fmt.Sprintf("change %d apps", len(changed)))
	cmd.Dir = r.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("git commit in %s: %w\n%s", r.Dir, err, out)
	}
	head, err := r.head()
	return changed, head, err
}

// head is the repository's current commit.
func (r *appsRepo) head() (string, error) {
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = r.Dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse in %s: %w", r.Dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// createNamespaces makes the repository's namespaces, outside the timing:
// neither deliver nor Flux creates the namespace of an object that does
// not list it.
func (r *appsRepo) createNamespaces(ctx context.Context, b *bench) error {
	for k := range min(appsNamespaces, r.N) {
		if err := createNamespace(ctx, b.cs, r.namespace(k)); err != nil {
			return err
		}
	}
	return nil
}

// gitHTTPBackend is where Debian installs git's smart-HTTP CGI program
// (internal/gitserver serves tests the same way; its helpers need a
// testing.TB).
const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// startGitHTTP serves the repositories under root over smart HTTP on
// loopback, as a forge would: deliver reconcile and source-controller
// fetch the same URLs.
func startGitHTTP(root string) (*httptest.Server, error) {
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		return nil, fmt.Errorf("git server: %w", err)
	}
	return httptest.NewServer(&cgi.Handler{
		Path: gitHTTPBackend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
		},
		InheritEnv: []string{"PATH"},
	}), nil
}

// appsBench holds what the apps rows of one size share.
type appsBench struct {
	*bench
	n     int
	root  string // the served folder of the repositories
	git   *httptest.Server
	repos int // repositories written so far, for their names
}

func (a *appsBench) newRepo(ctx context.Context, kind string) (*appsRepo, error) {
	a.repos++
	r, err := writeAppsRepo(a.root, fmt.Sprintf("%s%d-%d", kind, a.n, a.repos), a.n)
	if err != nil {
		return nil, err
	}
	return r, r.createNamespaces(ctx, a.bench)
}

func (a *appsBench) url(r *appsRepo) string { return a.git.URL + "/" + r.Name }

// deliverArgs are the flags of every deliver command of the apps rows.
func (a *appsBench) deliverArgs(r *appsRepo, cmd string, extra ...string) []string {
	args := append([]string{cmd, "--kubeconfig", a.cluster.Kubeconfig, "--inventory-namespace", r.inventory()}, extra...)
	return append(args, a.opts.DeliverArgs...)
}

// startApps makes the work folder of one group of rows at n apps (apps,
// steady, shards) and serves it over smart HTTP; the caller closes a.git.
func (b *bench) startApps(group string, n int) (*appsBench, error) {
	root := filepath.Join(b.opts.Dir, fmt.Sprintf("%s%d", group, n))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	git, err := startGitHTTP(root)
	if err != nil {
		return nil, err
	}
	return &appsBench{bench: b, n: n, root: root, git: git}, nil
}

// appsRows measures the apps rows at n apps.
func (b *bench) appsRows(ctx context.Context, n int) error {
	a, err := b.startApps("apps", n)
	if err != nil {
		return err
	}
	defer a.git.Close()
	objects := 4 * n

	// First apply: every run a new repository into empty namespaces, as
	// n apps and as one app of the same 4n objects.
	b.logf("bench: %d apps: first apply", n)
	var applied *appsRepo
	manyApps := func(ctx context.Context, _ int) (sample, error) {
		r, err := a.newRepo(ctx, "a")
		if err != nil {
			return sample{}, err
		}
		applied = r
		return a.clusterSample(ctx, proc{name: b.deliver, args: a.deliverArgs(r, "apply", "--path", r.Dir), env: b.env()})
	}
	oneApp := func(ctx context.Context, _ int) (sample, error) {
		r, err := a.newRepo(ctx, "o")
		if err != nil {
			return sample{}, err
		}
		return a.clusterSample(ctx, proc{name: b.deliver, args: a.deliverArgs(r, "apply", "--path", r.Dir, "-f", "apps", "--app", "all"), env: b.env()})
	}
	// What users would run instead: kubectl applies the same files and
	// waits for the Deployments, the floor any tool that waits has on this
	// control plane (the controllers' work is the same).
	kubectlApps := func(ctx context.Context, _ int) (sample, error) {
		r, err := a.newRepo(ctx, "k")
		if err != nil {
			return sample{}, err
		}
		kc := []string{"--kubeconfig", a.cluster.Kubeconfig}
		return a.clusterSample(ctx,
			proc{name: b.kubectl, args: append(kc, "apply", "--server-side", "--field-manager", "bench", "-R", "-f", filepath.Join(r.Dir, "apps")), env: b.env()},
			proc{name: b.kubectl, args: append(kc, "wait", "--for=condition=Available", "deployment", "--all", "--all-namespaces", "--timeout=10m"), env: b.env()},
		)
	}
	sides := []runFunc{manyApps, oneApp}
	if b.opts.AppsKubectl {
		sides = append(sides, kubectlApps)
	}
	got, err := b.rounds(ctx, "apps first apply", sides...)
	if err != nil {
		return err
	}
	b.report.addApps(n, objects, fmt.Sprintf("first apply, %d apps", n), measure("deliver apply", got[0]), measure(fmt.Sprintf("deliver apply -f (one app of %d objects)", objects), got[1]), "within 2x of one app")
	if b.opts.AppsKubectl {
		b.report.addApps(n, objects, fmt.Sprintf("first apply, %d apps, against kubectl", n), measure("deliver apply", got[0]), measure("kubectl apply --server-side -R, then kubectl wait --for=condition=Available deployment -A", got[2]), "under 20 s at 1,000 apps")
	} else {
		b.report.Rows[len(b.report.Rows)-1].Target = "within 2x of one app; under 20 s at 1,000 apps"
	}

	// No-change diff of what the last run of n apps applied.
	b.logf("bench: %d apps: no-change diff", n)
	diffProc := proc{name: b.deliver, args: a.deliverArgs(applied, "diff", "--path", applied.Dir), env: b.env()}
	diffs, err := b.rounds(ctx, "apps no-change diff", func(ctx context.Context, _ int) (sample, error) { return runProc(ctx, diffProc) })
	if err != nil {
		return err
	}
	b.report.addApps(n, objects, "no-change diff", measure("deliver diff", diffs[0]), Measure{}, "< 2 s, < 200 MiB at 1,000 apps")

	// A commit changing 10 apps, delivered by one reconcile --once from the
	// served repository. A first pass, untimed, clones into the cache and
	// finds everything delivered, as a CronJob's later runs do.
	b.logf("bench: %d apps: %d apps changed, reconcile --once", n, appsChanged)
	once := proc{name: b.deliver, args: a.deliverArgs(applied, "reconcile", "--once", "--repo", a.url(applied), "--ref", "main"), env: b.env(), mark: "revision"}
	if s, err := runProc(ctx, once); err != nil {
		return fmt.Errorf("apps reconcile --once (first pass): %w", err)
	} else {
		b.logf("bench: first reconcile --once (clone, nothing changed) took %s", s.Wall.Round(time.Millisecond))
	}
	onceRuns, err := b.rounds(ctx, "apps reconcile --once", func(ctx context.Context, _ int) (sample, error) {
		if _, _, err := applied.change(appsChanged); err != nil {
			return sample{}, err
		}
		return runProc(ctx, once)
	})
	if err != nil {
		return err
	}

	// The long-running reconciler: from its start to every app delivered,
	// then commits of 10 apps, each asked for at once through
	// deliver-control (as a webhook does).
	running, err := a.runningReconciler(ctx)
	if err != nil {
		return err
	}

	flux := a.fluxSide(ctx)
	b.report.addApps(n, objects, fmt.Sprintf("%d apps changed: reconcile --once", appsChanged), measure("deliver reconcile --once", onceRuns[0]), flux.change, "")
	fromFetch, err := sinceMark(onceRuns[0])
	if err != nil {
		return fmt.Errorf("apps reconcile --once: %w", err)
	}
	b.report.addApps(n, objects, fmt.Sprintf("%d apps changed: reconcile --once, from the fetched commit", appsChanged), measure("deliver reconcile --once (revision logged to exit)", fromFetch), Measure{}, "< 3 s")
	b.report.addApps(n, objects, "first delivery from git", measure("deliver reconcile (start to all applied)", running.first), flux.first, "")
	b.report.addApps(n, objects, fmt.Sprintf("%d apps changed: running reconciler", appsChanged), measure("deliver reconcile (commit to applied)", running.change), flux.change, "")
	if flux.note != "" {
		b.report.AppsNotes = append(b.report.AppsNotes, fmt.Sprintf("%d apps: %s", n, flux.note))
	}
	return nil
}

// sinceMark returns the samples timed from their mark to the process's
// exit: for reconcile --once, from the "revision" line, which the
// reconciler logs once it has fetched the commit, written its tree and read
// its deliver.yaml, to the 10 apps applied, waited for, and the process
// gone. The target of issue 18 is worded from the fetched commit.
func sinceMark(ss []sample) ([]sample, error) {
	out := make([]sample, len(ss))
	for i, s := range ss {
		if s.Mark <= 0 {
			return nil, fmt.Errorf("run %d logged no %q line", i+1, "revision")
		}
		out[i] = s
		out[i].Wall = s.Wall - s.Mark
	}
	return out, nil
}

// clusterSample runs ps one after the other and adds the control plane's CPU during it.
func (a *appsBench) clusterSample(ctx context.Context, ps ...proc) (sample, error) {
	pids := a.cluster.PIDs()
	before, rerr := requestCounts(ctx, a.cluster.Config)
	cpu := processCPU(pids)
	s, err := runProcs(ctx, ps...)
	s.ClusterCPU = processCPU(pids) - cpu
	// The API requests of the run (the control plane's in all): unlike
	// the times, the same on a busy machine as on a quiet one.
	if rerr == nil {
		if after, rerr := requestCounts(ctx, a.cluster.Config); rerr == nil {
			a.logf("bench: API requests during %s %s: %s", ps[0].name, strings.Join(ps[0].args, " "), formatRequests(before, after))
		}
	}
	return s, err
}

// runningSamples are the long-running reconciler's measures.
type runningSamples struct {
	first, change []sample
}

// runningReconciler starts deliver reconcile on a new repository, times
// its first delivery of every app, then the runs' commits of 10 apps, and
// stops it. Its peak RSS is over its whole life.
func (a *appsBench) runningReconciler(ctx context.Context) (runningSamples, error) {
	var out runningSamples
	a.logf("bench: %d apps: running reconciler, first delivery", a.n)
	r, err := a.newRepo(ctx, "l")
	if err != nil {
		return out, err
	}
	head, err := r.head()
	if err != nil {
		return out, err
	}
	all := make([]int, r.N)
	for i := range all {
		all[i] = i
	}
	args := a.deliverArgs(r, "reconcile", "--repo", a.url(r), "--ref", "main", "--interval", "1h")
	p, err := startLong(a.deliver, args, a.env(), filepath.Join(a.opts.Dir, r.Name+".log"))
	if err != nil {
		return out, err
	}
	defer p.stop()
	pids := a.cluster.PIDs()
	cpu := processCPU(pids)
	if err := a.waitDelivered(ctx, p, r, all, head); err != nil {
		return out, err
	}
	first := sample{Wall: time.Since(p.started), CPU: p.cpu(), ClusterCPU: processCPU(pids) - cpu}
	for range a.runs {
		changed, head, err := r.change(appsChanged)
		if err != nil {
			return out, err
		}
		cpu, own := processCPU(pids), p.cpu()
		start := time.Now()
		if err := requestDeliverFetch(ctx, a.bench, r.inventory()); err != nil {
			return out, err
		}
		if err := a.waitDelivered(ctx, p, r, changed, head); err != nil {
			return out, err
		}
		out.change = append(out.change, sample{Wall: time.Since(start), CPU: p.cpu() - own, ClusterCPU: processCPU(pids) - cpu})
	}
	peak := p.hwm()
	first.PeakRSS = peak
	out.first = []sample{first}
	for i := range out.change {
		out.change[i].PeakRSS = peak
	}
	return out, nil
}

// requestDeliverFetch sets deliver.dev/requested-at on deliver-control,
// which makes the running reconciler fetch at once.
func requestDeliverFetch(ctx context.Context, b *bench, ns string) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"deliver.dev/requested-at":%q}}}`, now)
	cms := b.cs.CoreV1().ConfigMaps(ns)
	_, err := cms.Patch(ctx, "deliver-control", types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "deliver-control", Namespace: ns,
			Annotations: map[string]string{"deliver.dev/requested-at": now}}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("request a fetch: configmap %s/deliver-control: %w", ns, err)
	}
	return nil
}

// appsTimeout bounds every wait of the apps rows.
func appsTimeout(n int) time.Duration { return 2*time.Minute + time.Duration(n)*600*time.Millisecond }

// waitDelivered polls the reconciler's ConfigMap deliver-status until the
// apps have succeeded at commit head.
func (a *appsBench) waitDelivered(ctx context.Context, p *longProc, r *appsRepo, apps []int, head string) error {
	ctx, cancel := context.WithTimeout(ctx, appsTimeout(r.N))
	defer cancel()
	pending := len(apps)
	for {
		cm, err := reconcile.ReadStatus(ctx, a.cs, r.inventory())
		if err == nil {
			pending = 0
			for _, i := range apps {
				var st struct{ Revision, Result string }
				if json.Unmarshal([]byte(cm.Data[appName(i)]), &st) != nil || st.Result != "succeeded" || !sameCommit(st.Revision, head) {
					pending++
				}
			}
			if pending == 0 {
				return nil
			}
		} else if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			return fmt.Errorf("deliver-status: %w", err)
		}
		if p.exited() {
			return fmt.Errorf("deliver reconcile exited (log: %s)", p.log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deliver reconcile: %d of %d apps not delivered at %.12s after %s (log: %s)", pending, len(apps), head, appsTimeout(r.N), p.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sameCommit reports whether a revision names commit head (full or
// abbreviated, with or without a "branch@sha1:" prefix).
func sameCommit(rev, head string) bool {
	if i := strings.LastIndexByte(rev, ':'); i >= 0 {
		rev = rev[i+1:]
	}
	return len(rev) >= 7 && strings.HasPrefix(head, rev)
}
