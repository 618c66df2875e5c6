package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/internal/testenv"
)

// Flux side by side: source-controller and kustomize-controller, built by
// hack/benchbin.sh, run as processes against the bench control plane; a
// GitRepository follows the served repository and one Kustomization per app
// applies its folder (wait: true, prune: true, interval 1h), as Flux's own
// benchmark does.

var (
	gitRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	kustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// fluxControllers are the two controllers, in the order they start.
var fluxControllers = []string{"source-controller", "kustomize-controller"}

// BenchBinDirEnv names the folder of the binaries hack/benchbin.sh builds;
// default: the folder "bench" inside the test binaries' folder.
const BenchBinDirEnv = "DELIVER_BENCHBIN"

// benchBinDir is where hack/benchbin.sh puts its binaries.
func benchBinDir() (string, error) {
	if d := os.Getenv(BenchBinDirEnv); d != "" {
		return filepath.Abs(d)
	}
	d, err := testenv.BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "bench"), nil
}

// fluxBinary is one controller's binary and the version it was built at.
type fluxBinary struct {
	name, path, version string
}

// findFlux returns the controllers' binaries, or an error that says how
// to build them.
func findFlux() ([]fluxBinary, error) {
	dir, err := benchBinDir()
	if err != nil {
		return nil, err
	}
	var out []fluxBinary
	for _, name := range fluxControllers {
		p := filepath.Join(dir, name)
		v, err := os.ReadFile(filepath.Join(dir, "."+name+".version"))
		if _, serr := os.Stat(p); serr != nil || err != nil {
			return nil, fmt.Errorf("%s not built in %s: run hack/benchbin.sh (make bench does), or -flux=false", name, dir)
		}
		out = append(out, fluxBinary{name: name, path: p, version: strings.TrimSpace(string(v))})
	}
	return out, nil
}

