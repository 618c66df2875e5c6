package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// logLines returns the JSON log records of a reconciler with message msg.
func logLines(p *reconcileProc, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// shardGroup is a repository of apps, app-0 … app-<apps-1>, each one
// ConfigMap with data.gen, and the reconciler replicas of one shard group
// that deliver it.
type shardGroup struct {
	t        *testing.T
	apps     int
	ns, inv  string
	root     string
	repo     *gitserver.Repo
	url      string
	replicas map[string]*reconcileProc
}

func newShardGroup(t *testing.T, apps int) *shardGroup {
	g := &shardGroup{t: t, apps: apps, ns: env.Namespace(t), inv: env.Namespace(t), root: t.TempDir(), replicas: map[string]*reconcileProc{}}
	g.repo = gitserver.NewRepo(t, filepath.Join(g.root, "deploy"))
	var cfg strings.Builder
	cfg.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	for i := range apps {
		fmt.Fprintf(&cfg, "- {name: app-%d, namespace: %s, manifests: {path: app-%d}}\n", i, g.ns, i)
	}
	g.repo.WriteFile("deliver.yaml", cfg.String())
	g.commit("1")
	g.url = gitserver.NewHTTP(t, g.root, gitserver.HTTPOptions{}).RepoURL("deploy")
	return g
}

// commit sets data.gen of every app's ConfigMap and commits; it returns
// the commit.
func (g *shardGroup) commit(gen string) string {
	for i := range g.apps {
		g.repo.WriteFile(fmt.Sprintf("app-%d/cm.yaml", i), fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-%d}\ndata: {gen: %q}\n", i, gen))
	}
	return g.repo.CommitAll("generation " + gen)
}

// start runs replica id of the group, with the lease duration and further
// flags.
func (g *shardGroup) start(id string, lease time.Duration, args ...string) *reconcileProc {
	p := startReconcile(g.t, "replica "+id, nil, append([]string{"--repo", g.url, "--ref", "main",
		"--inventory-namespace", g.inv, "--shard", "--shard-identity", "replica-" + id, "--shard-lease-duration", lease.String(),
		"--cache-dir", filepath.Join(g.root, "cache-"+id)}, args...)...)
	g.replicas[id] = p
	return p
}

// allAt reports whether every app's ConfigMap has data.gen gen.
func (g *shardGroup) allAt(gen string) bool {
	list, err := env.Client().CoreV1().ConfigMaps(g.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return false
	}
	n := 0
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "app-") && cm.Data["gen"] == gen {
			n++
		}
	}
	return n == g.apps
}

// deliveries counts the successful runs per app and revision, across
// replicas, and the runs of each replica.
func (g *shardGroup) deliveries() (perApp, perReplica map[string]int) {
	perApp, perReplica = map[string]int{}, map[string]int{}
	for id, p := range g.replicas {
		for _, rec := range logLines(p, "run succeeded") {
			perApp[fmt.Sprint(rec["app"], "@", rec["revision"])]++
			perReplica[id]++
		}
	}
	return perApp, perReplica
}

// once waits until every app of revisions commits has logged a successful
// run, and checks that each was delivered once.
func (g *shardGroup) once(gen string, revisions int) {
	g.t.Helper()
	// The last runs may still be logging.
	eventually(g.t, 30*time.Second, "a run logged per app", func() bool {
		perApp, _ := g.deliveries()
		return len(perApp) == g.apps*revisions
	})
	perApp, perReplica := g.deliveries()
	for key, n := range perApp {
		if n != 1 {
			g.t.Errorf("%s delivered %d times, want once", key, n)
		}
	}
	g.t.Logf("generation %s: runs per replica %v", gen, perReplica)
}

// members returns the shard members p logged last ("[replica-a
// replica-b]"), nil before it logged any.
func members(p *reconcileProc) []string {
	recs := logLines(p, "shard members")
	if len(recs) == 0 {
		return nil
	}
	return strings.Fields(strings.Trim(fmt.Sprint(recs[len(recs)-1]["members"]), "[]"))
}

