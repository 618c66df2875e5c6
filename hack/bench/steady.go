package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// The steady rows watch the long-running reconciler of n apps that are
// already delivered, for -steady: its resident memory every ten seconds
// (a reconciler that leaks grows however little it does), and how long it
// takes to revert drift made through the API every thirty seconds, as a
// kubectl edit would.

const (
	// steadySample is how often the reconciler's RSS is read.
	steadySample = 10 * time.Second
	// steadyDrift is how often an object is edited; the first edit comes
	// after half of it.
	steadyDrift = 30 * time.Second
	// revertTimeout bounds the wait for one revert: the reconciler says
	// it reverts within seconds.
	revertTimeout = time.Minute
	// steadyTarget is the goal of issue #18.
	steadyTarget = "1,000 apps for 10 min: RSS < 250 MiB and flat, every drift reverted"
)

// SteadyRow is one steady row.
type SteadyRow struct {
	Apps    int `json:"apps"`
	Objects int `json:"objects"`
	// Args are the reconciler's flags (without the kubeconfig).
	Args []string `json:"args"`
	// Duration is how long the reconciler was watched, after every app
	// was delivered.
	Duration string `json:"duration"`
	// ApplyMS is the deliver apply (waiting) that delivered the apps
	// before the reconciler started; ReadyMS is from the reconciler's
	// start to every app reported succeeded at the commit.
	ApplyMS float64 `json:"applyMs"`
	ReadyMS float64 `json:"readyMs"`
	// RSS are the samples of VmRSS over the watch, the first at its start.
	RSS []RSSSample `json:"rss"`
	// StartRSSMiB, EndRSSMiB and MaxRSSMiB are of those samples; PeakRSSMiB
	// is the process's VmHWM over its whole life, the first delivery
	// included.
	StartRSSMiB float64 `json:"startRssMiB"`
	EndRSSMiB   float64 `json:"endRssMiB"`
	MaxRSSMiB   float64 `json:"maxRssMiB"`
	PeakRSSMiB  float64 `json:"peakRssMiB"`
	// SlopeMiBPerMin is the least-squares slope of RSS over the second
	// half of the watch: flat is near zero.
	SlopeMiBPerMin float64 `json:"slopeMiBPerMin"`
	// CPUMS is the reconciler's user+system time over the watch.
	CPUMS float64 `json:"cpuMs"`
	// Drifts are the edits made; RevertMS the time from each edit to the
	// object being as deliver applied it again, for those reverted.
	Drifts         []Drift   `json:"drifts"`
	RevertMS       []float64 `json:"revertMs"`
	RevertMedianMS float64   `json:"revertMedianMs"`
	RevertMaxMS    float64   `json:"revertMaxMs"`
	Target         string    `json:"target"`
}

// RSSSample is the reconciler's resident memory at one time.
type RSSSample struct {
	// Seconds since the watch started.
	Seconds float64 `json:"s"`
	MiB     float64 `json:"MiB"`
}

// Drift is one edit of a delivered object.
type Drift struct {
	// Object is Kind/namespace/name; Field what was changed.
	Object string `json:"object"`
	Field  string `json:"field"`
	// RevertMS is 0 when the edit was not reverted within revertTimeout;
	// Error then says what was seen.
	RevertMS float64 `json:"revertMs,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// driftKind is a kind of edit the steady rows make: a label of a Service
// (a change of metadata only, seen by its resourceVersion) and the image
// of a Deployment (a change of spec, seen by its generation). Both are
// fields deliver applies. A label of a Deployment, which does not move its
// generation, is reverted too (the reconciler also compares the labels and
// annotations deliver owns in managedFields) but is not among them, so
// that the rows stay comparable with earlier ones.
type driftKind struct {
	kind  string
	gvr   schema.GroupVersionResource
	field string
	// patch is a strategic merge patch that makes the drift, tagged k.
	patch func(k int) string
	// reverted reports whether the object is as deliver applied it.
	reverted func(o *unstructured.Unstructured) bool
}

// appImage is the image of every apps row's Deployment (apps.go).
const appImage = "registry.example/bench/app:1.0.0"

// driftKinds are the edits, taken in turn.
func driftKinds() []driftKind {
	return []driftKind{
		{
			kind: "Service", gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"},
			field: "metadata.labels[app.kubernetes.io/part-of]",
			patch: func(k int) string {
				return fmt.Sprintf(`{"metadata":{"labels":{"app.kubernetes.io/part-of":"drift-%d"}}}`, k)
			},
			reverted: func(o *unstructured.Unstructured) bool { return o.GetLabels()["app.kubernetes.io/part-of"] == "bench" },
		},
		{
			kind: "Deployment", gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			field: "spec.template.spec.containers[app].image",
			patch: func(k int) string {
				return fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/bench/app:drift-%d"}]}}}}`, k)
			},
			reverted: func(o *unstructured.Unstructured) bool {
				cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				for _, c := range cs {
					if m, ok := c.(map[string]any); ok && m["name"] == "app" {
						return m["image"] == appImage
					}
				}
				return false
			},
		},
	}
}

