package apply_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/object"
)

// benchObjects writes the workload of the performance targets (400
// ConfigMaps, 200 Secrets, 200 headless Services (no IP allocation to
// measure), 200 Deployments per 1,000) for
// namespace ns into dir, one file per object.
func benchObjects(b *testing.B, dir, ns string, n int, gen int) {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		var doc string
		switch i % 5 {
		case 0, 1:
			doc = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {key: \"value-%d-%d\"}\n", i, ns, i, gen)
		case 2:
			doc = fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: secret-%d, namespace: %s}\nstringData: {password: \"p-%d\"}\n", i, ns, i)
		case 3:
			doc = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: %s}\nspec: {clusterIP: None, selector: {app: a%d}, ports: [{port: 80}]}\n", i, ns, i)
		case 4:
			doc = fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: deploy-%d, namespace: %s}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: a%d}}\n  template:\n    metadata: {labels: {app: a%d}}\n    spec: {containers: [{name: c, image: registry.example/app:1}]}\n", i, ns, i, i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.yaml", i)), []byte(doc), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// runTool runs a CLI and returns its wall time and peak RSS in MiB.
// kubectl diff exits 1 when there are differences; okCodes lists accepted codes.
func runTool(b *testing.B, okCodes []int, name string, args ...string) (time.Duration, float64) {
	b.Helper()
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	code := cmd.ProcessState.ExitCode()
	ok := err == nil
	for _, c := range okCodes {
		ok = ok || code == c
	}
	if !ok {
		if len(out) > 2000 {
			out = out[len(out)-2000:]
		}
		b.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return d, float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
}

func buildDeliver(b *testing.B) string {
	b.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "deliver")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "deliver")).CombinedOutput(); err != nil {
		b.Fatalf("build deliver: %v\n%s", err, out)
	}
	return bin
}

func benchNamespace(b *testing.B, prefix string) string {
	b.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
	cs := env.Client()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), nsObj, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	return ns
}

// BenchmarkApply1000 measures, side by side in one run against the same
// control plane, deliver and kubectl on 1,000 objects:
//
//	first-apply:    deliver apply vs kubectl apply --server-side vs a raw
//	                concurrent server-side-apply client (16 workers)
//	nochange-diff:  deliver diff vs kubectl diff --server-side
//	change10:       deliver diff + apply with 10 objects changed
//
// Each sub-benchmark reports ms/op and the tool's peak RSS (MiB).
//
//	go test ./pkg/apply -run '^$' -bench Apply1000 -benchtime 3x
func BenchmarkApply1000(b *testing.B) {
	if env == nil {
		b.Skip("no control plane")
	}
	const n = 1000
	deliver := buildDeliver(b)
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		b.Fatal(err)
	}
	kc := env.Kubeconfig
	tmp := b.TempDir()

	var kubectlDir string // the last namespace kubectl applied, for its diff row
	b.Run("first-apply/kubectl", func(b *testing.B) {
		var rss float64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ns := benchNamespace(b, "kubectl-apply")
			dir := filepath.Join(tmp, ns)
			kubectlDir = dir
			benchObjects(b, dir, ns, n, 0)
			b.StartTimer()
			_, r := runTool(b, nil, kubectl, "--kubeconfig", kc, "apply", "--server-side", "-f", dir)
			rss = max(rss, r)
		}
		b.ReportMetric(rss, "peak-RSS-MiB")
	})
	b.Run("first-apply/raw-client", func(b *testing.B) {
		dyn := dynamic.NewForConfigOrDie(env.Config)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ns := benchNamespace(b, "raw-apply")
			dir := filepath.Join(tmp, ns)
			benchObjects(b, dir, ns, n, 0)
			objs := readDir(b, dir)
			b.StartTimer()
			rawApply(b, dyn, objs)
		}
	})
	b.Run("first-apply/deliver", func(b *testing.B) {
		var rss float64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ns := benchNamespace(b, "deliver-apply")
			dir := filepath.Join(tmp, ns)
			benchObjects(b, dir, ns, n, 0)
			b.StartTimer()
			_, r := runTool(b, nil, deliver, "apply", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns, "--wait=false")
			rss = max(rss, r)
		}
		b.ReportMetric(rss, "peak-RSS-MiB")
	})

	// kubectl diffs what kubectl applied (it would conflict with deliver's
	// fields otherwise); deliver diffs what deliver applied.
	ns := benchNamespace(b, "diff")
	dir := filepath.Join(tmp, ns)
	benchObjects(b, dir, ns, n, 0)
	runTool(b, nil, deliver, "apply", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns, "--wait=false")
	b.Run("nochange-diff/kubectl", func(b *testing.B) {
		var rss float64
		for i := 0; i < b.N; i++ {
			_, r := runTool(b, nil, kubectl, "--kubeconfig", kc, "diff", "--server-side", "-f", kubectlDir)
			rss = max(rss, r)
		}
		b.ReportMetric(rss, "peak-RSS-MiB")
	})
	b.Run("nochange-diff/deliver", func(b *testing.B) {
		var rss float64
		for i := 0; i < b.N; i++ {
			_, r := runTool(b, nil, deliver, "diff", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns)
			rss = max(rss, r)
		}
		b.ReportMetric(rss, "peak-RSS-MiB")
	})
	b.Run("nochange-diff/deliver-full-dry-run", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			runTool(b, nil, deliver, "diff", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns, "--full-dry-run")
		}
	})
	b.Run("change10-diff+apply/deliver", func(b *testing.B) {
		var rss float64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// Change 10 ConfigMaps (every 5th object is a ConfigMap at i%5==0).
			for j := 0; j < 50; j += 5 {
				doc := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {key: \"changed-%d\"}\n", j, ns, i+1)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.yaml", j)), []byte(doc), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			_, r1 := runTool(b, []int{2}, deliver, "diff", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns)
			_, r2 := runTool(b, nil, deliver, "apply", "--kubeconfig", kc, "--path", dir, "-f", ".", "--app", ns, "--wait=false")
			rss = max(rss, r1, r2)
		}
		b.ReportMetric(rss, "peak-RSS-MiB")
	})
}

func readDir(b *testing.B, dir string) []*object.Object {
	b.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var out []*object.Object
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			b.Fatal(err)
		}
		out = append(out, &object.Object{Unstructured: &unstructured.Unstructured{Object: m}})
	}
	return out
}

// rawApply is the floor: one server-side apply per object, 16 at a time,
// with no planning, inventory or ordering.
func rawApply(b *testing.B, dyn dynamic.Interface, objs []*object.Object) {
	resources := map[string]string{"ConfigMap": "configmaps", "Secret": "secrets", "Service": "services", "Deployment": "deployments"}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, o := range objs {
		gvr := o.GroupVersionKind().GroupVersion().WithResource(resources[o.GetKind()])
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Apply(context.Background(), o.GetName(), o.Unstructured, metav1.ApplyOptions{FieldManager: "raw", Force: true}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}
