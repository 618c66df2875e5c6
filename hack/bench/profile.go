package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// Profile is the in-process CPU profile of deliver's slowest row. deliver
// has no profiling flag, so the row's step runs here through pkg/pipeline,
// the code the CLI runs, with runtime/pprof on.
type Profile struct {
	Row     string `json:"row"`
	Objects int    `json:"objects"`
	File    string `json:"file"`
	Wall    string `json:"wall"`
	// CPU is user+system time of this process during the step: the rest of
	// the wall time is spent waiting for the API server.
	CPU      string `json:"cpu"`
	AllocMiB uint64 `json:"allocMiB"`
	// Top is `go tool pprof -top` sorted by flat and by cumulative time.
	Top string `json:"top"`
	// Requests lists the step's API requests (when few) and counts them
	// by method and resource, with their summed durations.
	Requests string `json:"requests"`
}

// replay reproduces deliver's side of a row in-process: setup outside the
// profile, then the profiled step.
type replay struct {
	setup func(ctx context.Context) error
	run   func(ctx context.Context) error
}

func replayKey(n int, row string) string { return fmt.Sprintf("%d/%s", n, row) }

// pipelineOptions are what the CLI passes for `deliver <cmd> --path dir -f .
// --app ns --wait=false` (its flag defaults: 16 requests in flight, 200
// QPS, burst 400).
func (b *bench) pipelineOptions(md *manifestDir) pipeline.Options {
	wait := false
	return pipeline.Options{
		Path: md.Dir, Manifests: ".", App: md.Namespace, Wait: &wait,
		Kube: func(string) (*rest.Config, error) {
			c := rest.CopyConfig(b.cluster.Config)
			c.QPS, c.Burst = b.clientLimits()
			c.Wrap(b.requests.wrap)
			return c, nil
		},
	}
}

// clientLimits returns the CLI's default QPS and burst, or those given in
// -deliver-args (--qps=N, --burst=N).
func (b *bench) clientLimits() (float32, int) {
	qps, burst := float32(200), 400
	for _, a := range b.opts.DeliverArgs {
		if v, ok := strings.CutPrefix(a, "--qps="); ok {
			if f, err := strconv.ParseFloat(v, 32); err == nil {
				qps = float32(f)
			}
		}
		if v, ok := strings.CutPrefix(a, "--burst="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				burst = n
			}
		}
	}
	return qps, burst
}

func pipelineErr(res *pipeline.Result, err error) error {
	if err != nil {
		return err
	}
	return res.Err()
}

// registerReplays records how to rerun deliver's rows of size n in-process.
func (b *bench) registerReplays(n int, renderRepos map[string]string) {
	if b.replays == nil {
		b.replays = map[string]replay{}
	}
	for row, repo := range renderRepos {
		b.replays[replayKey(n, row)] = replay{run: func(ctx context.Context) error {
			return renderLikeCLI(ctx, repo)
		}}
	}
}

func (b *bench) registerClusterReplays(n int, changedRow string) {
	if b.replays == nil {
		b.replays = map[string]replay{}
	}
	var md *manifestDir
	firstApply := replay{
		setup: func(ctx context.Context) (err error) { md, err = b.newDir(ctx, n, "deliver"); return err },
		run:   func(ctx context.Context) error { return pipelineErr(pipeline.Apply(ctx, b.pipelineOptions(md))) },
	}
	b.replays[replayKey(n, "first apply")] = firstApply
	for _, w := range b.opts.RawWorkers {
		b.replays[replayKey(n, fmt.Sprintf("first apply (floor, %d workers)", w))] = firstApply
	}
	if w := b.opts.LeanWorkers; w > 0 {
		b.replays[replayKey(n, fmt.Sprintf("first apply (floor, %d workers, deliver's form)", w))] = firstApply
	}
	b.replays[replayKey(n, "no-change diff")] = replay{run: func(ctx context.Context) error {
		return pipelineErr(pipeline.Diff(ctx, b.pipelineOptions(b.lastDeliver[n])))
	}}
	b.replays[replayKey(n, "no-change diff, full dry run")] = replay{run: func(ctx context.Context) error {
		o := b.pipelineOptions(b.lastDeliver[n])
		o.FullDryRun = true
		return pipelineErr(pipeline.Diff(ctx, o))
	}}
	b.replays[replayKey(n, changedRow)] = replay{
		setup: func(ctx context.Context) error { _, err := b.lastDeliver[n].change(); return err },
		run: func(ctx context.Context) error {
			o := b.pipelineOptions(b.lastDeliver[n])
			if err := pipelineErr(pipeline.Diff(ctx, o)); err != nil {
				return err
			}
			return pipelineErr(pipeline.Apply(ctx, o))
		},
	}
}

