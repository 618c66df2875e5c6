// Command bench measures deliver side by side with the tools users would run
// instead, in one run on one machine against one local control plane:
// render (helm template, kustomize build), first apply (kubectl apply
// --server-side and a raw concurrent client), no-change diff (kubectl diff
// --server-side), a 1% change diff+apply, and each process's peak RSS. It
// prints a table of medians with the ratio deliver/other and writes the
// same as JSON, then profiles deliver's slowest row in-process with pprof.
//
//	go run ./hack/bench -quick     # 100 and 1,000 objects, 2 runs, < 3 min
//	go run ./hack/bench            # adds 5,000 objects, < 10 min
//
// Ratios are what to read: absolute times depend on what else the machine
// is doing, and every tool shares the cores with the API server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
)

// Options configure one benchmark run.
type Options struct {
	// Deliver is the deliver binary; empty builds one from ./cmd/deliver.
	Deliver string
	// Sizes are the workload sizes, in objects.
	Sizes []int
	// Runs is how many times each row runs; the table shows the median.
	// Zero: 3 up to 100 objects, 2 up to 1,000, 1 above (a kubectl diff of
	// 5,000 objects takes a minute on 2 cores).
	Runs int
	// Quick is recorded in the results (the sizes and runs say the rest).
	Quick bool
	// Dir holds the cluster, the workloads and the profiles; it is
	// emptied first.
	Dir string
	// Out is the JSON results file.
	Out string
	// Profile profiles the slowest deliver row in-process after the rows.
	Profile bool
	// ProfileRow, when set, profiles the row whose name contains it (at
	// the largest size) instead of the slowest and the worst.
	ProfileRow string
	// ProfileRepeat runs the profiled step this many times (default 1).
	ProfileRepeat int
	// Settle bounds the untimed wait after each first apply for the
	// controllers to catch up with the new Deployments. Zero: no wait. The
	// controllers are rate-limited (20 QPS), so their background churn is
	// small next to a tool's, and the rounds rotate which tool follows it;
	// a full settle of 1,000 objects takes over 30 s on 2 cores.
	Settle time.Duration
	// Rows, when not empty, limits the run to these groups of rows:
	// render, apply (the first apply rows), diff (no-change diff), change
	// (the 1% change), reconcile (a no-op deliver reconcile --once), apps,
	// steady (the running reconciler over -steady) and shards (a shard
	// group re-balancing after a kill, see shards.go). The diff and
	// change rows still need a first apply of each tool, made once and
	// untimed when apply is left out.
	Rows []string
	// DeliverArgs are added to every deliver command that talks to the
	// cluster (apply, diff, reconcile), to measure a flag's effect; the
	// report records them.
	DeliverArgs []string
	// Baseline, when set, is another deliver binary (an earlier commit)
	// measured as one more side of the render, first apply, no-change diff
	// and change rows, in the same rounds: rows named "... [baseline]"
	// compare it with the same other tool, so a change shows as the two
	// ratios of one run.
	Baseline string
	// RawWorkers are the concurrencies of the raw client of the floor
	// rows, one side each. Default 16 and 32 (deliver defaults to 48).
	RawWorkers []int
	// LeanWorkers, when above zero, adds a floor row of the raw client
	// sending its applies in deliver's form (JSON, fieldValidation=Ignore),
	// which costs the API server less than the plain form of the other
	// floor rows (the default validation, Warn). Default 32.
	LeanWorkers int
	// Apps are the sizes of the apps rows, in apps of 4 objects each.
	Apps []int
	// Flux runs Flux's source-controller and kustomize-controller side by
	// side in the apps rows (built by hack/benchbin.sh).
	Flux bool
	// FluxConcurrent is the --concurrent of source-controller and
	// kustomize-controller; Flux's published benchmark ran them with 10
	// and 20 workers (its own defaults are 2 and 4).
	FluxConcurrent [2]int
	// FluxTimeout bounds each wait for Flux's Kustomizations. Default:
	// the apps rows' bound, 2 minutes and 0.6 s per app.
	FluxTimeout time.Duration
	// AppsKubectl runs kubectl apply and kubectl wait as the third side of
	// the apps' first apply (at 1,000 apps over 6 minutes a run, one
	// request at a time).
	AppsKubectl bool
	// ControllerQPS and ControllerBurst, when above zero, are
	// kube-controller-manager's --kube-api-qps and --kube-api-burst.
	// Default: Kubernetes' own (20 and 30), as on most clusters.
	ControllerQPS   float32
	ControllerBurst int
	// Steady is how long the steady rows watch the running reconciler.
	Steady time.Duration
	// Log receives progress and the table.
	Log io.Writer
}

// wants reports whether the run includes a group of rows.
func (o Options) wants(group string) bool { return len(o.Rows) == 0 || slices.Contains(o.Rows, group) }

