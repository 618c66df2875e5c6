package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// sample is one timed run of a tool.
type sample struct {
	Wall time.Duration
	// PeakRSS is the process's own peak resident set in KiB (0 in-process).
	PeakRSS int64
	// CPU is the tool's own user+system time: its processes', or this
	// process's for an in-process run.
	CPU time.Duration
	// ClusterCPU is the user+system time the control plane's processes
	// (etcd, kube-apiserver, the controllers, kwok) spent during the run.
	ClusterCPU time.Duration
	// Mark is when the process logged proc.mark, from its start (0: it
	// did not, or the proc has no mark).
	Mark time.Duration
}

// proc is one CLI invocation of a timed step.
type proc struct {
	name string
	args []string
	env  []string // nil: inherit
	ok   []int    // exit codes that are not failures (diff: changes found)
	// mark is a log message (slog's msg) whose first line on stderr
	// sample.Mark times, such as the reconciler's "revision": what a target
	// measured from a point inside the run is measured from.
	mark string
}

// runProcs runs the processes one after the other and returns their summed
// wall time and the highest peak RSS among them.
func runProcs(ctx context.Context, ps ...proc) (sample, error) {
	var s sample
	for _, p := range ps {
		one, err := runProc(ctx, p)
		if err != nil {
			return s, err
		}
		s.Wall += one.Wall
		s.CPU += one.CPU
		s.PeakRSS = max(s.PeakRSS, one.PeakRSS)
	}
	return s, nil
}

func runProc(ctx context.Context, p proc) (sample, error) {
	cmd := exec.CommandContext(ctx, p.name, p.args...)
	cmd.Env = p.env
	// Output goes straight to /dev/null: a pipe would add our copying to the
	// measured time.
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return sample{}, err
	}
	defer devnull.Close()
	var stderr bytes.Buffer
	marker := &markWriter{w: &stderr, msg: p.mark}
	cmd.Stdout, cmd.Stderr = devnull, marker
	start := time.Now()
	marker.start = start
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("start %s: %w", filepath.Base(p.name), err)
	}
	hwm := make(chan int64, 1)
	go func() { hwm <- pollHWM(cmd.Process.Pid) }()
	err = cmd.Wait()
	wall := time.Since(start)
	peak := <-hwm
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !slices.Contains(p.ok, ee.ExitCode()) {
			msg := stderr.String()
			if len(msg) > 2000 {
				msg = msg[len(msg)-2000:]
			}
			return sample{}, fmt.Errorf("%s %s: %w\n%s", filepath.Base(p.name), strings.Join(p.args, " "), err, msg)
		}
	}
	return sample{Wall: wall, PeakRSS: peak, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), Mark: marker.at}, nil
}

// markWriter passes a process's stderr to w and notes when the first log
// line with the message msg arrived. exec copies stderr to it from one
// goroutine as the process writes; a line split over two writes is found
// when its second part arrives, a few microseconds late.
type markWriter struct {
	w     io.Writer
	msg   string
	start time.Time
	at    time.Duration
	tail  []byte // the unfinished last line of the writes so far
}

func (m *markWriter) Write(p []byte) (int, error) {
	if m.msg != "" && m.at == 0 {
		m.tail = append(m.tail, p...)
		for {
			i := bytes.IndexByte(m.tail, '\n')
			if i < 0 {
				break
			}
			line := m.tail[:i]
			// slog's text and JSON handlers.
			if bytes.Contains(line, []byte(" msg="+m.msg+" ")) || bytes.HasSuffix(line, []byte(" msg="+m.msg)) ||
				bytes.Contains(line, []byte(`"msg":"`+m.msg+`"`)) {
				m.at = time.Since(m.start)
				m.tail = nil
				break
			}
			m.tail = m.tail[i+1:]
		}
	}
	return m.w.Write(p)
}

// selfCPU is this process's user+system time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU sums the user+system time of the processes pids so far, from
// /proc/pid/stat (in clock ticks of 1/100 s on Linux).
func processCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is field 3, utime 14 and stime 15.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

// pollHWM samples VmHWM in /proc/pid/status until the process has exited
// and returns the highest value, in KiB. getrusage's ru_maxrss cannot be
// used: Go starts children through vfork, and Linux starts a child's
// maxrss at its parent's peak, which is this benchmark's own.
func pollHWM(pid int) int64 {
	var peak int64
	path := fmt.Sprintf("/proc/%d/status", pid)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			return peak
		}
		found := false
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				found = true
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					peak = max(peak, kb)
				}
			}
		}
		if !found { // a zombie has no memory lines: the process has exited
			return peak
		}
		time.Sleep(time.Millisecond)
	}
}

// rawApply is the floor of a first apply: one server-side apply per object
// from workers goroutines, no process start, discovery, planning, ordering
// or inventory. Its field manager is its own, as a tool's would be. lean
// sends the applies as deliver does, as JSON with fieldValidation=Ignore.
func rawApply(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, workers int, lean bool) error {
	resources := map[string]kind{}
	for _, k := range kinds {
		resources[k.name] = k
	}
	work := make(chan *unstructured.Unstructured)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for o := range work {
				gvr := resources[o.GetKind()].resource
				var err error
				if lean {
					err = leanApply(ctx, dyn.Resource(gvr).Namespace(o.GetNamespace()), o)
				} else {
					_, err = dyn.Resource(gvr).Namespace(o.GetNamespace()).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "raw-client", Force: true})
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("raw apply %s %s: %w", o.GetKind(), o.GetName(), err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	return first
}

// leanApply is one apply of rawApply's lean form.
func leanApply(ctx context.Context, ri dynamic.ResourceInterface, o *unstructured.Unstructured) error {
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: "raw-client", Force: &force, FieldValidation: metav1.FieldValidationIgnore,
	})
	return err
}

// createNamespace makes a fresh namespace for one run, outside the timing:
// first applies always start from an empty namespace.
func createNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// settle waits, outside the timing, until the controllers have caught up
// with a namespace's Deployments (the replica-1 ones have a running Pod), so
// that the Pod churn of one row does not land in the next row's time.
func settle(ctx context.Context, cs kubernetes.Interface, ns string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		list, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("settle %s: %w", ns, err)
		}
		pending := 0
		for _, d := range list.Items {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas != want {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("settle %s: %d Deployments not settled after %s", ns, pending, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// median of the samples' wall times, and the highest peak RSS.
// medianOf returns the median of what f takes from each sample.
func medianOf(ss []sample, f func(sample) time.Duration) time.Duration {
	if len(ss) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(ss))
	for i, s := range ss {
		ds[i] = f(s)
	}
	slices.Sort(ds)
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}

func summarize(ss []sample) (median time.Duration, peak int64) {
	for _, s := range ss {
		peak = max(peak, s.PeakRSS)
	}
	return medianOf(ss, func(s sample) time.Duration { return s.Wall }), peak
}
