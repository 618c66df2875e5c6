package reconcile_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/source"
)

// clustersYAML is a deliver.yaml with one app, web, in ns, delivered from
// web/ in environment a (the reconciler's own cluster) and from web-b/ in
// environment b (the cluster of the kubeconfig Secret cluster-b).
func clustersYAML(ns string) string {
	return deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}") + `environments:
  a: {}
  b:
    kubeconfigSecret: {name: cluster-b}
    apps:
      web: {path: web-b}
`
}

// clustersFiles are the files of a repository of clustersYAML: web is
// blue in a, green in b.
func clustersFiles(ns string) map[string]string {
	return map[string]string{
		"deliver.yaml":  clustersYAML(ns),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "blue"}),
		"web-b/cm.yaml": configMap("web", map[string]string{"color": "green"}),
	}
}

// countingRepo is newGitRepo with a count of the ref listings (one per
// fetch, the ls-remote every fetch starts with).
func countingRepo(t *testing.T, files map[string]string) (*gitRepo, *atomic.Int32) {
	t.Helper()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	for name, content := range files {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("first")
	var lists atomic.Int32
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{OnRequest: func(r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") {
			lists.Add(1)
		}
	}})
	return &gitRepo{Repo: repo, URL: srv.RepoURL("deploy"), cache: filepath.Join(root, "cache")}, &lists
}

// putKubeconfig stores kubeconfig as key value of Secret cluster-b in ns
// of the reconciler's cluster.
func putKubeconfig(t *testing.T, ns string, kubeconfig []byte) {
	putSecret(t, ns, "cluster-b", kubeconfig)
}

// putSecret stores kubeconfig as key value of Secret name in ns.
func putSecret(t *testing.T, ns, name string, kubeconfig []byte) {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{"value": kubeconfig}}
	secrets := env.Client().CoreV1().Secrets(ns)
	if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// startClusters runs a Clusters until the test ends.
func startClusters(t *testing.T, opts reconcile.Options, envs ...string) *reconcile.Clusters {
	t.Helper()
	c, err := reconcile.NewClusters(opts, envs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	})
	return c
}

func envStatus(c *reconcile.Clusters, env string) reconcile.Status {
	for _, st := range c.Statuses() {
		if st.Env == env {
			return st
		}
	}
	return reconcile.Status{}
}

func envApp(c *reconcile.Clusters, env, app string) reconcile.AppStatus {
	for _, a := range envStatus(c, env).Apps {
		if a.App == app {
			return a
		}
	}
	return reconcile.AppStatus{}
}

func cmDataIn(kc kubernetes.Interface, ns, name string) map[string]string {
	cm, err := kc.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return cm.Data
}

func httpGet(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// TestClustersTwoControlPlanes: one reconciler delivers environment a's
// web to its own cluster and environment b's web to a second control
// plane, whose kubeconfig it reads from a real Secret in the first; both
// from one fetch per commit (counted at the git server). Inventories are
// in each target cluster, status ConfigMaps deliver-status.a and .b in
// the reconciler's, metrics carry env; an edit in cluster 2 is reverted
// (its drift watch is there). Then cluster 2's API server stops:
// a new commit still reaches cluster 1 at once, while b's app fails,
// is retried with backoff and says so, and readiness names cluster 2.
func TestClustersTwoControlPlanes(t *testing.T) {
	ns := env.Namespace(t)
	second := testenv.StartSecond(t, false)
	kc1, kc2 := env.Client(), second.Client()
	ctx := context.Background()
	if _, err := kc2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := second.KubeconfigFor("cluster-2")
	if err != nil {
		t.Fatal(err)
	}
	repo, lists := countingRepo(t, clustersFiles(ns))
	// What one first fetch costs the server: a fetch into a cache of
	// its own, counted, then the counter reset.
	refCache := t.TempDir()
	t.Cleanup(func() { // cached trees are read-only
		_ = filepath.WalkDir(refCache, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	ref, err := source.Fetch(ctx, source.Options{URL: repo.URL, Ref: "main", CacheDir: refCache})
	if err != nil {
		t.Fatal(err)
	}
	ref.Close()
	oneFetch := lists.Swap(0)
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	putKubeconfig(t, inv, kubeconfig)
	// Fetches only on Trigger: the listings counted are this test's.
	opts.Interval, opts.Jitter = time.Hour, -1
	c := startClusters(t, opts, "a", "b")

	waitFor(t, 60*time.Second, "web delivered to both clusters", func() bool {
		return cmDataIn(kc1, ns, "web")["color"] == "blue" && cmDataIn(kc2, ns, "web")["color"] == "green"
	})
	waitFor(t, 10*time.Second, "both environments succeeded", func() bool {
		return envApp(c, "a", "web").Result == apply.ResultSucceeded && envApp(c, "b", "web").Result == apply.ResultSucceeded
	})
	if n := lists.Load(); n != oneFetch {
		t.Errorf("two environments listed the refs %d times, want %d: one shared fetch", n, oneFetch)
	}
	// Each inventory in its own cluster: b's web is not in cluster 1.
	for name, kc := range map[string]kubernetes.Interface{"cluster 1": kc1, "cluster 2": kc2} {
		if _, err := kc.CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{}); err != nil {
			t.Errorf("%s: inventory of web: %v", name, err)
		}
	}
	if _, err := kc2.CoreV1().ConfigMaps(inv).Get(ctx, reconcile.EnvStatusName("b"), metav1.GetOptions{}); err == nil {
		t.Errorf("status of b written in cluster 2, want it in the reconciler's cluster only")
	}
	// Each environment's Events in its own target cluster, next to the
	// inventory Secret they are about (recorded asynchronously: waited
	// for).
	for name, kc := range map[string]kubernetes.Interface{"cluster 1": kc1, "cluster 2": kc2} {
		waitFor(t, 30*time.Second, name+": an Applied Event on web's inventory", func() bool {
			list, err := kc.CoreV1().Events(inv).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + apply.InventoryName("web") + ",reason=" + reconcile.ReasonApplied})
			return err == nil && len(list.Items) > 0
		})
	}
	for _, e := range []string{"a", "b"} {
		cm, err := reconcile.ReadStatusNamed(ctx, kc1, inv, reconcile.EnvStatusName(e))
		if err != nil {
			t.Fatalf("status of %s: %v", e, err)
		}
		var web reconcile.AppStatus
		if err := json.Unmarshal([]byte(cm.Data["web"]), &web); err != nil || web.Result != apply.ResultSucceeded {
			t.Errorf("status %s: web = %s (%v)", cm.Name, cm.Data["web"], err)
		}
		if cm.Labels[reconcile.LabelStatusEnv] != e {
			t.Errorf("status %s: labels %v, want %s=%s", cm.Name, cm.Labels, reconcile.LabelStatusEnv, e)
		}
	}
	cm, _ := reconcile.ReadStatusNamed(ctx, kc1, inv, reconcile.EnvStatusName("b"))
	if got, want := cm.Annotations[reconcile.AnnotationCluster], "Secret "+inv+"/cluster-b (key value)"; got != want {
		t.Errorf("status of b: cluster %q, want %q", got, want)
	}
	h := c.Handler()
	_, metrics := httpGet(t, h, "/metrics")
	for _, want := range []string{
		`deliver_reconcile_runs_total{app="web",env="a",result="succeeded"} 1`,
		`deliver_reconcile_runs_total{app="web",env="b",result="succeeded"} 1`,
		`deliver_reconcile_leader{env="a"} 1`,
		`deliver_reconcile_cluster_reachable{cluster="own cluster",env="a"} 1`,
		`deliver_reconcile_cluster_reachable{cluster="Secret ` + inv + `/cluster-b (key value)",env="b"} 1`,
		`deliver_git_fetch_duration_seconds_count 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, body := httpGet(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s, want 200", code, body)
	}

	// Drift in cluster 2 is watched there and reverted.
	cm2, err := kc2.CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm2.Data["color"] = "edited"
	if _, err := kc2.CoreV1().ConfigMaps(ns).Update(ctx, cm2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the edit in cluster 2 reverted", func() bool {
		return cmDataIn(kc2, ns, "web")["color"] == "green"
	})

	// Cluster 2 goes away; a new commit for both.
	second.StopAPIServer()
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "red"}))
	repo.WriteFile("web-b/cm.yaml", configMap("web", map[string]string{"color": "yellow"}))
	repo.CommitAll("second")
	start := time.Now()
	c.Trigger()
	took := waitFor(t, 30*time.Second, "cluster 1 delivered the new commit", func() bool {
		return cmDataIn(kc1, ns, "web")["color"] == "red"
	})
	t.Logf("observed: cluster 1 delivered the new commit %s after the trigger, cluster 2 down", took.Round(time.Millisecond))
	waitFor(t, 30*time.Second, "b's web failed and retrying", func() bool {
		a := envApp(c, "b", "web")
		return a.Result == apply.ResultFailed && a.Failures >= 2 && !a.NextRetry.IsZero()
	})
	waitFor(t, 30*time.Second, "b's cluster error in status", func() bool {
		st := envStatus(c, "b")
		return strings.Contains(st.ClusterError, "cluster-b") && strings.Contains(st.ClusterError, "unreachable")
	})
	if a := envApp(c, "a", "web"); a.Result != apply.ResultSucceeded || a.Failures != 0 {
		t.Errorf("a's web = %+v, want succeeded: cluster 2 must not hold it up", a)
	}
	if code, body := httpGet(t, h, "/readyz"); code != http.StatusOK || !strings.Contains(body, "b: unreachable") || !strings.Contains(body, "a: ok") {
		t.Errorf("/readyz = %d %q, want 200 naming b unreachable", code, body)
	}
	_, metrics = httpGet(t, h, "/metrics")
	for _, want := range []string{
		`deliver_reconcile_runs_total{app="web",env="b",result="failed"}`,
		`deliver_reconcile_cluster_reachable{cluster="Secret ` + inv + `/cluster-b (key value)",env="b"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if time.Since(start) > 2*time.Minute {
		t.Errorf("took %s", time.Since(start))
	}
}

// TestClustersUnreachable: environment b's kubeconfig Secret points at a
// closed port. Environment a is delivered at once all the same; b's app
// is failed in status with the reason (the Secret named, "unreachable"),
// retried with backoff, and the metric and readiness say so. When the
// Secret is fixed (here: a kubeconfig of the reconciler's own cluster),
// b is delivered without a restart.
func TestClustersUnreachable(t *testing.T) {
	ns := env.Namespace(t)
	// b's app is worker, not web: once fixed, b's cluster is this one,
	// where the inventory of a's web already is.
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: worker, namespace: $NS, manifests: {path: worker}}") + `environments:
  a:
    apps: {worker: {disabled: true}}
  b:
    kubeconfigSecret: {name: cluster-b}
    apps: {web: {disabled: true}}
`,
		"web/cm.yaml":    configMap("web", map[string]string{"color": "blue"}),
		"worker/cm.yaml": configMap("worker", map[string]string{"color": "green"}),
	})
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	closed, err := env.UnreachableKubeconfig("gone")
	if err != nil {
		t.Fatal(err)
	}
	putKubeconfig(t, inv, closed)
	start := time.Now()
	c := startClusters(t, opts, "a", "b")
	took := waitFor(t, 30*time.Second, "a's web delivered", func() bool {
		return cmData(t, ns, "web")["color"] == "blue"
	})
	t.Logf("observed: a delivered %s after start with b's cluster unreachable", took.Round(time.Millisecond))
	waitFor(t, 30*time.Second, "b's worker failed twice for its cluster", func() bool {
		a := envApp(c, "b", "worker")
		return a.Result == apply.ResultFailed && a.Failures >= 2 && strings.Contains(a.Message, "Secret "+inv+"/cluster-b") && strings.Contains(a.Message, "unreachable")
	})
	cm, err := reconcile.ReadStatusNamed(context.Background(), env.Client(), inv, reconcile.EnvStatusName("b"))
	if err != nil {
		t.Fatal(err)
	}
	if ce := cm.Annotations[reconcile.AnnotationClusterError]; !strings.Contains(ce, "unreachable") || !strings.Contains(cm.Data["worker"], `"result":"failed"`) {
		t.Errorf("status of b: cluster error %q, worker %s", ce, cm.Data["worker"])
	}
	h := c.Handler()
	if _, m := httpGet(t, h, "/metrics"); !strings.Contains(m, `deliver_reconcile_cluster_reachable{cluster="Secret `+inv+`/cluster-b (key value)",env="b"} 0`) {
		t.Errorf("metrics do not say b's cluster is unreachable")
	}
	if code, body := httpGet(t, h, "/readyz"); code != http.StatusOK || !strings.Contains(body, "b: unreachable") {
		t.Errorf("/readyz = %d %q, want 200 naming b unreachable", code, body)
	}
	if cmData(t, ns, "worker") != nil {
		t.Errorf("b's worker delivered while its cluster is unreachable")
	}

	// Fixed: the Secret now holds a kubeconfig that works.
	good, err := env.KubeconfigFor("back")
	if err != nil {
		t.Fatal(err)
	}
	putKubeconfig(t, inv, good)
	c.Trigger()
	waitFor(t, 30*time.Second, "b's worker delivered once its kubeconfig works", func() bool {
		return cmData(t, ns, "worker")["color"] == "green" && envApp(c, "b", "worker").Result == apply.ResultSucceeded
	})
	if st := envStatus(c, "b"); st.ClusterError != "" {
		t.Errorf("b's cluster error stays after recovery: %s", st.ClusterError)
	}

	// Changed again, to a cluster that cannot be reached, while b's
	// engine runs: the engine stops and b's worker is failed for it.
	closed, err = env.UnreachableKubeconfig("gone-again")
	if err != nil {
		t.Fatal(err)
	}
	putKubeconfig(t, inv, closed)
	c.Trigger()
	waitFor(t, 30*time.Second, "b's worker failed for its new cluster", func() bool {
		a := envApp(c, "b", "worker")
		return a.Result == apply.ResultFailed && strings.Contains(a.Message, "unreachable")
	})
	t.Logf("observed: whole test %s", time.Since(start).Round(time.Millisecond))
}

// TestLoneReconcilerRefusesKubeconfigSecret: a Reconciler of one
// environment delivers to its own cluster; an environment that names a
// kubeconfigSecret is refused with a source error saying which reconciler
// reads it, and nothing is delivered to the wrong cluster.
func TestLoneReconcilerRefusesKubeconfigSecret(t *testing.T) {
	ns := env.Namespace(t)
	repo := newGitRepo(t, clustersFiles(ns))
	opts := options(t, repo, env.Config)
	opts.Pipeline.Env = "b"
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "a source error naming kubeconfigSecret", func() bool {
		e := r.Status().SourceError
		return strings.Contains(e, "environment b names kubeconfigSecret Secret cluster-b") && strings.Contains(e, "--clusters")
	})
	if cmData(t, ns, "web") != nil {
		t.Errorf("web delivered to the reconciler's own cluster")
	}
}

// TestClustersOnce: with Once, Run fetches once, delivers each
// environment and returns: nil for the environment delivered, an error
// naming the environment whose cluster is unreachable.
func TestClustersOnce(t *testing.T) {
	ns := env.Namespace(t)
	repo := newGitRepo(t, clustersFiles(ns))
	opts := options(t, repo, env.Config)
	opts.Once = true
	closed, err := env.UnreachableKubeconfig("gone")
	if err != nil {
		t.Fatal(err)
	}
	putKubeconfig(t, opts.Pipeline.Apply.InventoryNamespace, closed)
	c, err := reconcile.NewClusters(opts, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "environment b") || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "environment a") {
		t.Errorf("Run = %v, want an error naming environment b only", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run returned only at the deadline")
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Errorf("a's web color %q, want blue", got)
	}
}

// TestClustersSwitchCluster: a commit that moves environment b to another
// kubeconfigSecret is not delivered to b's former cluster: b's engine
// refuses it and is restarted on the new cluster, which here stalls (a
// listener that never answers: the check of it takes its whole timeout,
// time enough for an engine without the refusal to deliver the commit to
// the former cluster), so b's app is failed for it and its object keeps
// the former commit's content.
func TestClustersSwitchCluster(t *testing.T) {
	ns := env.Namespace(t)
	deliverYAMLFor := func(secret string) string {
		return deliverYAML(ns,
			"- {name: web, namespace: $NS, manifests: {path: web}}",
			"- {name: worker, namespace: $NS, manifests: {path: worker}}") + `environments:
  a:
    apps: {worker: {disabled: true}}
  b:
    kubeconfigSecret: {name: ` + secret + `}
    apps: {web: {disabled: true}}
`
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":   deliverYAMLFor("kc-one"),
		"web/cm.yaml":    configMap("web", map[string]string{"color": "blue"}),
		"worker/cm.yaml": configMap("worker", map[string]string{"color": "green"}),
	})
	opts := options(t, repo, env.Config)
	inv := opts.Pipeline.Apply.InventoryNamespace
	one, err := env.KubeconfigFor("one")
	if err != nil {
		t.Fatal(err)
	}
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			conn, err := stall.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, conn) // never answered
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stall.Close()
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	two, err := env.KubeconfigAt("two", stall.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, inv, "kc-one", one)
	putSecret(t, inv, "kc-two", two)
	c := startClusters(t, opts, "a", "b")
	waitFor(t, 30*time.Second, "b's worker delivered through kc-one", func() bool {
		return cmData(t, ns, "worker")["color"] == "green" && envApp(c, "b", "worker").Result == apply.ResultSucceeded
	})
	repo.WriteFile("deliver.yaml", deliverYAMLFor("kc-two"))
	repo.WriteFile("worker/cm.yaml", configMap("worker", map[string]string{"color": "red"}))
	repo.CommitAll("b moves to kc-two")
	c.Trigger()
	waitFor(t, 60*time.Second, "b's worker failed for kc-two", func() bool {
		a := envApp(c, "b", "worker")
		return a.Result == apply.ResultFailed && strings.Contains(a.Message, "/kc-two") && strings.Contains(a.Message, "unreachable")
	})
	if got := cmData(t, ns, "worker")["color"]; got != "green" {
		t.Errorf("worker color %q in b's former cluster, want green: the commit for kc-two was delivered there", got)
	}
	if st := envStatus(c, "b"); !strings.Contains(st.Cluster, "/kc-two") {
		t.Errorf("b's cluster %q, want kc-two", st.Cluster)
	}
}