func main() {
	quick := flag.Bool("quick", false, "100 and 1,000 objects only (under 3 minutes)")
	deliver := flag.String("deliver", "", "deliver binary (default: build ./cmd/deliver)")
	sizes := flag.String("sizes", "", "comma-separated workload sizes (default 100,1000,5000; -quick 100,1000)")
	runs := flag.Int("runs", 0, "runs per row (default 3 up to 1,000 objects, 1 above)")
	dir := flag.String("dir", ".cache/bench", "work folder: cluster, workloads, profiles (emptied first)")
	out := flag.String("out", ".cache/bench/results.json", "JSON results file")
	profile := flag.Bool("profile", true, "profile the slowest deliver row in-process with pprof")
	settle := flag.Duration("settle", 0, "after each first apply, wait up to this long (untimed) for the Deployments to settle")
	profileRow := flag.String("profile-row", "", "profile the row whose name contains this (at the largest size) instead of the slowest and the worst")
	deliverArgs := flag.String("deliver-args", "", "space-separated flags added to every deliver apply, diff and reconcile (recorded in the results)")
	baseline := flag.String("baseline", "", "another deliver binary to measure in the same rounds (rows marked [baseline])")
	rawWorkers := flag.String("raw-workers", "16,32", "comma-separated concurrencies of the raw client, one floor row each")
	leanWorkers := flag.Int("lean-workers", 32, "concurrency of the raw client sending applies in deliver's form (JSON, fieldValidation=Ignore); 0: no such row")
	profileRepeat := flag.Int("profile-repeat", 1, "run the profiled step this many times, for more samples (times are per run)")
	rows := flag.String("rows", "", "comma-separated groups of rows to run: render, apply, diff, change, reconcile, apps, steady, shards (default all)")
	apps := flag.String("apps", "", "comma-separated sizes of the apps rows, in apps of 4 objects (default 100,1000; -quick 100)")
	flux := flag.Bool("flux", true, "run Flux side by side in the apps rows (binaries from hack/benchbin.sh)")
	fluxSource := flag.Int("flux-source-concurrent", 10, "source-controller --concurrent (10: as in Flux's published benchmark; Flux's default is 2)")
	fluxTimeout := flag.Duration("flux-timeout", 0, "bound of each wait for Flux's Kustomizations (0: 2 minutes and 0.6 s per app, as the deliver rows)")
	fluxKustomize := flag.Int("flux-kustomize-concurrent", 20, "kustomize-controller --concurrent (20: as in Flux's published benchmark; Flux's default is 4)")
	appsKubectl := flag.Bool("apps-kubectl", true, "run kubectl apply --server-side and kubectl wait as a side of the apps' first apply")
	controllerQPS := flag.Float64("controller-qps", 0, "kube-controller-manager --kube-api-qps (0: Kubernetes' default, 20)")
	controllerBurst := flag.Int("controller-burst", 0, "kube-controller-manager --kube-api-burst (0: Kubernetes' default, 30)")
	steady := flag.Duration("steady", 10*time.Minute, "how long the steady rows watch the running reconciler, making drift every 30 s")
	flag.Parse()

	opts := Options{Deliver: *deliver, Runs: *runs, Quick: *quick, Dir: *dir, Out: *out, Profile: *profile, ProfileRow: *profileRow, ProfileRepeat: max(1, *profileRepeat), Settle: *settle, Flux: *flux, AppsKubectl: *appsKubectl, Log: os.Stdout}
	opts.DeliverArgs = strings.Fields(*deliverArgs)
	opts.ControllerQPS, opts.ControllerBurst, opts.Steady = float32(*controllerQPS), *controllerBurst, *steady
	opts.Baseline = *baseline
	opts.FluxConcurrent = [2]int{*fluxSource, *fluxKustomize}
	opts.FluxTimeout = *fluxTimeout
	opts.LeanWorkers = *leanWorkers
	for s := range strings.SplitSeq(*rawWorkers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: bad -raw-workers %q\n", s)
			os.Exit(2)
		}
		opts.RawWorkers = append(opts.RawWorkers, n)
	}
	for g := range strings.SplitSeq(*rows, ",") {
		switch g = strings.TrimSpace(g); g {
		case "":
		case "render", "apply", "diff", "change", "reconcile", "apps", "steady", "shards", "ui":
			opts.Rows = append(opts.Rows, g)
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown row group %q (want render, apply, diff, change, reconcile, apps, steady, shards or ui)\n", g)
			os.Exit(2)
		}
	}
	sizeList := *sizes
	if sizeList == "" {
		sizeList = "100,1000,5000"
		if *quick {
			sizeList = "100,1000"
		}
	}
	for s := range strings.SplitSeq(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 20 {
			fmt.Fprintf(os.Stderr, "bench: bad size %q (want a number of objects >= 20)\n", s)
			os.Exit(2)
		}
		opts.Sizes = append(opts.Sizes, n)
	}

	appList := *apps
	if appList == "" {
		appList = "100,1000"
		if *quick {
			appList = "100"
		}
	}
	for s := range strings.SplitSeq(appList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < appsNamespaces {
			fmt.Fprintf(os.Stderr, "bench: bad -apps size %q (want a number of apps >= %d)\n", s, appsNamespaces)
			os.Exit(2)
		}
		opts.Apps = append(opts.Apps, n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runsFor is the number of runs of each row at n objects: three up to
// 1,000 (the median of two is their mean, which one slow run moves), one
// above.
func runsFor(opts Options, n int) int {
	switch {
	case opts.Runs > 0:
		return opts.Runs
	case n <= 1000:
		return 3
	default:
		return 1
	}
}

// bench holds what the rows share.
type bench struct {
	opts                     Options
	started                  time.Time
	deliver, kubectl         string
	baseline                 string // -baseline: another deliver binary, or ""
	helm, kustomize          string
	home                     string // HOME of every tool: no state from the user's
	cluster                  *testenv.Cluster
	cs                       kubernetes.Interface
	dyn                      dynamic.Interface // no client-side rate limit: the raw client's
	report                   *Report
	reconcileHelp            string // empty: deliver has no reconcile command
	lastDeliver, lastKubectl map[int]*manifestDir
	lastBaseline             map[int]*manifestDir // what the -baseline binary applied: it diffs its own
	deliverDirs, kubectlDirs int
	runs                     int               // of the size being measured: runsFor
	flux                     []fluxBinary      // source-controller, kustomize-controller
	fluxErr                  error             // why Flux cannot run, when it cannot
	replays                  map[string]replay // per row: deliver's step in-process, for the profile
	requests                 requestLog        // the API requests of the profiled step
}

func run(ctx context.Context, opts Options) error {
	start := time.Now()
	var err error
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return err
	}
	// A fresh folder every time: old cluster data belongs to stopped
	// processes. Never a folder that holds anything else.
	if _, err := os.Stat(filepath.Join(opts.Dir, "go.mod")); err == nil || opts.Dir == "/" || opts.Dir == os.Getenv("HOME") {
		return fmt.Errorf("-dir %s: refusing to empty it", opts.Dir)
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return fmt.Errorf("clean %s: %w", opts.Dir, err)
	}
	b := &bench{opts: opts, started: start, home: filepath.Join(opts.Dir, "home"), lastDeliver: map[int]*manifestDir{}, lastKubectl: map[int]*manifestDir{}, lastBaseline: map[int]*manifestDir{}}
	if err := os.MkdirAll(b.home, 0o755); err != nil {
		return err
	}
	for name, p := range map[string]*string{"kubectl": &b.kubectl, "helm": &b.helm, "kustomize": &b.kustomize} {
		if *p, err = testenv.Binary(name); err != nil {
			return err
		}
	}
	if b.deliver, err = buildDeliver(ctx, opts); err != nil {
		return err
	}
	if opts.Baseline != "" {
		if b.baseline, err = filepath.Abs(opts.Baseline); err != nil {
			return err
		}
		if _, err := os.Stat(b.baseline); err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
	}
	// Every tool runs from a copy made here, written the same way, so that
	// RSS compares code and heap rather than page-cache history: a binary
	// fresh from go build sits in the page cache in large folios, which a
	// process maps whole (the same deliver showed 60 or 93 MiB of file
	// pages, depending on how its file was last written).
	deliverSrc, baselineSrc := b.deliver, b.baseline
	for _, p := range []*string{&b.deliver, &b.baseline, &b.kubectl, &b.helm, &b.kustomize} {
		if *p == "" {
			continue
		}
		if *p, err = stageBinary(filepath.Join(opts.Dir, "bin"), *p); err != nil {
			return err
		}
	}
	b.report = newReport(opts)
	b.report.Deliver = binaryInfo(deliverSrc)
	b.report.DeliverArgs = opts.DeliverArgs
	if b.baseline != "" {
		b.report.Baseline = binaryInfo(baselineSrc)
	}
	b.reconcileHelp = reconcileHelp(ctx, b.deliver)
	b.logf("bench: deliver %s %s; sizes %v; apps %v; machine: %s", b.report.Deliver, strings.Join(opts.DeliverArgs, " "), opts.Sizes, opts.Apps, b.report.Machine)

	// Render needs no cluster: measured first, while the machine is quiet.
	for _, n := range opts.Sizes {
		if !opts.wants("render") {
			break
		}
		b.runs = runsFor(opts, n)
		if err := b.renderRows(ctx, n); err != nil {
			return err
		}
	}
	b.uiRows(ctx) // -rows ui: the web view, on a control plane of its own (ui.go)
	if !opts.wants("apply") && !opts.wants("diff") && !opts.wants("change") && !opts.wants("reconcile") && !opts.wants("apps") && !opts.wants("steady") && !opts.wants("shards") {
		b.report.Reconcile = "n/a: not in -rows"
		return b.finish(ctx, start)
	}

	b.report.ControllerManager = controllerLimits(opts)
	b.logf("bench: starting the local control plane; kube-controller-manager: %s", b.report.ControllerManager)
	t := time.Now()
	b.cluster, err = testenv.Start(ctx, testenv.Options{Dir: filepath.Join(opts.Dir, "cluster"), ControllerQPS: opts.ControllerQPS, ControllerBurst: opts.ControllerBurst})
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer b.cluster.Stop()
	b.logf("bench: control plane ready in %s", time.Since(t).Round(time.Millisecond))
	if b.cs, err = kubernetes.NewForConfig(b.cluster.Config); err != nil {
		return err
	}
	// The raw client of the floor rows has no client-side rate limit
	// (QPS < 0): its speed is the API server's, bounded only by the
	// requests in flight.
	rawCfg := rest.CopyConfig(b.cluster.Config)
	rawCfg.QPS = -1
	if b.dyn, err = dynamic.NewForConfig(rawCfg); err != nil {
		return err
	}
	if err := b.installCRD(ctx); err != nil {
		return err
	}
	if err := b.warmUp(ctx); err != nil {
		return err
	}
	for _, n := range opts.Sizes {
		if !opts.wants("apply") && !opts.wants("diff") && !opts.wants("change") && !opts.wants("reconcile") {
			break
		}
		b.runs = runsFor(opts, n)
		if err := b.clusterRows(ctx, n); err != nil {
			return err
		}
	}
	b.report.Reconcile = b.reconcileRow(ctx)
	if opts.wants("apps") {
		if opts.Flux {
			b.fluxErr = b.setUpFlux(ctx)
			if b.fluxErr != nil {
				b.logf("bench: Flux will not run: %v", b.fluxErr)
			}
		}
		for _, n := range opts.Apps {
			b.runs = runsFor(opts, 4*n)
			if err := b.appsRows(ctx, n); err != nil {
				return err
			}
		}
	}
	if opts.wants("steady") {
		for _, n := range opts.Apps {
			if err := b.steadyRow(ctx, n); err != nil {
				return err
			}
		}
	}
	for _, n := range opts.Apps {
		if !opts.wants("shards") {
			break
		}
		b.runs = runsFor(opts, 4*n)
		if err := b.shardsRows(ctx, n); err != nil {
			return err
		}
	}
	return b.finish(ctx, start)
}

// controllerLimits says which client limits kube-controller-manager runs
// with: they bound how fast it creates the ReplicaSets of new Deployments
// and reports their status, which every wait for readiness waits on.
func controllerLimits(opts Options) string {
	qps, burst := "20 (default)", "30 (default)"
	if opts.ControllerQPS > 0 {
		qps = strconv.FormatFloat(float64(opts.ControllerQPS), 'f', -1, 32)
	}
	if opts.ControllerBurst > 0 {
		burst = strconv.Itoa(opts.ControllerBurst)
	}
	return fmt.Sprintf("--kube-api-qps %s, --kube-api-burst %s", qps, burst)
}

// finish profiles, prints the table and writes the results.
func (b *bench) finish(ctx context.Context, start time.Time) error {
	if b.opts.Profile {
		ps, err := b.profileRows(ctx)
		if err != nil {
			// The rows are measured: report them even if profiling fails.
			b.logf("bench: profile: %v", err)
		}
		b.report.Profiles = ps
	}
	b.report.Duration = time.Since(start).Round(time.Second).String()
	b.report.LoadAfter = loadAvg()
	b.printTable()
	return b.writeJSON()
}

// logf prints progress with the time since the start, so that a slow
// phase shows.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.opts.Log, "[%5.1fs] "+format+"\n", append([]any{time.Since(b.started).Seconds()}, args...)...)
}