// TestReconcileShards: three reconciler processes of one shard group share
// 24 apps. Each app is delivered exactly once per commit, by one replica,
// and more than one replica delivers; after one replica is killed
// (SIGKILL: its Lease stays behind) the two others take its apps within
// one lease period of the kill, and deliver the next commit, again once
// per app. The status ConfigMap, written by each replica for its own apps,
// lists every app at the last commit.
func TestReconcileShards(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	const apps, lease = 24, 4 * time.Second
	g := newShardGroup(t, apps)
	for _, id := range []string{"a", "b", "c"} {
		g.start(id, lease, "--interval", "300ms")
	}
	ctx := context.Background()
	cs := env.Client()

	eventually(t, 90*time.Second, "every app at generation 1", func() bool { return g.allAt("1") })
	g.once("1", 1)
	_, perReplica := g.deliveries()
	if len(perReplica) < 2 {
		t.Errorf("one replica delivered every app: %v", perReplica)
	}

	// Kill the replica that delivered the most, so the handover matters.
	victim := "a"
	for id, n := range perReplica {
		if n > perReplica[victim] {
			victim = id
		}
	}
	if err := g.replicas[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-g.replicas[victim].exited
	g.commit("2")
	var survivors []*reconcileProc
	for id, p := range g.replicas {
		if id != victim {
			survivors = append(survivors, p)
		}
	}
	twoMembers := func(p *reconcileProc) bool {
		m := members(p)
		return len(m) == 2 && !slices.Contains(m, "replica-"+victim)
	}
	eventually(t, 30*time.Second, "the survivors drop the killed replica", func() bool {
		return twoMembers(survivors[0]) && twoMembers(survivors[1])
	})
	moved := time.Since(killed)
	// The bound: the lease, plus the tenth of it between expiry checks,
	// plus the informer's delay in seeing the last renewal and this
	// test's polling.
	if max := lease + lease/10 + time.Second; moved > max {
		t.Errorf("the killed replica's apps moved %s after the kill, want within %s (lease %s)", moved.Round(time.Millisecond), max, lease)
	}
	t.Logf("the killed replica's apps moved %s after the kill (lease %s)", moved.Round(time.Millisecond), lease)
	eventually(t, 60*time.Second, "every app at generation 2", func() bool { return g.allAt("2") })
	g.once("2", 2)

	// Every app's status, each written by the replica that delivered it.
	var bad []string
	eventually(t, 30*time.Second, "every app's status at the last commit", func() bool {
		bad = nil
		st, err := cs.CoreV1().ConfigMaps(g.inv).Get(ctx, reconcile.StatusConfigMap, metav1.GetOptions{})
		if err != nil {
			bad = append(bad, err.Error())
			return false
		}
		head := st.Annotations[reconcile.AnnotationRevision]
		for i := range apps {
			var a reconcile.AppStatus
			if err := json.Unmarshal([]byte(st.Data[fmt.Sprintf("app-%d", i)]), &a); err != nil || a.Revision != head || a.Result != "succeeded" {
				bad = append(bad, fmt.Sprintf("app-%d: revision %.12s result %s (want %.12s)", i, a.Revision, a.Result, head))
			}
		}
		return len(bad) == 0
	})
	if len(bad) > 0 {
		t.Errorf("status: %v", bad)
	}
}

// TestReconcileShardsWebhook: a push webhook that reaches one replica of a
// shard group is forwarded to the others (through the control ConfigMap),
// so that the apps the other replica owns are delivered at the pushed
// commit too. The replicas poll every ten minutes: within the test's
// time, only the webhook makes them fetch. Every app is delivered once
// at the new commit, both replicas deliver some, and the replica that got
// no webhook says that it fetched on the forwarded request.
func TestReconcileShardsWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	const apps, lease, interval = 8, 4 * time.Second, 10 * time.Minute
	g := newShardGroup(t, apps)
	secret := []byte("shard-webhook-secret")
	secretFile := filepath.Join(g.root, "webhook-secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{}
	for _, id := range []string{"a", "b"} {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr[id] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		g.start(id, lease, "--interval", interval.String(), "--listen", addr[id], "--webhook-secret-file", secretFile)
	}
	eventually(t, 90*time.Second, "every app at generation 1", func() bool { return g.allAt("1") })
	eventually(t, 30*time.Second, "both replicas see both", func() bool {
		return len(members(g.replicas["a"])) == 2 && len(members(g.replicas["b"])) == 2
	})
	g.once("1", 1)

	head := g.commit("2")
	pushed := time.Now()
	body := []byte(`{"ref":"refs/heads/main","after":"` + head + `"}`)
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr["a"]+"/webhook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "shard-push-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook to replica a: %d %s", resp.StatusCode, answer)
	}

	// A tenth of the poll interval: no replica fetches by itself
	// meanwhile.
	eventually(t, interval/10, "every app at generation 2", func() bool { return g.allAt("2") })
	t.Logf("every app at the pushed commit %s after the webhook (poll interval %s)", time.Since(pushed).Round(time.Millisecond), interval)
	g.once("2", 2)
	byReplica := map[string][]string{}
	for id, p := range g.replicas {
		for _, rec := range logLines(p, "run succeeded") {
			if rec["revision"] == head[:12] {
				byReplica[id] = append(byReplica[id], fmt.Sprint(rec["app"]))
			}
		}
	}
	if len(byReplica["a"]) == 0 || len(byReplica["b"]) == 0 {
		t.Errorf("apps delivered at the pushed commit by replica: %v; want some by each, the apps of b through the forwarded webhook", byReplica)
	}
	if n := len(logLines(g.replicas["b"], "webhook")); n != 0 {
		t.Errorf("replica b logged %d webhooks, want none: only a got one", n)
	}
	if len(logLines(g.replicas["b"], "fetch requested through "+reconcile.ControlConfigMap)) == 0 {
		t.Errorf("replica b did not log a fetch requested through %s", reconcile.ControlConfigMap)
	}
	// a fetched when the webhook came: the request it forwarded is not
	// one more for itself.
	if n := len(logLines(g.replicas["a"], "fetch requested through "+reconcile.ControlConfigMap)); n != 0 {
		t.Errorf("replica a fetched again on the request it forwarded (%d times)", n)
	}
}