// installFluxCRDs applies the controllers' CRDs from their modules'
// config/crd/bases, at the versions built, as flux install does.
func (b *bench) installFluxCRDs(ctx context.Context) error {
	kc := []string{"--kubeconfig", b.cluster.Kubeconfig}
	for _, fb := range b.flux {
		cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/fluxcd/"+fb.name+"@"+fb.version)
		cmd.Dir = b.opts.Dir // outside any module
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("flux CRDs: go mod download %s@%s: %w", fb.name, fb.version, err)
		}
		var mod struct{ Dir string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			return fmt.Errorf("flux CRDs: no module folder for %s@%s", fb.name, fb.version)
		}
		args := append(kc, "apply", "--server-side", "-f", filepath.Join(mod.Dir, "config", "crd", "bases"))
		if out, err := exec.CommandContext(ctx, b.kubectl, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("flux CRDs: kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	args := append(kc, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+gitRepositoryGVR.GroupResource().String(), "crd/"+kustomizationGVR.GroupResource().String())
	if out, err := exec.CommandContext(ctx, b.kubectl, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("flux CRDs: kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// fluxSamples are the Flux side of the apps rows; note says why a side is
// missing.
type fluxSamples struct {
	first, change Measure
	note          string
}

// fluxSide measures Flux on a repository of its own: from the creation of
// the GitRepository and the Kustomizations to every Kustomization Ready,
// then commits of 10 apps, each asked for through the GitRepository's
// reconcile.fluxcd.io/requestedAt, to those 10 Ready at the new revision.
// The controllers start for each size and stop after it, so that their
// peak RSS is this size's.
func (a *appsBench) fluxSide(ctx context.Context) fluxSamples {
	if !a.opts.Flux {
		return fluxSamples{note: "Flux not measured (-flux=false)"}
	}
	if a.fluxErr != nil {
		return fluxSamples{note: "Flux not measured: " + a.fluxErr.Error()}
	}
	s, err := a.measureFlux(ctx)
	if err != nil {
		a.logf("bench: flux: %v", err)
		return fluxSamples{note: "Flux failed: " + err.Error()}
	}
	return s
}

func (a *appsBench) measureFlux(ctx context.Context) (fluxSamples, error) {
	var out fluxSamples
	a.logf("bench: %d apps: Flux, first delivery", a.n)
	r, err := a.newRepo(ctx, "f")
	if err != nil {
		return out, err
	}
	head, err := r.head()
	if err != nil {
		return out, err
	}
	fluxNS := r.Name + "-flux"
	if err := createNamespace(ctx, a.cs, fluxNS); err != nil {
		return out, err
	}
	procs, err := a.startFlux(ctx, filepath.Join(a.opts.Dir, r.Name+"-flux"), fluxNS)
	for _, p := range procs {
		defer p.stop()
	}
	if err != nil {
		return out, err
	}
	ownCPU := func() time.Duration {
		var t time.Duration
		for _, p := range procs {
			t += p.cpu()
		}
		return t
	}
	pids := a.cluster.PIDs()
	label := fmt.Sprintf("Flux %s/%s", a.flux[0].version, a.flux[1].version)

	ks := a.dyn.Resource(kustomizationGVR).Namespace(fluxNS)
	all := map[string]bool{}
	for i := range r.N {
		all[appName(i)] = true
	}
	cluster, own := processCPU(pids), ownCPU()
	start := time.Now()
	if err := createFluxObjects(ctx, a.dyn, r, fluxNS, a.url(r)); err != nil {
		return out, err
	}
	if err := waitKustomizations(ctx, ks, all, head, a.fluxTimeout(r.N)); err != nil {
		// What the controllers' memory came to by then is still a
		// measure: the report says it with the failure.
		return out, fmt.Errorf("%w (peak RSS so far: %s)", err, peakRSS(procs))
	}
	first := sample{Wall: time.Since(start), CPU: ownCPU() - own, ClusterCPU: processCPU(pids) - cluster}
	a.logf("bench: Flux delivered %d apps in %s", r.N, first.Wall.Round(time.Millisecond))

	var changes []sample
	gr := a.dyn.Resource(gitRepositoryGVR).Namespace(fluxNS)
	for run := range a.runs {
		changed, head, err := r.change(appsChanged)
		if err != nil {
			return out, err
		}
		want := map[string]bool{}
		for _, i := range changed {
			want[appName(i)] = true
		}
		cluster, own := processCPU(pids), ownCPU()
		start := time.Now()
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, start.UTC().Format(time.RFC3339Nano))
		if _, err := gr.Patch(ctx, "bench", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return out, fmt.Errorf("flux: request a fetch: %w", err)
		}
		if err := waitKustomizations(ctx, ks, want, head, a.fluxTimeout(r.N)); err != nil {
			return out, err
		}
		changes = append(changes, sample{Wall: time.Since(start), CPU: ownCPU() - own, ClusterCPU: processCPU(pids) - cluster})
		// A new revision makes kustomize-controller reconcile every
		// Kustomization of the GitRepository: the next commit waits,
		// untimed, until all of them are at this one. After the last
		// there is none (on 2 cores that wait is as long as the first
		// delivery).
		if run == a.runs-1 {
			a.logf("bench: Flux: %d changed apps Ready in %s", len(changed), changes[len(changes)-1].Wall.Round(time.Millisecond))
			break
		}
		if err := waitKustomizations(ctx, ks, all, head, a.fluxTimeout(r.N)); err != nil {
			return out, err
		}
		a.logf("bench: Flux: %d changed apps Ready in %s, all %d at the new revision in %s", len(changed), changes[len(changes)-1].Wall.Round(time.Millisecond), r.N, time.Since(start).Round(time.Millisecond))
	}

	// Peak RSS over the controllers' whole life: VmHWM is kept by the
	// kernel, read before they stop.
	rss := map[string]float64{}
	for i, p := range procs {
		rss[fluxControllers[i]] = float64(p.hwm()) / 1024
	}
	first.PeakRSS = procs[1].hwm()
	for i := range changes {
		changes[i].PeakRSS = first.PeakRSS
	}
	out.first = measure(label+" (creation to all Ready)", []sample{first})
	out.first.ProcessRSSMiB = rss
	out.change = measure(label+" (requestedAt to changed Ready)", changes)
	out.change.ProcessRSSMiB = rss
	return out, nil
}

// fluxTimeout bounds each wait for Flux's Kustomizations at n apps:
// Options.FluxTimeout, or the apps rows' own bound.
func (a *appsBench) fluxTimeout(n int) time.Duration {
	if a.opts.FluxTimeout > 0 {
		return a.opts.FluxTimeout
	}
	return appsTimeout(n)
}

// peakRSS names each controller's VmHWM so far.
func peakRSS(procs []*longProc) string {
	parts := make([]string, 0, len(procs))
	for i, p := range procs {
		parts = append(parts, fmt.Sprintf("%s %.0f MiB", fluxControllers[i], float64(p.hwm())/1024))
	}
	return strings.Join(parts, ", ")
}

// startFlux starts both controllers with their state in dir and waits
// until they are ready. Every port is a free one on loopback; the
// artifacts that kustomize-controller downloads are served by
// source-controller on its --storage-adv-addr.
func (a *appsBench) startFlux(ctx context.Context, dir, ns string) ([]*longProc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	ports := make([]int, 5)
	for i := range ports {
		p, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	env := append(a.env(), "KUBECONFIG="+a.cluster.Kubeconfig, "RUNTIME_NAMESPACE="+ns)
	common := func(metrics, health int) []string {
		return []string{"--watch-all-namespaces=true", "--log-level=info", "--metrics-addr=" + addr(metrics), "--health-addr=" + addr(health)}
	}
	args := [][]string{
		append(common(ports[0], ports[1]), "--storage-path="+filepath.Join(dir, "storage"), "--storage-addr="+addr(ports[2]), "--storage-adv-addr="+addr(ports[2])),
		common(ports[3], ports[4]),
	}
	for i, n := range a.opts.FluxConcurrent {
		if n > 0 {
			args[i] = append(args[i], fmt.Sprintf("--concurrent=%d", n))
		}
	}
	health := []int{ports[1], ports[4]}
	var procs []*longProc
	for i, fb := range a.flux {
		p, err := startLong(fb.path, args[i], env, filepath.Join(dir, fb.name+".log"))
		if err != nil {
			return procs, err
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		if err := waitReady(ctx, p, fmt.Sprintf("http://%s/readyz", addr(health[i]))); err != nil {
			return procs, err
		}
	}
	return procs, nil
}

// waitReady polls a controller's readiness endpoint.
func waitReady(ctx context.Context, p *longProc, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if p.exited() {
			return fmt.Errorf("%s exited (log: %s)", filepath.Base(p.name), p.log)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after a minute (log: %s)", filepath.Base(p.name), p.log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createFluxObjects creates the GitRepository "bench" and one
// Kustomization per app, 16 creates in flight (the benchmark's own client
// has no rate limit, so that creating 1,000 objects costs about a second).
func createFluxObjects(ctx context.Context, dyn dynamic.Interface, r *appsRepo, ns, url string) error {
	gr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
		"metadata": map[string]any{"name": "bench", "namespace": ns},
		"spec":     map[string]any{"url": url, "interval": "1h", "timeout": "60s", "ref": map[string]any{"branch": "main"}},
	}}
	if _, err := dyn.Resource(gitRepositoryGVR).Namespace(ns).Create(ctx, gr, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("flux: create GitRepository: %w", err)
	}
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ks := dyn.Resource(kustomizationGVR).Namespace(ns)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				k := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
					"metadata": map[string]any{"name": appName(i), "namespace": ns},
					"spec": map[string]any{
						"interval": "1h", "timeout": "5m", "prune": true, "wait": true,
						"path":      "./apps/" + appName(i),
						"sourceRef": map[string]any{"kind": "GitRepository", "name": "bench"},
					},
				}}
				if _, err := ks.Create(ctx, k, metav1.CreateOptions{}); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("flux: create Kustomization %s: %w", appName(i), err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range r.N {
		work <- i
	}
	close(work)
	wg.Wait()
	return first
}

// kustomizationAt reports whether a Kustomization is Ready, for its
// current generation, at commit head.
func kustomizationAt(o *unstructured.Unstructured, head string) bool {
	gen, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	rev, _, _ := unstructured.NestedString(o.Object, "status", "lastAppliedRevision")
	if gen != o.GetGeneration() || !sameCommit(rev, head) {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m["status"] == "True"
		}
	}
	return false
}

// waitKustomizations follows the Kustomizations with a watch (a list of
// 1,000 of them a few times a second would load the API server) until
// every one named in want is Ready at head.
func waitKustomizations(ctx context.Context, ri dynamic.ResourceInterface, want map[string]bool, head string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	state := map[string]*unstructured.Unstructured{}
	done := func() (int, bool) {
		pending := 0
		for name := range want {
			if o := state[name]; o == nil || !kustomizationAt(o, head) {
				pending++
			}
		}
		return pending, pending == 0
	}
	for {
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			if ctx.Err() != nil {
				pending, _ := done()
				return fmt.Errorf("flux: %d of %d Kustomizations not Ready at %.12s after %s", pending, len(want), head, timeout)
			}
			return fmt.Errorf("flux: list Kustomizations: %w", err)
		}
		clear(state)
		for i := range list.Items {
			state[list.Items[i].GetName()] = &list.Items[i]
		}
		if _, ok := done(); ok {
			return nil
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
		if err != nil && !apierrors.IsGone(err) && ctx.Err() == nil {
			return fmt.Errorf("flux: watch Kustomizations: %w", err)
		}
		if w != nil {
			for ev := range w.ResultChan() {
				o, ok := ev.Object.(*unstructured.Unstructured)
				if !ok || ev.Type == watch.Error {
					break
				}
				if ev.Type == watch.Deleted {
					delete(state, o.GetName())
				} else {
					state[o.GetName()] = o
				}
				if _, ok := done(); ok {
					w.Stop()
					return nil
				}
			}
			w.Stop()
		}
		if ctx.Err() != nil {
			pending, _ := done()
			return fmt.Errorf("flux: %d of %d Kustomizations not Ready at %.12s after %s", pending, len(want), head, timeout)
		}
	}
}

// longProc is a process that runs until stopped: a controller, or deliver
// reconcile without --once.
type longProc struct {
	name    string
	log     string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	once    sync.Once
}

func startLong(name string, args, env []string, logFile string) (*longProc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = longAttr()
	p := &longProc{name: name, log: logFile, cmd: cmd, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(name), err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *longProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// hwm is the process's peak RSS so far (VmHWM), in KiB; 0 once it exited.
func (p *longProc) hwm() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

// cpu is the process's user+system time so far.
func (p *longProc) cpu() time.Duration { return processCPU([]int{p.cmd.Process.Pid}) }

// stop ends the process: SIGTERM, then SIGKILL after ten seconds.
func (p *longProc) stop() {
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// setUpFlux finds and stages the controllers' binaries and installs their
// CRDs, once per run.
func (b *bench) setUpFlux(ctx context.Context) error {
	bins, err := findFlux()
	if err != nil {
		return err
	}
	for i := range bins {
		if bins[i].path, err = stageBinary(filepath.Join(b.opts.Dir, "bin"), bins[i].path); err != nil {
			return err
		}
	}
	b.flux = bins
	b.report.Flux = fmt.Sprintf("source-controller %s --concurrent=%d, kustomize-controller %s --concurrent=%d (0: Flux's defaults, 2 and 4)", bins[0].version, b.opts.FluxConcurrent[0], bins[1].version, b.opts.FluxConcurrent[1])
	return b.installFluxCRDs(ctx)
}