// renderLikeCLI is what `deliver render` does: the pipeline, then one YAML
// document per object and the redactor over the whole output (cmd/deliver
// is a main package, so its code is repeated here).
func renderLikeCLI(ctx context.Context, repo string) error {
	red := secrets.NewRedactor(secrets.RedactorOptions{})
	res, err := pipeline.Render(ctx, pipeline.Options{Path: repo, Redactor: red})
	if err := pipelineErr(res, err); err != nil {
		return err
	}
	var out strings.Builder
	for _, a := range res.Apps {
		if a.Set == nil {
			continue
		}
		for _, o := range append(append([]*object.Object(nil), a.Set.Objects...), a.Set.Hooks...) {
			data, err := yaml.Marshal(o.Object)
			if err != nil {
				return err
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s", o.Origin, data)
		}
	}
	_, err = io.WriteString(io.Discard, red.Redact(out.String()))
	return err
}

// profileRows profiles deliver's slowest row (the longest median) and, when
// it is another one, the row where deliver compares worst (the highest
// ratio): the first shows where big runs spend, the second what to fix.
func (b *bench) profileRows(ctx context.Context) ([]*Profile, error) {
	if b.opts.ProfileRow != "" {
		// The rows asked for, at the largest size that has them; a row
		// named exactly wins over rows whose names contain the name.
		var pick *Row
		exact := false
		for i := range b.report.Rows {
			r := &b.report.Rows[i]
			if _, ok := b.replays[replayKey(r.Objects, r.Name)]; !ok || !strings.Contains(r.Name, b.opts.ProfileRow) {
				continue
			}
			isExact := r.Name == b.opts.ProfileRow
			if pick == nil || (isExact && !exact) || (isExact == exact && r.Objects >= pick.Objects) {
				pick, exact = r, isExact
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("no measured row matches -profile-row %q", b.opts.ProfileRow)
		}
		p, err := b.profile(ctx, pick)
		if err != nil {
			return nil, err
		}
		return []*Profile{p}, nil
	}
	var slowest, worst *Row
	for i := range b.report.Rows {
		r := &b.report.Rows[i]
		if _, ok := b.replays[replayKey(r.Objects, r.Name)]; !ok {
			continue
		}
		if slowest == nil || r.Deliver.MedianMS > slowest.Deliver.MedianMS {
			slowest = r
		}
		if worst == nil || r.Ratio > worst.Ratio {
			worst = r
		}
	}
	if slowest == nil {
		return nil, errors.New("no row to profile")
	}
	var out []*Profile
	for _, r := range []*Row{slowest, worst} {
		if len(out) == 1 && r == slowest {
			break
		}
		p, err := b.profile(ctx, r)
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// profile runs deliver's side of one row in-process under the CPU profiler.
func (b *bench) profile(ctx context.Context, slowest *Row) (*Profile, error) {
	rp := b.replays[replayKey(slowest.Objects, slowest.Name)]
	b.logf("bench: profiling %q at %d objects in-process", slowest.Name, slowest.Objects)
	if rp.setup != nil {
		if err := rp.setup(ctx); err != nil {
			return nil, err
		}
	}
	file := filepath.Join(b.opts.Dir, fmt.Sprintf("cpu-%d-%s.pprof", slowest.Objects, slug(slowest.Name)))
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var before, after syscall.Rusage
	var mBefore, mAfter runtime.MemStats
	runtime.ReadMemStats(&mBefore)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	// With -profile-repeat the step runs several times (its setup before
	// each, inside the profile) for more samples; wall, CPU and
	// allocations are then per run, the requests those of the last run.
	var runErr error
	var wall time.Duration
	for i := range b.opts.ProfileRepeat {
		if i > 0 && rp.setup != nil {
			if runErr = rp.setup(ctx); runErr != nil {
				break
			}
		}
		b.requests.reset()
		start := time.Now()
		runErr = rp.run(ctx)
		wall += time.Since(start)
		if runErr != nil {
			break
		}
	}
	pprof.StopCPUProfile()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	runtime.ReadMemStats(&mAfter)
	if runErr != nil {
		return nil, fmt.Errorf("%s in-process: %w", slowest.Name, runErr)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	reps := time.Duration(b.opts.ProfileRepeat)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond / reps
	wall /= reps

	p := &Profile{
		Row: slowest.Name, Objects: slowest.Objects, File: file,
		Wall: wall.Round(time.Millisecond).String(), CPU: cpu.Round(time.Millisecond).String(),
		AllocMiB: (mAfter.TotalAlloc - mBefore.TotalAlloc) / uint64(reps) >> 20,
	}
	var top strings.Builder
	for _, args := range [][]string{{"-top", "-nodecount=20"}, {"-top", "-cum", "-nodecount=30"}} {
		out, err := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, args...), file)...).CombinedOutput()
		if err != nil {
			return p, fmt.Errorf("go tool pprof: %w\n%s", err, out)
		}
		top.Write(out)
	}
	p.Top = top.String()
	p.Requests = b.requests.summary(120)
	return p, nil
}

func slug(s string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s)), "-")
}
