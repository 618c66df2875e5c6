package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
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
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	var cfg strings.Builder
	cfg.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	for i := range apps {
		fmt.Fprintf(&cfg, "- {name: app-%d, namespace: %s, manifests: {path: app-%d}}\n", i, ns, i)
	}
	repo.WriteFile("deliver.yaml", cfg.String())
	commit := func(gen string) {
		for i := range apps {
			repo.WriteFile(fmt.Sprintf("app-%d/cm.yaml", i), fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-%d}\ndata: {gen: %q}\n", i, gen))
		}
		repo.CommitAll("generation " + gen)
	}
	commit("1")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	replicas := map[string]*reconcileProc{}
	for _, id := range []string{"a", "b", "c"} {
		replicas[id] = startReconcile(t, "replica "+id, nil, "--repo", url, "--ref", "main", "--interval", "300ms",
			"--inventory-namespace", inv, "--shard", "--shard-identity", "replica-"+id, "--shard-lease-duration", lease.String(),
			"--cache-dir", filepath.Join(root, "cache-"+id))
	}
	ctx := context.Background()
	cs := env.Client()
	allAt := func(gen string) bool {
		list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		n := 0
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Name, "app-") && cm.Data["gen"] == gen {
				n++
			}
		}
		return n == apps
	}
	// deliveries counts the successful runs per app and revision, across
	// replicas, and the apps each replica delivered.
	deliveries := func() (map[string]int, map[string]int) {
		perApp, perReplica := map[string]int{}, map[string]int{}
		for id, p := range replicas {
			for _, rec := range logLines(p, "run succeeded") {
				perApp[fmt.Sprint(rec["app"], "@", rec["revision"])]++
				perReplica[id]++
			}
		}
		return perApp, perReplica
	}
	once := func(gen string, revisions int) {
		t.Helper()
		// The last runs may still be logging.
		eventually(t, 30*time.Second, "a run logged per app", func() bool { perApp, _ := deliveries(); return len(perApp) == apps*revisions })
		perApp, perReplica := deliveries()
		for key, n := range perApp {
			if n != 1 {
				t.Errorf("%s delivered %d times, want once", key, n)
			}
		}
		t.Logf("generation %s: runs per replica %v", gen, perReplica)
	}

	eventually(t, 90*time.Second, "every app at generation 1", func() bool { return allAt("1") })
	once("1", 1)
	_, perReplica := deliveries()
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
	if err := replicas[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-replicas[victim].exited
	commit("2")
	var survivors []*reconcileProc
	for id, p := range replicas {
		if id != victim {
			survivors = append(survivors, p)
		}
	}
	twoMembers := func(p *reconcileProc) bool {
		recs := logLines(p, "shard members")
		if len(recs) == 0 {
			return false
		}
		// Logged as "[replica-a replica-b]".
		m := strings.Fields(strings.Trim(fmt.Sprint(recs[len(recs)-1]["members"]), "[]"))
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
	eventually(t, 60*time.Second, "every app at generation 2", func() bool { return allAt("2") })
	once("2", 2)

	// Every app's status, each written by the replica that delivered it.
	var bad []string
	eventually(t, 30*time.Second, "every app's status at the last commit", func() bool {
		bad = nil
		st, err := cs.CoreV1().ConfigMaps(inv).Get(ctx, reconcile.StatusConfigMap, metav1.GetOptions{})
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