// steadyRow delivers n apps, starts the reconciler on them and watches it
// for -steady.
func (b *bench) steadyRow(ctx context.Context, n int) error {
	a, err := b.startApps("steady", n)
	if err != nil {
		return err
	}
	defer a.git.Close()
	r, err := a.newRepo(ctx, "s")
	if err != nil {
		return err
	}
	head, err := r.head()
	if err != nil {
		return err
	}
	row := SteadyRow{Apps: n, Objects: 4 * n, Target: steadyTarget}

	b.logf("bench: %d apps: steady: deliver apply", n)
	s, err := runProc(ctx, proc{name: b.deliver, args: a.deliverArgs(r, "apply", "--path", r.Dir), env: b.env()})
	if err != nil {
		return fmt.Errorf("steady: first apply: %w", err)
	}
	row.ApplyMS = ms(s.Wall)

	// The reconciler's defaults but for the repository: it fetches every
	// minute (one ls-remote when nothing moved) and self-heals.
	args := a.deliverArgs(r, "reconcile", "--repo", a.url(r), "--ref", "main")
	row.Args = slices.Clone(args[3:])
	log := filepath.Join(b.opts.Dir, r.Name+".log")
	p, err := startLong(b.deliver, args, b.env(), log)
	if err != nil {
		return err
	}
	defer p.stop()
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if err := a.waitDelivered(ctx, p, r, all, head); err != nil {
		return fmt.Errorf("steady: %w", err)
	}
	row.ReadyMS = ms(time.Since(p.started))
	b.logf("bench: %d apps: steady: reconciler ready in %s; watching it for %s (log: %s)", n, time.Since(p.started).Round(time.Millisecond), b.opts.Steady, log)

	start, cpu := time.Now(), p.cpu()
	end := start.Add(b.opts.Steady)
	samples := make(chan []RSSSample, 1)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go func() { samples <- sampleRSS(sampleCtx, p, start, end) }()
	for k := 0; ; k++ {
		at := start.Add(steadyDrift/2 + time.Duration(k)*steadyDrift)
		if !at.Before(end) {
			break
		}
		if err := sleepUntil(ctx, at); err != nil {
			stopSampling()
			return err
		}
		if p.exited() {
			stopSampling()
			return fmt.Errorf("steady: deliver reconcile exited (log: %s)", log)
		}
		d := b.drift(ctx, r, k)
		if d.Error != "" {
			b.logf("bench: %d apps: steady: %s %s: %s", n, d.Object, d.Field, d.Error)
		}
		row.Drifts = append(row.Drifts, d)
		if d.RevertMS > 0 {
			row.RevertMS = append(row.RevertMS, d.RevertMS)
		}
	}
	if err := sleepUntil(ctx, end); err != nil {
		stopSampling()
		return err
	}
	stopSampling()
	row.RSS = <-samples
	row.CPUMS = ms(p.cpu() - cpu)
	row.PeakRSSMiB = float64(p.hwm()) / 1024
	if p.exited() {
		return fmt.Errorf("steady: deliver reconcile exited (log: %s)", log)
	}
	row.Duration = time.Since(start).Round(time.Second).String()
	row.summarize()
	b.report.Steady = append(b.report.Steady, row)
	return nil
}

// drift edits the k-th object and waits until the reconciler reverted it.
func (b *bench) drift(ctx context.Context, r *appsRepo, k int) Drift {
	kinds := driftKinds()
	dk := kinds[k%len(kinds)]
	// Apps spread over the repository, a different one each time.
	i := (k * 7919) % r.N
	name, ns := appName(i), r.namespace(i)
	d := Drift{Object: fmt.Sprintf("%s/%s/%s", dk.kind, ns, name), Field: dk.field}
	ri := b.dyn.Resource(dk.gvr).Namespace(ns)
	o, err := ri.Patch(ctx, name, types.StrategicMergePatchType, []byte(dk.patch(k)), metav1.PatchOptions{FieldManager: "bench-drift"})
	if err != nil {
		d.Error = fmt.Sprintf("patch: %v", err)
		return d
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, revertTimeout)
	defer cancel()
	rv := o.GetResourceVersion()
	for {
		w, err := ri.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: rv})
		if err != nil {
			d.Error = fmt.Sprintf("not reverted within %s (watch: %v)", revertTimeout, err)
			return d
		}
		for ev := range w.ResultChan() {
			o, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Error {
				break
			}
			rv = o.GetResourceVersion()
			if ev.Type == watch.Deleted {
				continue
			}
			if dk.reverted(o) {
				w.Stop()
				d.RevertMS = ms(time.Since(start))
				return d
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			d.Error = fmt.Sprintf("not reverted within %s", revertTimeout)
			return d
		}
		// The watch ended early (expired or closed): look again and
		// watch on from what the server has now.
		cur, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err == nil && dk.reverted(cur) {
			d.RevertMS = ms(time.Since(start))
			return d
		}
		if err == nil {
			rv = cur.GetResourceVersion()
		}
	}
}

