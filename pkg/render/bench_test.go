package render

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The benchmarks render 1,000 objects with deliver and with the real CLI in
// one run: go test -run '^$' -bench . ./pkg/render/
// The CLI subbenchmark reports its time relative to deliver's (cli/deliver)
// and the CLI's peak resident memory; deliver's reports allocations and the
// test process's peak resident memory.

const benchObjects = 1000

func benchChart(b *testing.B) string {
	b.Helper()
	tmpl := `{{- range $i := until (int .Values.count) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "cm-%04d" $i }}
  namespace: {{ $.Release.Namespace }}
  labels:
    app.kubernetes.io/instance: {{ $.Release.Name }}
data:
  index: "{{ $i }}"
  payload: {{ $.Values.payload | quote }}
{{- end }}
`
	return writeTree(b, map[string]string{
		"big/Chart.yaml":         "apiVersion: v2\nname: big\nversion: 0.1.0\n",
		"big/values.yaml":        fmt.Sprintf("count: %d\npayload: %q\n", benchObjects, strings.Repeat("x", 200)),
		"big/templates/cms.yaml": tmpl,
	})
}

func benchOverlay(b *testing.B) string {
	b.Helper()
	var cms strings.Builder
	for i := range benchObjects {
		fmt.Fprintf(&cms, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%04d\ndata:\n  index: %q\n  payload: %s\n", i, fmt.Sprint(i), strings.Repeat("x", 200))
	}
	return writeTree(b, map[string]string{
		"base/kustomization.yaml":    "resources: [cms.yaml]\n",
		"base/cms.yaml":              cms.String(),
		"overlay/kustomization.yaml": "namespace: bench\nnamePrefix: prod-\nlabels:\n- pairs: {env: prod}\nresources: [../base]\npatches:\n- target: {kind: ConfigMap}\n  patch: |-\n    - op: add\n      path: /metadata/annotations\n      value: {patched: \"true\"}\n",
	})
}

// sideBySide runs deliver and the CLI as two subbenchmarks of b.
func sideBySide(b *testing.B, deliver func() (int, error), cli func() *exec.Cmd) {
	var deliverPerOp time.Duration
	b.Run("deliver", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			got, err := deliver()
			if err != nil {
				b.Fatal(err)
			}
			if got != benchObjects {
				b.Fatalf("rendered %d objects, want %d", got, benchObjects)
			}
			n++
		}
		deliverPerOp = b.Elapsed() / time.Duration(n)
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
			b.ReportMetric(float64(ru.Maxrss), "proc-peak-RSS-KiB")
		}
	})
	b.Run("cli", func(b *testing.B) {
		var peak, hwm int64
		n := 0
		for b.Loop() {
			cmd := cli()
			var stderr strings.Builder
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			done := make(chan int64)
			go func() { done <- pollHWM(cmd.Process.Pid) }()
			err := cmd.Wait()
			hwm = max(hwm, <-done)
			if err != nil {
				b.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				peak = max(peak, ru.Maxrss)
			}
			n++
		}
		cliPerOp := b.Elapsed() / time.Duration(n)
		// Linux starts a child's ru_maxrss at its parent's peak (Go execs
		// through vfork), so the rusage figure is a floor of the benchmark
		// process's own peak; VmHWM sampled every millisecond from /proc is
		// the CLI's own.
		b.ReportMetric(float64(peak), "rusage-maxrss-KiB")
		b.ReportMetric(float64(hwm), "peak-RSS-KiB")
		if deliverPerOp > 0 {
			b.ReportMetric(float64(cliPerOp)/float64(deliverPerOp), "cli/deliver")
			b.Logf("cli %v/op, deliver %v/op: the CLI takes %.2fx deliver's time; CLI peak RSS %d KiB (VmHWM), rusage maxrss %d KiB", cliPerOp, deliverPerOp, float64(cliPerOp)/float64(deliverPerOp), hwm, peak)
		}
	})
}

// pollHWM samples /proc/pid/status VmHWM until the process exits and
// returns the last value read, in KiB.
func pollHWM(pid int) int64 {
	var last int64
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return last
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kb int64
				if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil && kb > 0 {
					last = max(last, kb)
				}
			}
		}
		if !strings.Contains(string(data), "VmHWM:") { // zombie: exited
			return last
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkHelm1000(b *testing.B) {
	root := benchChart(b)
	helm := testbin(b, "helm")
	home := b.TempDir()
	ctx := context.Background()
	sideBySide(b, func() (int, error) {
		set, err := Helm(ctx, HelmOptions{Root: root, Chart: "big", ReleaseName: "bench", Namespace: "bench"})
		if err != nil {
			return 0, err
		}
		return set.Len(), nil
	}, func() *exec.Cmd {
		cmd := exec.Command(helm, "template", "bench", filepath.Join(root, "big"), "--namespace", "bench")
		cmd.Env = []string{"HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_CACHE_HOME=" + home, "HELM_DATA_HOME=" + home}
		return cmd
	})
}

func BenchmarkKustomize1000(b *testing.B) {
	root := benchOverlay(b)
	kustomize := testbin(b, "kustomize")
	ctx := context.Background()
	var r Renderer
	sideBySide(b, func() (int, error) {
		set, err := r.Kustomize(ctx, KustomizeOptions{Root: root, Path: "overlay"})
		if err != nil {
			return 0, err
		}
		return set.Len(), nil
	}, func() *exec.Cmd {
		cmd := exec.Command(kustomize, "build", filepath.Join(root, "overlay"))
		cmd.Env = []string{"HOME=" + b.TempDir()}
		return cmd
	})
}

// BenchmarkPlain1000 reads a folder of 1,000 one-object files, as the
// diff and apply rows of hack/bench do (no CLI to compare with: kubectl
// reads and sends each file itself).
func BenchmarkPlain1000(b *testing.B) {
	files := map[string]string{}
	for i := range benchObjects {
		files[fmt.Sprintf("m/cm-%04d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%04d\n  namespace: bench\n  labels: {app.kubernetes.io/name: cm-%04d, app.kubernetes.io/part-of: bench}\ndata:\n  index: \"%d\"\n  payload: %s\n", i, i, i, strings.Repeat("x", 200))
	}
	root := writeTree(b, files)
	b.ReportAllocs()
	for b.Loop() {
		set, err := Plain(PlainOptions{Root: root, Path: "m"})
		if err != nil {
			b.Fatal(err)
		}
		if len(set.Objects) != benchObjects {
			b.Fatalf("read %d objects, want %d", len(set.Objects), benchObjects)
		}
	}
}