// env is the environment of every CLI: a HOME of the benchmark's own, so
// the user's kubectl discovery cache or Helm repositories play no part; it
// persists across runs, as a user's would.
func (b *bench) env() []string {
	return []string{
		"HOME=" + b.home, "PATH=" + os.Getenv("PATH"),
		"HELM_CONFIG_HOME=" + filepath.Join(b.home, ".config/helm"),
		"HELM_CACHE_HOME=" + filepath.Join(b.home, ".cache/helm"),
		"HELM_DATA_HOME=" + filepath.Join(b.home, ".local/share/helm"),
	}
}

// stageBinary copies the executable src into dir with plain writes and
// returns the copy's path. A copy of the same file twice (deliver and
// -baseline of the same name) gets a numbered name.
func stageBinary(dir, src string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	for i := 2; ; i++ {
		if _, err := os.Stat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%s.%d", filepath.Base(src), i))
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	// struct{io.Writer} hides ReadFrom: no copy_file_range, which may
	// share the source's pages or extents.
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, in, make([]byte, 128<<10)); err != nil {
		out.Close()
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, nil
}

func buildDeliver(ctx context.Context, opts Options) (string, error) {
	if opts.Deliver != "" {
		p, err := filepath.Abs(opts.Deliver)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("deliver binary: %w (run make build, or leave -deliver empty to build one)", err)
		}
		return p, nil
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(opts.Dir, "deliver")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/deliver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build deliver: %w\n%s", err, out)
	}
	return bin, nil
}