// sampleRSS reads the reconciler's VmRSS now and every steadySample until
// end (or ctx ends), and a last time at the end.
func sampleRSS(ctx context.Context, p *longProc, start, end time.Time) []RSSSample {
	var out []RSSSample
	take := func() {
		if kb := vmRSS(p.cmd.Process.Pid); kb > 0 {
			out = append(out, RSSSample{Seconds: time.Since(start).Seconds(), MiB: float64(kb) / 1024})
		}
	}
	take()
	t := time.NewTicker(steadySample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			take()
			return out
		case now := <-t.C:
			if !now.Before(end) {
				take()
				return out
			}
			take()
		}
	}
}

// vmRSS is a process's resident set now, in KiB (0 once it exited).
func vmRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb
			}
		}
	}
	return 0
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// summarize fills the row's figures from its samples and reverts.
func (r *SteadyRow) summarize() {
	if len(r.RSS) > 0 {
		r.StartRSSMiB, r.EndRSSMiB = r.RSS[0].MiB, r.RSS[len(r.RSS)-1].MiB
		for _, s := range r.RSS {
			r.MaxRSSMiB = max(r.MaxRSSMiB, s.MiB)
		}
		half := r.RSS[len(r.RSS)-1].Seconds / 2
		var second []RSSSample
		for _, s := range r.RSS {
			if s.Seconds >= half {
				second = append(second, s)
			}
		}
		r.SlopeMiBPerMin = slopePerMinute(second)
	}
	if len(r.RevertMS) > 0 {
		sorted := slices.Sorted(slices.Values(r.RevertMS))
		r.RevertMaxMS = sorted[len(sorted)-1]
		if len(sorted)%2 == 1 {
			r.RevertMedianMS = sorted[len(sorted)/2]
		} else {
			r.RevertMedianMS = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
		}
	}
}

// slopePerMinute is the least-squares slope of the samples, in MiB per
// minute; 0 for fewer than two samples or no spread in time.
func slopePerMinute(ss []RSSSample) float64 {
	if len(ss) < 2 {
		return 0
	}
	var mx, my float64
	for _, s := range ss {
		mx += s.Seconds
		my += s.MiB
	}
	n := float64(len(ss))
	mx, my = mx/n, my/n
	var num, den float64
	for _, s := range ss {
		num += (s.Seconds - mx) * (s.MiB - my)
		den += (s.Seconds - mx) * (s.Seconds - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den * 60
}

// printSteady prints the steady rows.
func (b *bench) printSteady() {
	if len(b.report.Steady) == 0 {
		return
	}
	fmt.Fprintf(b.opts.Log, "\nsteady rows (the running reconciler of apps already delivered, an object edited every %s; target: %s)\n", steadyDrift, steadyTarget)
	w := tabwriter.NewWriter(b.opts.Log, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "apps\twatched\tready\tRSS start\tRSS end\tRSS max\tslope (2nd half)\tpeak (VmHWM)\tCPU\treverted\trevert median\trevert max")
	for _, r := range b.report.Steady {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%+.2f MiB/min\t%s\t%s\t%d of %d\t%s\t%s\n", r.Apps, r.Duration, fmtMS(r.ReadyMS),
			fmtMiB(r.StartRSSMiB), fmtMiB(r.EndRSSMiB), fmtMiB(r.MaxRSSMiB), r.SlopeMiBPerMin, fmtMiB(r.PeakRSSMiB), fmtMS(r.CPUMS),
			len(r.RevertMS), len(r.Drifts), fmtMS(r.RevertMedianMS), fmtMS(r.RevertMaxMS))
	}
	w.Flush()
	for _, r := range b.report.Steady {
		for _, d := range r.Drifts {
			if d.Error != "" {
				fmt.Fprintf(b.opts.Log, "%d apps: %s %s: %s\n", r.Apps, d.Object, d.Field, d.Error)
			}
		}
	}
}
