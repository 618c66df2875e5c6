package main

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestReconcileFailover: two reconciler processes with leader election;
// the leader is killed (SIGKILL: no Lease release), the standby takes over
// once the Lease expires and delivers the next commit.
func TestReconcileFailover(t *testing.T) {
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	repo, url, root := webRepo(t, ns)
	args := func(cache string) []string {
		return []string{"--repo", url, "--ref", "main", "--interval", "300ms", "--inventory-namespace", inv,
			"--leader-elect", "--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s",
			"--leader-election-retry-period", "500ms", "--cache-dir", filepath.Join(root, cache)}
	}
	a := startReconcile(t, "replica a", nil, args("cache-a")...)
	b := startReconcile(t, "replica b", nil, args("cache-b")...)
	leading := func(p *reconcileProc) bool { return strings.Contains(p.logs.String(), `"msg":"leading"`) }
	var leader, standby *reconcileProc
	eventually(t, 60*time.Second, "a leader", func() bool {
		switch {
		case leading(a):
			leader, standby = a, b
		case leading(b):
			leader, standby = b, a
		}
		return leader != nil
	})
	eventually(t, 30*time.Second, "first apply", func() bool { return color(ns) == "blue" })
	// The run must have ended, its lock released: a leader killed in the
	// middle of a run leaves the app's lock to expire first (LockLease,
	// 30 s), which TestReconcileSIGTERMMidRun and pkg/apply's lock tests
	// cover; here the failover itself is measured.
	eventually(t, 30*time.Second, "first run ended", func() bool {
		return strings.Contains(leader.logs.String(), `"msg":"run succeeded"`)
	})
	if leading(standby) {
		t.Fatalf("both replicas lead")
	}

	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-leader.exited
	took := eventually(t, 30*time.Second, "standby takes over", func() bool { return leading(standby) })
	t.Logf("standby leads %s after the leader was killed (lease 4s)", took.Round(time.Millisecond))
	// At most the lease, the standby's retry period (0.5 s) and its poll
	// of the lease; docs/reliability.md gives this bound.
	if took > 10*time.Second {
		t.Errorf("standby took the lease %s after the leader was killed, want under 10s with a 4s lease", took.Round(time.Millisecond))
	}
	setColor(repo, "green")
	repo.CommitAll("green")
	eventually(t, 30*time.Second, "new leader applies the next commit", func() bool { return color(ns) == "green" })
}

// TestReconcileSIGTERMMidRun: SIGTERM while a migration hook runs ends
// the process at the stage boundary: exit 0 within seconds, the Lease
// released, the config written and recorded, no workload changed, the
// inventory saying "interrupted". A restarted reconciler finishes the job.
func TestReconcileSIGTERMMidRun(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	app := func(jobLabels string) string {
		return `apiVersion: v1
kind: ConfigMap
metadata: {name: config}
data: {schema: "2"}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {deliver.dev/hook: pre-apply}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: ` + jobLabels + `}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: app:2, command: [migrate]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: app:2}]
`
	}
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n")
	repo.WriteFile("web/app.yaml", app("{app: migrate, "+testenv.NeverReadyLabel+": \"true\"}"))
	repo.CommitAll("slow migration")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	args := []string{"--repo", url, "--ref", "main", "--interval", "300ms", "--inventory-namespace", inv,
		"--leader-elect", "--cache-dir", filepath.Join(root, "cache")}

	p := startReconcile(t, "reconciler", nil, args...)
	cs := env.Client()
	eventually(t, 60*time.Second, "migration Job running", func() bool {
		_, err := cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		return err == nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	stopped := time.Since(start)
	t.Logf("stopped %s after SIGTERM", stopped.Round(time.Millisecond))
	// The wait for the Job is cancelled at once; what is left is the
	// inventory and the lease: docs/reliability.md gives this bound.
	if stopped > 5*time.Second {
		t.Errorf("exited %s after SIGTERM, want under 5s", stopped.Round(time.Millisecond))
	}

	lease, err := cs.CoordinationV1().Leases(inv).Get(ctx, "deliver-reconcile", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %q after SIGTERM", *h)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "config", metav1.GetOptions{}); err != nil {
		t.Errorf("config of the interrupted run: %v", err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("workload after a stop during the migration: %v, want not found", err)
	}
	mgr, err := apply.New(env.Config, apply.Options{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	record, err := mgr.ReadInventory(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if record.Result != apply.ResultFailed || !strings.HasPrefix(record.Message, "interrupted") {
		t.Errorf("inventory after SIGTERM: result %q message %q, want failed/interrupted", record.Result, record.Message)
	}
	ids := map[string]bool{}
	for _, e := range record.Entries {
		ids[e.ID.String()] = true
	}
	for _, id := range []string{"ConfigMap/" + ns + "/config", "Deployment/" + ns + "/web"} {
		if !ids[id] {
			t.Errorf("inventory lacks %s: %v", id, ids)
		}
	}

	// The migration is fixed in git; the next reconciler delivers it all.
	repo.WriteFile("web/app.yaml", app("{app: migrate}"))
	repo.CommitAll("migration fixed")
	startReconcile(t, "restarted reconciler", nil, args...)
	eventually(t, 90*time.Second, "restarted reconciler delivers", func() bool {
		r, err := mgr.ReadInventory(ctx, "web")
		return err == nil && r.Result == apply.ResultSucceeded
	})
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("workload after the restarted run: %v", err)
	}
}