// hasFlag reports whether a deliver command has a flag: the benchmark runs
// against whatever deliver is being built.
func (b *bench) hasFlag(ctx context.Context, cmd, flag string) bool {
	out, err := exec.CommandContext(ctx, b.deliver, cmd, "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), flag+" ")
}

// reconcileHelp returns the help of deliver reconcile, or "" when this
// binary has no such command (another engineer is building it).
func reconcileHelp(ctx context.Context, deliver string) string {
	out, err := exec.CommandContext(ctx, deliver, "reconcile", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "reconcile") {
		return ""
	}
	return string(out)
}

func (b *bench) installCRD(ctx context.Context) error {
	file := filepath.Join(b.opts.Dir, "crd.yaml")
	if err := os.WriteFile(file, []byte(crdManifest), 0o644); err != nil {
		return err
	}
	kc := []string{"--kubeconfig", b.cluster.Kubeconfig}
	for _, args := range [][]string{
		append(kc, "apply", "--server-side", "-f", file),
		append(kc, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+crdName),
	} {
		if out, err := exec.CommandContext(ctx, b.kubectl, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("install CRD: kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// pair runs the two sides of a row; see rounds.
func (b *bench) pair(ctx context.Context, label string, deliverRun, otherRun runFunc) (ds, others []sample, err error) {
	got, err := b.rounds(ctx, label, deliverRun, otherRun)
	if err != nil {
		return nil, nil, err
	}
	return got[0], got[1], nil
}

type runFunc func(ctx context.Context, rep int) (sample, error)

// rounds runs every side of a row once per round, Runs rounds, rotating
// which side goes first, so that a change in the machine's load hits all
// sides alike. It returns the samples per side.
func (b *bench) rounds(ctx context.Context, label string, sides ...runFunc) ([][]sample, error) {
	if b.runs == 0 {
		return nil, errors.New("bench: runs not set")
	}
	out := make([][]sample, len(sides))
	for rep := range b.runs {
		for k := range sides {
			i := (k + rep) % len(sides)
			var pids []int
			if b.cluster != nil {
				pids = b.cluster.PIDs()
			}
			// The control plane's CPU is counted around the whole side
			// unless the side counted it around its timed part.
			cluster := processCPU(pids)
			got, err := sides[i](ctx, rep)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			if pids != nil && got.ClusterCPU == 0 {
				got.ClusterCPU = processCPU(pids) - cluster
			}
			out[i] = append(out[i], got)
		}
	}
	return out, nil
}

func (b *bench) renderRows(ctx context.Context, n int) error {
	in, err := writeRenderInputs(filepath.Join(b.opts.Dir, fmt.Sprintf("w%d", n), "render"), n)
	if err != nil {
		return err
	}
	renderWith := func(bin, repo string) proc {
		return proc{name: bin, args: []string{"render", "--path", repo}, env: b.env()}
	}
	deliverRender := func(repo string) proc { return renderWith(b.deliver, repo) }
	helm := proc{name: b.helm, args: []string{"template", "bench", in.Chart, "--namespace", renderNamespace}, env: b.env()}
	kustomize := proc{name: b.kustomize, args: []string{"build", in.Overlay}, env: b.env()}
	// Both sides must render the whole workload, or the times mean nothing.
	// Checked at the first size only: the inputs are generated alike at
	// every size, and kustomize takes most of a minute at 5,000 objects.
	if n == b.opts.Sizes[0] {
		for _, p := range []proc{deliverRender(in.HelmRepo), helm, deliverRender(in.KustomizeRepo), kustomize} {
			if err := checkRendered(ctx, p, n+1); err != nil {
				return err
			}
		}
	}
	rows := []struct {
		name  string
		repo  string
		other proc
		tool  string
	}{
		{"render (Helm chart)", in.HelmRepo, helm, "helm template"},
		{"render (kustomize overlay)", in.KustomizeRepo, kustomize, "kustomize build"},
	}
	for _, r := range rows {
		b.logf("bench: %d objects: %s", n, r.name)
		sides := []runFunc{
			func(ctx context.Context, _ int) (sample, error) { return runProc(ctx, deliverRender(r.repo)) },
			func(ctx context.Context, _ int) (sample, error) { return runProc(ctx, r.other) },
		}
		if b.baseline != "" {
			sides = append(sides, func(ctx context.Context, _ int) (sample, error) { return runProc(ctx, renderWith(b.baseline, r.repo)) })
		}
		got, err := b.rounds(ctx, r.name, sides...)
		if err != nil {
			return err
		}
		other := measure(r.tool, got[1])
		b.report.add(n, r.name, measure("deliver render", got[0]), other)
		if b.baseline != "" {
			b.report.add(n, r.name+" [baseline]", measure("baseline render", got[2]), other)
		}
	}
	b.registerReplays(n, map[string]string{rows[0].name: in.HelmRepo, rows[1].name: in.KustomizeRepo})
	return nil
}

// checkRendered runs p once and fails unless it printed want objects.
func checkRendered(ctx context.Context, p proc, want int) error {
	cmd := exec.CommandContext(ctx, p.name, p.args...)
	cmd.Env = p.env
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(p.name), strings.Join(p.args, " "), err)
	}
	got := 0
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "kind: ") {
			got++
		}
	}
	if got != want {
		return fmt.Errorf("%s %s rendered %d objects, want %d", filepath.Base(p.name), strings.Join(p.args, " "), got, want)
	}
	return nil
}

// newDir writes a fresh copy of the workload for a new namespace.
func (b *bench) newDir(ctx context.Context, n int, tool string) (*manifestDir, error) {
	var seq *int
	if tool == "deliver" {
		seq = &b.deliverDirs
	} else {
		seq = &b.kubectlDirs
	}
	*seq++
	ns := fmt.Sprintf("%s-%d-%d", tool, n, *seq)
	if err := createNamespace(ctx, b.cs, ns); err != nil {
		return nil, err
	}
	return writeManifestDir(filepath.Join(b.opts.Dir, fmt.Sprintf("w%d", n), ns), ns, n)
}

func (b *bench) deliverProc(md *manifestDir, cmd string, extra ...string) proc {
	return b.deliverProcWith(b.deliver, md, cmd, extra...)
}

// deliverProcWith is deliverProc for another binary (the baseline).
func (b *bench) deliverProcWith(bin string, md *manifestDir, cmd string, extra ...string) proc {
	args := append([]string{cmd, "--kubeconfig", b.cluster.Kubeconfig, "--path", md.Dir, "-f", ".", "--app", md.Namespace}, extra...)
	args = append(args, b.opts.DeliverArgs...)
	p := proc{name: bin, args: args, env: b.env()}
	if cmd == "diff" {
		p.ok = []int{2} // changes found
	}
	return p
}

func (b *bench) kubectlProc(md *manifestDir, cmd string) proc {
	p := proc{name: b.kubectl, args: []string{"--kubeconfig", b.cluster.Kubeconfig, cmd, "--server-side", "-f", md.Dir}, env: b.env()}
	if cmd == "diff" {
		p.ok = []int{1} // differences found
	}
	return p
}

func (b *bench) clusterRows(ctx context.Context, n int) error {
	// First apply: each run into a new, empty namespace; the controllers
	// settle outside the timing.
	b.logf("bench: %d objects: first apply", n)
	applyWith := func(tool string, timed func(ctx context.Context, md *manifestDir) (sample, error)) func(context.Context, int) (sample, error) {
		return func(ctx context.Context, _ int) (sample, error) {
			md, err := b.newDir(ctx, n, tool)
			if err != nil {
				return sample{}, err
			}
			pids := b.cluster.PIDs()
			cpu := processCPU(pids)
			s, err := timed(ctx, md)
			if err != nil {
				return s, err
			}
			// Counted here, not around the whole side: -settle waits below.
			s.ClusterCPU = processCPU(pids) - cpu
			switch tool {
			case "deliver":
				b.lastDeliver[n] = md
			case "kubectl":
				b.lastKubectl[n] = md
			case "baseline":
				b.lastBaseline[n] = md
			}
			if b.opts.Settle > 0 {
				t := time.Now()
				if err := settle(ctx, b.cs, md.Namespace, b.opts.Settle); err != nil {
					b.logf("bench: %v", err)
				}
				if d := time.Since(t); d > 2*time.Second {
					b.logf("bench: %s settled in %s", md.Namespace, d.Round(100*time.Millisecond))
				}
			}
			return s, nil
		}
	}
	deliverApply := applyWith("deliver", func(ctx context.Context, md *manifestDir) (sample, error) {
		return runProc(ctx, b.deliverProc(md, "apply", "--wait=false"))
	})
	kubectlApply := applyWith("kubectl", func(ctx context.Context, md *manifestDir) (sample, error) {
		return runProc(ctx, b.kubectlProc(md, "apply"))
	})
	rawApplyRun := func(workers int, lean bool) runFunc {
		return applyWith("raw", func(ctx context.Context, md *manifestDir) (sample, error) {
			objs, err := md.objects()
			if err != nil {
				return sample{}, err
			}
			start, cpu := time.Now(), selfCPU()
			err = rawApply(ctx, b.dyn, objs, workers, lean)
			return sample{Wall: time.Since(start), CPU: selfCPU() - cpu}, err
		})
	}
	baselineApply := applyWith("baseline", func(ctx context.Context, md *manifestDir) (sample, error) {
		return runProc(ctx, b.deliverProcWith(b.baseline, md, "apply", "--wait=false"))
	})
	if !b.opts.wants("apply") {
		// The diff and change rows need what each tool applied: once,
		// untimed.
		once := []runFunc{deliverApply, kubectlApply}
		if b.baseline != "" {
			once = append(once, baselineApply)
		}
		for _, side := range once {
			if _, err := side(ctx, 0); err != nil {
				return fmt.Errorf("first apply: %w", err)
			}
		}
		return b.diffRows(ctx, n)
	}
	sides := []runFunc{deliverApply, kubectlApply}
	for _, w := range b.opts.RawWorkers {
		sides = append(sides, rawApplyRun(w, false))
	}
	if b.opts.LeanWorkers > 0 {
		sides = append(sides, rawApplyRun(b.opts.LeanWorkers, true))
	}
	if b.baseline != "" {
		sides = append(sides, baselineApply)
	}
	got, err := b.rounds(ctx, "first apply", sides...)
	if err != nil {
		return err
	}
	ds := measure("deliver apply", got[0])
	kubectl := measure("kubectl apply --server-side", got[1])
	b.report.add(n, "first apply", ds, kubectl)
	for i, w := range b.opts.RawWorkers {
		b.report.add(n, fmt.Sprintf("first apply (floor, %d workers)", w), ds, measure(fmt.Sprintf("raw client, %d workers, no QPS limit", w), got[2+i]))
	}
	if w := b.opts.LeanWorkers; w > 0 {
		b.report.add(n, fmt.Sprintf("first apply (floor, %d workers, deliver's form)", w), ds, measure(fmt.Sprintf("raw client, %d workers, JSON, fieldValidation=Ignore", w), got[2+len(b.opts.RawWorkers)]))
	}
	if b.baseline != "" {
		b.report.add(n, "first apply [baseline]", measure("baseline apply", got[len(got)-1]), kubectl)
	}
	return b.diffRows(ctx, n)
}

// diffRows measures the no-change diff and the 1% change of what the first
// apply rows left, as -rows asks.
func (b *bench) diffRows(ctx context.Context, n int) error {
	// No-change diff: each tool diffs what it applied itself (kubectl's
	// fields would conflict with deliver's otherwise).
	dmd, kmd, bmd := b.lastDeliver[n], b.lastKubectl[n], b.lastBaseline[n]
	if b.opts.wants("diff") {
		b.logf("bench: %d objects: no-change diff", n)
		noChange := func(p proc) func(context.Context, int) (sample, error) {
			return func(ctx context.Context, _ int) (sample, error) { return runProc(ctx, p) }
		}
		// The full dry run is what deliver costs without its inventory
		// fast path (and what a dry-run-everything reconcile costs); it
		// shares kubectl's samples.
		sides := []runFunc{noChange(b.deliverProc(dmd, "diff")), noChange(b.deliverProc(dmd, "diff", "--full-dry-run")), noChange(b.kubectlProc(kmd, "diff"))}
		if b.baseline != "" {
			sides = append(sides, noChange(b.deliverProcWith(b.baseline, bmd, "diff")))
		}
		got, err := b.rounds(ctx, "no-change diff", sides...)
		if err != nil {
			return err
		}
		kdiff := measure("kubectl diff --server-side", got[2])
		b.report.add(n, "no-change diff", measure("deliver diff", got[0]), kdiff)
		b.report.add(n, "no-change diff, full dry run", measure("deliver diff --full-dry-run", got[1]), kdiff)
		if b.baseline != "" {
			b.report.add(n, "no-change diff [baseline]", measure("baseline diff", got[3]), kdiff)
		}
	}
	if !b.opts.wants("change") {
		b.registerClusterReplays(n, "")
		return nil
	}

	// Small change: 1% of the objects change in git; the tool shows the
	// diff, then applies it (what CI does on a merge).
	b.logf("bench: %d objects: 1%% change diff+apply", n)
	changed := 0
	deliverChange := func(bin string, md *manifestDir) runFunc {
		return func(ctx context.Context, _ int) (sample, error) {
			c, err := md.change()
			if err != nil {
				return sample{}, err
			}
			changed = c
			return runProcs(ctx, b.deliverProcWith(bin, md, "diff"), b.deliverProcWith(bin, md, "apply", "--wait=false"))
		}
	}
	// The same in one run: apply --diff prints the diff of what it applies
	// (as kapp deploy --diff-changes does). It changes the same workload
	// as the two-run side, in its own rounds.
	applyDiff := func(ctx context.Context, _ int) (sample, error) {
		if _, err := dmd.change(); err != nil {
			return sample{}, err
		}
		return runProc(ctx, b.deliverProc(dmd, "apply", "--wait=false", "--diff"))
	}
	sides := []runFunc{deliverChange(b.deliver, dmd), func(ctx context.Context, _ int) (sample, error) {
		if _, err := kmd.change(); err != nil {
			return sample{}, err
		}
		return runProcs(ctx, b.kubectlProc(kmd, "diff"), b.kubectlProc(kmd, "apply"))
	}, applyDiff}
	if b.baseline != "" {
		sides = append(sides, deliverChange(b.baseline, bmd))
	}
	got, err := b.rounds(ctx, "1% change", sides...)
	if err != nil {
		return err
	}
	row := fmt.Sprintf("%d changed: diff + apply", changed)
	kchange := measure("kubectl diff; kubectl apply", got[1])
	b.report.add(n, row, measure("deliver diff; deliver apply", got[0]), kchange)
	b.report.add(n, fmt.Sprintf("%d changed: apply --diff (one run)", changed), measure("deliver apply --diff", got[2]), kchange)
	if b.baseline != "" {
		b.report.add(n, row+" [baseline]", measure("baseline diff; baseline apply", got[3]), kchange)
	}
	b.registerClusterReplays(n, row)
	return nil
}

// warmUp applies a small workload once with every tool, untimed: the
// first requests of each kind after the API server starts (its
// server-side apply type converters, caches, the deliver-system namespace)
// cost more, and should fall on no tool's first run.
func (b *bench) warmUp(ctx context.Context) error {
	b.logf("bench: warm-up")
	for _, tool := range []string{"deliver", "kubectl", "raw"} {
		md, err := b.newDir(ctx, 20, tool)
		if err != nil {
			return err
		}
		switch tool {
		case "deliver":
			_, err = runProc(ctx, b.deliverProc(md, "apply", "--wait=false"))
		case "kubectl":
			_, err = runProc(ctx, b.kubectlProc(md, "apply"))
		default:
			var objs []*unstructured.Unstructured
			if objs, err = md.objects(); err == nil {
				err = rawApply(ctx, b.dyn, objs, 16, false)
			}
		}
		if err != nil {
			return fmt.Errorf("warm-up %s: %w", tool, err)
		}
	}
	return nil
}

// reconcileTimeout bounds one run of deliver reconcile --once.
const reconcileTimeout = 2 * time.Minute

// reconcileRow measures a no-op reconcile only when deliver has one that
// can run a single pass; otherwise it says why not.
func (b *bench) reconcileRow(ctx context.Context) string {
	if !b.opts.wants("reconcile") {
		return "n/a: not in -rows"
	}
	if b.reconcileHelp == "" {
		return "n/a: this deliver binary has no reconcile command"
	}
	if !strings.Contains(b.reconcileHelp, "--once") {
		return "n/a: deliver reconcile runs until stopped and has no --once flag to time a single pass"
	}
	n := 1000
	if _, ok := b.lastDeliver[n]; !ok {
		n = b.opts.Sizes[len(b.opts.Sizes)-1]
	}
	md := b.lastDeliver[n]
	if md == nil {
		return "n/a: no first apply to reconcile"
	}
	b.logf("bench: %d objects: no-op reconcile", n)
	ds, others, err := b.pair(ctx, "no-op reconcile",
		func(ctx context.Context, _ int) (sample, error) {
			// The reconciler follows a repository: the workload's own,
			// committed (the change rows leave its working tree as
			// committed last).
			// --wait=false like the other rows: a pass that applies
			// nothing has nothing to wait for.
			args := append([]string{"reconcile", "--once", "--wait=false", "--kubeconfig", b.cluster.Kubeconfig, "--repo", "file://" + md.Dir, "--ref", "main", "-f", ".", "--app", md.Namespace}, b.opts.DeliverArgs...)
			ctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
			defer cancel()
			s, err := runProc(ctx, proc{name: b.deliver, args: args, env: b.env()})
			if ctx.Err() != nil {
				err = fmt.Errorf("deliver reconcile --once did not end within %s (%v)", reconcileTimeout, err)
			}
			return s, err
		},
		func(ctx context.Context, _ int) (sample, error) {
			return runProc(ctx, b.deliverProc(md, "diff", "--full-dry-run"))
		})
	if err != nil {
		return "n/a: " + err.Error()
	}
	b.report.add(n, "no-op reconcile", measure("deliver reconcile --once", ds), measure("deliver diff --full-dry-run", others))
	return "measured"
}

func (b *bench) printTable() {
	w := tabwriter.NewWriter(b.opts.Log, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "objects\truns\trow\tdeliver\tother\tother tool\tdeliver/other\tdeliver RSS\tother RSS")
	for _, r := range b.report.Rows {
		if r.Apps > 0 {
			continue
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%.2fx\t%s\t%s\n", r.Objects, len(r.Deliver.RunsMS), r.Name, fmtMS(r.Deliver.MedianMS), fmtMS(r.Other.MedianMS), r.Other.Tool, r.Ratio, fmtMiB(r.Deliver.PeakRSSMiB), fmtMiB(r.Other.PeakRSSMiB))
	}
	fmt.Fprintf(w, "-\t-\tno-op reconcile\t%s\n", b.report.Reconcile)
	w.Flush()
	fmt.Fprintln(b.opts.Log, "medians of the runs; deliver/other < 1: deliver is faster; RSS: highest VmHWM of the runs")
	fmt.Fprintf(b.opts.Log, "kube-controller-manager: %s\n", b.report.ControllerManager)
	b.printApps()
	b.printSteady()
	b.printCPU()
	for _, p := range b.report.Profiles {
		fmt.Fprintf(b.opts.Log, "\nprofile of %q at %d objects (in-process, %s wall, %s CPU, %d MiB allocated): %s\n%s\n%s\n",
			p.Row, p.Objects, p.Wall, p.CPU, p.AllocMiB, p.File, p.Top, p.Requests)
	}
	fmt.Fprintf(b.opts.Log, "results: %s (%s)\n", b.opts.Out, b.report.Duration)
}

// printApps prints the apps rows, whose other side is another deliver
// command or Flux, or nothing.
func (b *bench) printApps() {
	header := false
	w := tabwriter.NewWriter(b.opts.Log, 2, 4, 2, ' ', 0)
	for _, r := range b.report.Rows {
		if r.Apps == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(b.opts.Log, "\napps rows (4 objects per app, 10 namespaces, waiting for readiness)")
			if b.report.Flux != "" {
				fmt.Fprintf(b.opts.Log, "; Flux: %s", b.report.Flux)
			}
			fmt.Fprintln(b.opts.Log)
			fmt.Fprintln(w, "apps\truns\trow\tdeliver\tother\tother side\tdeliver/other\tdeliver RSS\tother RSS\ttarget")
			header = true
		}
		other, ratio, otherRSS := "-", "-", "-"
		if r.Other.Tool != "" {
			other, ratio, otherRSS = fmtMS(r.Other.MedianMS), fmt.Sprintf("%.2fx", r.Ratio), fmtMiB(r.Other.PeakRSSMiB)
			if len(r.Other.ProcessRSSMiB) > 0 {
				var parts []string
				for _, name := range slices.Sorted(maps.Keys(r.Other.ProcessRSSMiB)) {
					parts = append(parts, fmt.Sprintf("%s %s", name, fmtMiB(r.Other.ProcessRSSMiB[name])))
				}
				otherRSS = strings.Join(parts, ", ")
			}
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Apps, len(r.Deliver.RunsMS), r.Name, fmtMS(r.Deliver.MedianMS), other, r.Other.Tool, ratio, fmtMiB(r.Deliver.PeakRSSMiB), otherRSS, r.Target)
	}
	w.Flush()
	for _, n := range b.report.AppsNotes {
		fmt.Fprintln(b.opts.Log, n)
	}
}

// printCPU prints where the time of the cluster rows went: each tool's own
// CPU and the control plane's during its runs. The deliver side of a row
// repeats in rows that share its samples; each is printed once.
func (b *bench) printCPU() {
	w := tabwriter.NewWriter(b.opts.Log, 2, 4, 2, ' ', 0)
	header := false
	seen := map[string]bool{}
	for _, r := range b.report.Rows {
		for _, m := range []Measure{r.Deliver, r.Other} {
			key := fmt.Sprintf("%d/%s", r.Objects, m.Tool)
			if m.ClusterCPUMS == 0 || seen[key] {
				continue
			}
			seen[key] = true
			if !header {
				fmt.Fprintln(b.opts.Log, "\nCPU of the cluster rows (medians, user+system): the tool's own, the control plane's during the run")
				fmt.Fprintln(w, "objects\ttool\twall\ttool CPU\tcontrol plane CPU\tcores busy")
				header = true
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%.1f\n", r.Objects, m.Tool, fmtMS(m.MedianMS), fmtMS(m.CPUMS), fmtMS(m.ClusterCPUMS), (m.CPUMS+m.ClusterCPUMS)/m.MedianMS)
		}
	}
	w.Flush()
}

func (b *bench) writeJSON() error {
	out, err := filepath.Abs(b.opts.Out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(b.report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func fmtMS(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func fmtMiB(m float64) string {
	if m == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", m)
}
