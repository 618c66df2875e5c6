package reconcile_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// Several environments with several replicas (issue #20): leader election
// and sharding per environment, against the real control plane.

// runLog records a replica's JSON log, for counting its deliveries.
type runLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *runLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// succeeded returns "env/app@revision" of each run that succeeded.
func (l *runLog) succeeded() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "run succeeded" {
			out = append(out, fmt.Sprintf("%v/%v@%v", rec["env"], rec["app"], rec["revision"]))
		}
	}
	return out
}

// members returns the shard members the replica's engine of env logged
// last, sorted; nil before it logged any.
func (l *runLog) members(env string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg     string   `json:"msg"`
			Env     string   `json:"env"`
			Members []string `json:"members"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "shard members" && rec.Env == env {
			out = rec.Members
		}
	}
	return out
}

// multiEnvRepo is a repository of two environments on the reconciler's
// own cluster, a and b, of n apps each: a-0 … and b-0 … (an app name is
// delivered by one environment per cluster, see docs/clusters.md), each a
// ConfigMap of its name with data.gen, in ns.
func multiEnvRepo(t *testing.T, ns string, n int) *gitRepo {
	t.Helper()
	var apps []string
	disabled := map[string][]string{}
	for _, e := range []string{"a", "b"} {
		other := map[string]string{"a": "b", "b": "a"}[e]
		for i := range n {
			apps = append(apps, fmt.Sprintf("- {name: %s-%d, namespace: $NS, manifests: {path: %s-%d}}", e, i, e, i))
			disabled[other] = append(disabled[other], fmt.Sprintf("%s-%d: {disabled: true}", e, i))
		}
	}
	files := map[string]string{"deliver.yaml": deliverYAML(ns, apps...) + "environments:\n" +
		"  a:\n    apps: {" + strings.Join(disabled["a"], ", ") + "}\n" +
		"  b:\n    apps: {" + strings.Join(disabled["b"], ", ") + "}\n"}
	repo := newGitRepo(t, files)
	multiEnvCommit(repo, n, "1")
	return repo
}

// multiEnvCommit sets data.gen of every app's ConfigMap and commits.
func multiEnvCommit(repo *gitRepo, n int, gen string) string {
	for _, e := range []string{"a", "b"} {
		for i := range n {
			name := fmt.Sprintf("%s-%d", e, i)
			repo.WriteFile(name+"/cm.yaml", configMap(name, map[string]string{"gen": gen}))
		}
	}
	return repo.CommitAll("generation " + gen)
}

// allAtGen reports whether the 2n apps' ConfigMaps have data.gen gen.
func allAtGen(t *testing.T, ns string, n int, gen string) bool {
	for _, e := range []string{"a", "b"} {
		for i := range n {
			if cmData(t, ns, fmt.Sprintf("%s-%d", e, i))["gen"] != gen {
				return false
			}
		}
	}
	return true
}

// multiReplica is one reconciler process's Clusters, run in this test.
type multiReplica struct {
	id   string
	c    *reconcile.Clusters
	log  *runLog
	stop func()
}

// startMulti runs a Clusters of envs with opts as replica id, logging
// both to the test and to a record of its own.
func startMulti(t *testing.T, opts reconcile.Options, id string, envs ...string) *multiReplica {
	t.Helper()
	m := &multiReplica{id: id, log: &runLog{}}
	opts.Log = slog.New(slog.NewMultiHandler(testLogger(t).Handler(),
		slog.NewJSONHandler(m.log, &slog.HandlerOptions{Level: slog.LevelInfo}))).With("replica", id)
	c, err := reconcile.NewClusters(opts, envs)
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("replica %s: Run: %v", id, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("replica %s: Run did not return after cancel", id)
			}
		})
	}
	t.Cleanup(m.stop)
	return m
}

// leads reports whether m's engine of env holds its Lease.
func (m *multiReplica) leads(env string) bool { return envStatus(m.c, env).Leader }

// TestClustersLeaderElection: two replicas of a reconciler of two
// environments, with leader election. Each environment has its own Lease,
// deliver-reconcile.<env>, and for each exactly one replica leads and only
// it delivers that environment's apps (the standby's engine of it has no
// apps in its status and logged no run). When the replica leading a stops,
// the other takes a over within the lease duration, and then delivers a
// new commit of both environments.
func TestClustersLeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	const n, leaseDuration = 3, 3 * time.Second
	ns := env.Namespace(t)
	repo := multiEnvRepo(t, ns, n)
	base := options(t, repo, env.Config)
	base.LeaderElection = reconcile.LeaderElection{Enabled: true, LeaseDuration: leaseDuration, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond}
	var rs []*multiReplica
	for _, id := range []string{"replica-x", "replica-y"} {
		o := base
		o.LeaderElection.Identity = id
		rs = append(rs, startMulti(t, o, id, "a", "b"))
	}
	leaderOf := func(e string) (leader, standby *multiReplica) {
		switch {
		case rs[0].leads(e) && !rs[1].leads(e):
			return rs[0], rs[1]
		case rs[1].leads(e) && !rs[0].leads(e):
			return rs[1], rs[0]
		}
		return nil, nil
	}
	// Every app's run logged as ended too: its objects are in the
	// cluster before its run ends (the wait, the inventory's last write).
	runs := func() []string {
		var out []string
		for _, m := range rs {
			out = append(out, m.log.succeeded()...)
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, 60*time.Second, "one leader per environment and every app delivered", func() bool {
		la, _ := leaderOf("a")
		lb, _ := leaderOf("b")
		return la != nil && lb != nil && allAtGen(t, ns, n, "1") && len(runs()) >= 2*n
	})
	// One Lease per environment, each held by that environment's leader.
	for _, e := range []string{"a", "b"} {
		leader, standby := leaderOf(e)
		lease, err := env.Client().CoordinationV1().Leases(base.Pipeline.Apply.InventoryNamespace).Get(context.Background(), "deliver-reconcile."+e, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Lease of environment %s: %v", e, err)
		}
		if h := *lease.Spec.HolderIdentity; h != leader.id {
			t.Errorf("Lease deliver-reconcile.%s held by %s, want its leader %s", e, h, leader.id)
		}
		if st := envStatus(standby.c, e); len(st.Apps) != 0 {
			t.Errorf("standby %s of %s reports apps: %+v", standby.id, e, st.Apps)
		}
		for _, run := range standby.log.succeeded() {
			if strings.HasPrefix(run, e+"/") {
				t.Errorf("standby %s of %s delivered %s", standby.id, e, run)
			}
		}
		t.Logf("environment %s: leader %s", e, leader.id)
	}
	// Each app of each environment delivered once, by its leader.
	if got := runs(); len(got) != 2*n || len(slices.Compact(slices.Clone(got))) != 2*n {
		t.Errorf("runs %v, want each of the %d apps once", got, 2*n)
	}

	leader, standby := leaderOf("a")
	leader.stop()
	took := waitFor(t, 2*leaseDuration, "the standby leads a", func() bool { return standby.leads("a") })
	t.Logf("observed: a handed over %s after its leader stopped", took.Round(time.Millisecond))
	if took > leaseDuration {
		t.Errorf("hand-over took %s, more than the lease duration %s", took, leaseDuration)
	}
	waitFor(t, 2*leaseDuration, "the standby leads b", func() bool { return standby.leads("b") })
	multiEnvCommit(repo, n, "2")
	waitFor(t, 60*time.Second, "the remaining replica delivers the new commit to both environments", func() bool {
		return allAtGen(t, ns, n, "2")
	})
	head := repo.Head()
	waitFor(t, 10*time.Second, "the remaining replica logged a run of each app at the new commit", func() bool {
		k := 0
		for _, run := range standby.log.succeeded() {
			if strings.HasSuffix(run, "@"+shortRev(head)) {
				k++
			}
		}
		return k == 2*n
	})
}

// shortRev is a revision as the reconciler logs it.
func shortRev(rev string) string { return rev[:min(len(rev), 12)] }

// TestClustersShards: two replicas of a reconciler of two environments,
// sharded. Each replica's engine of each environment holds a Lease of its
// own, labelled with the group and the environment; the apps of each
// environment are shared among the two (each delivers some of each
// environment, once each engine counts both), and every app is delivered
// exactly once per commit. When one replica stops, the other takes its
// apps of both environments and delivers the next commit to every app,
// again once each.
func TestClustersShards(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	const n, leaseDuration = 8, 3 * time.Second
	ns := env.Namespace(t)
	repo := multiEnvRepo(t, ns, n)
	base := options(t, repo, env.Config)
	base.Sharding = reconcile.Sharding{Enabled: true, Group: "multi", LeaseDuration: leaseDuration}
	var rs []*multiReplica
	for _, id := range []string{"replica-x", "replica-y"} {
		o := base
		o.Sharding.Identity = id
		rs = append(rs, startMulti(t, o, id, "a", "b"))
	}
	// runsAt counts the successful runs of each app at rev, across
	// replicas, and the environments each replica delivered.
	runsAt := func(rev string) (perApp map[string]int, envs map[string][]string) {
		perApp, envs = map[string]int{}, map[string][]string{}
		for _, m := range rs {
			for _, run := range m.log.succeeded() {
				app, r, _ := strings.Cut(run, "@")
				if r != shortRev(rev) {
					continue
				}
				perApp[app]++
				e, _, _ := strings.Cut(app, "/")
				if !slices.Contains(envs[m.id], e) {
					envs[m.id] = append(envs[m.id], e)
				}
			}
		}
		return perApp, envs
	}
	once := func(rev string) map[string][]string {
		t.Helper()
		waitFor(t, 60*time.Second, "a run of every app at "+shortRev(rev), func() bool {
			perApp, _ := runsAt(rev)
			return len(perApp) == 2*n
		})
		perApp, envs := runsAt(rev)
		for app, k := range perApp {
			if k != 1 {
				t.Errorf("%s delivered %d times at %s, want once", app, k, shortRev(rev))
			}
		}
		return envs
	}
	waitFor(t, 60*time.Second, "every app delivered", func() bool { return allAtGen(t, ns, n, "1") })
	once(repo.Head())
	// The replica that starts first delivers every app until it sees the
	// other: the sharing is checked at the next commit, once each engine
	// counts both replicas.
	waitFor(t, 30*time.Second, "each engine counts both replicas", func() bool {
		for _, m := range rs {
			for _, e := range []string{"a", "b"} {
				if !slices.Equal(m.log.members(e), []string{"replica-x", "replica-y"}) {
					return false
				}
			}
		}
		return true
	})
	shared := multiEnvCommit(repo, n, "2")
	waitFor(t, 60*time.Second, "every app delivered at the second commit", func() bool { return allAtGen(t, ns, n, "2") })
	envs := once(shared)
	t.Logf("environments delivered per replica: %v", envs)
	for _, m := range rs {
		if slices.Sort(envs[m.id]); !slices.Equal(envs[m.id], []string{"a", "b"}) {
			t.Errorf("replica %s delivered apps of %v, want some of both environments", m.id, envs[m.id])
		}
	}
	// Four Leases: one per replica and environment, labelled with both.
	leases, err := env.Client().CoordinationV1().Leases(base.Pipeline.Apply.InventoryNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: reconcile.LabelShardGroup + "=multi"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range leases.Items {
		got = append(got, l.Labels[reconcile.LabelStatusEnv]+"/"+*l.Spec.HolderIdentity)
	}
	slices.Sort(got)
	if want := []string{"a/replica-x", "a/replica-y", "b/replica-x", "b/replica-y"}; !slices.Equal(got, want) {
		t.Errorf("shard Leases (env/holder) %v, want %v", got, want)
	}

	rs[0].stop()
	third := multiEnvCommit(repo, n, "3")
	waitFor(t, 60*time.Second, "the remaining replica delivers every app", func() bool { return allAtGen(t, ns, n, "3") })
	if envs := once(third); len(envs) != 1 || len(envs[rs[1].id]) != 2 {
		t.Errorf("at the third commit, environments delivered per replica %v, want both by %s alone", envs, rs[1].id)
	}
}

// TestClustersSameAppNameTwoEnvironments: environments a and b of one
// reconciler deliver an app of one name, web, to one cluster, each to its
// own namespace and with inventories in a namespace of its own
// (inventoryNamespace): both are delivered, each object labelled with its
// environment. a's ConfigMap was there before, labelled with web by an
// older version (no environment): it is a's without a conflict. Then a
// commit makes b's web claim a's ConfigMap as well: b's web fails with a
// conflict naming the object and both owners, and a's object is left as
// a delivered it.
func TestClustersSameAppNameTwoEnvironments(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	nsA, nsB, invA, invB := env.Namespace(t), env.Namespace(t), env.Namespace(t), env.Namespace(t)
	// web is in nsB but for a, which moves it to nsA. b may write both
	// namespaces: the conflict, not the allow-list, is what refuses its
	// claim below.
	yaml := func() string {
		return deliverYAML(nsB, "- {name: web, namespace: $NS, manifests: {path: web-b}, allowedNamespaces: [$NS, "+nsA+"]}") + fmt.Sprintf(`environments:
  a:
    inventoryNamespace: %s
    apps:
      web: {namespace: %s, path: web}
  b:
    inventoryNamespace: %s
`, invA, nsA, invB)
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":  yaml(),
		"web/cm.yaml":   configMap("web", map[string]string{"color": "blue"}),
		"web-b/cm.yaml": configMap("web", map[string]string{"color": "green"}),
	})
	// Labelled by an older version: app web, no environment.
	legacy := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: nsA, Labels: map[string]string{apply.LabelApp: "web"}},
		Data: map[string]string{"color": "old"}}
	if _, err := env.Client().CoreV1().ConfigMaps(nsA).Create(context.Background(), legacy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := options(t, repo, env.Config)
	c := startClusters(t, opts, "a", "b")
	waitFor(t, 60*time.Second, "web of a and of b delivered", func() bool {
		return cmData(t, nsA, "web")["color"] == "blue" && cmData(t, nsB, "web")["color"] == "green" &&
			envApp(c, "a", "web").Result == apply.ResultSucceeded && envApp(c, "b", "web").Result == apply.ResultSucceeded
	})
	for _, o := range []struct{ ns, env, inv string }{{nsA, "a", invA}, {nsB, "b", invB}} {
		cm, err := env.Client().CoreV1().ConfigMaps(o.ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Labels[apply.LabelApp] != "web" || cm.Labels[apply.LabelEnv] != o.env {
			t.Errorf("ConfigMap %s/web labels %v, want app web of environment %s", o.ns, cm.Labels, o.env)
		}
		if _, err := env.Client().CoreV1().Secrets(o.inv).Get(context.Background(), apply.InventoryName("web"), metav1.GetOptions{}); err != nil {
			t.Errorf("inventory of %s's web in %s: %v", o.env, o.inv, err)
		}
	}
	if _, err := env.Client().CoreV1().Secrets(opts.Pipeline.Apply.InventoryNamespace).Get(context.Background(), apply.InventoryName("web"), metav1.GetOptions{}); err == nil {
		t.Errorf("an inventory of web in --inventory-namespace %s, shared by both environments", opts.Pipeline.Apply.InventoryNamespace)
	}

	// b's web claims a's ConfigMap too.
	repo.WriteFile("web-b/theirs.yaml", fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: %s}\ndata: {color: red}\n", nsA))
	repo.CommitAll("b claims a's object")
	want := fmt.Sprintf(`ConfigMap/%s/web (web: web-b/theirs.yaml#0) belongs to app "web" of environment "a" (labels %s and %s), not to app "web" of environment "b"`,
		nsA, apply.LabelApp, apply.LabelEnv)
	waitFor(t, 60*time.Second, "b's web refused for the conflict", func() bool {
		a := envApp(c, "b", "web")
		return a.Result == apply.ResultFailed && strings.Contains(a.Message, want)
	})
	if got := cmData(t, nsA, "web")["color"]; got != "blue" {
		t.Errorf("a's ConfigMap color %q after b's refused run, want blue", got)
	}
	if a := envApp(c, "a", "web"); a.Result != apply.ResultSucceeded {
		t.Errorf("a's web %s: %s", a.Result, a.Message)
	}
}

// TestLoneReconcilerRefusesInventoryNamespace: a Reconciler of one
// environment keeps inventories in its --inventory-namespace; an
// environment whose inventoryNamespace is another is refused with a
// source error saying how to run it, and nothing is delivered.
func TestLoneReconcilerRefusesInventoryNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	ns, other := env.Namespace(t), env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}") + "environments:\n  a:\n    inventoryNamespace: " + other + "\n",
		"web/cm.yaml":  configMap("web", map[string]string{"color": "blue"}),
	})
	opts := options(t, repo, env.Config)
	opts.Pipeline.Env = "a"
	r, _ := start(t, opts)
	want := fmt.Sprintf("environment a keeps its inventories in namespace %s (inventoryNamespace), not in %s: run this reconciler with --inventory-namespace %s",
		other, opts.Pipeline.Apply.InventoryNamespace, other)
	waitFor(t, 30*time.Second, "a source error naming inventoryNamespace", func() bool {
		return strings.Contains(r.Status().SourceError, want)
	})
	if cmData(t, ns, "web") != nil {
		t.Errorf("web delivered with its inventory in the wrong namespace")
	}
}
