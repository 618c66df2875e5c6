package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestStatusCommand: deliver status prints what the inventories and a
// running reconciler say, as a table and as JSON, including an app the
// reconciler was told to suspend and an app that fails.
func TestStatusCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n"+
		"- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"- {name: broken, namespace: "+ns+", manifests: {path: broken}}\n"+
		"- {name: paused, namespace: "+ns+", manifests: {path: web}}\n")
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n")
	repo.WriteFile("broken/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n")
	head := repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")

	out, code := run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 0 || !strings.Contains(out, "no apps delivered yet") {
		t.Errorf("status before any run: exit %d:\n%s", code, out)
	}

	cmd := exec.Command(deliverBin, "reconcile", "--repo", url, "--ref", "main", "--interval", "300ms",
		"--inventory-namespace", inv, "--suspend", "paused",
		"--cache-dir", filepath.Join(root, "cache"), "--kubeconfig", env.Kubeconfig)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("deliver reconcile output:\n%s", logs.String())
		}
	}()
	var err error
	if _, ok := testenv.Until(30*time.Second, 100*time.Millisecond, func() bool {
		var cm *corev1.ConfigMap
		cm, err = env.Client().CoreV1().ConfigMaps(inv).Get(ctx, reconcile.StatusConfigMap, metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["web"], head) && strings.Contains(cm.Data["broken"], `"result":"failed"`) &&
			strings.Contains(cm.Data["paused"], `"suspended":true`)
	}); !ok {
		t.Fatalf("timed out waiting for the reconciler's status: %v", err)
	}

	out, code = run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 0 {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "reconciler at "+head[:12]) ||
		!strings.HasPrefix(lines[1], "APP") {
		t.Fatalf("status table:\n%s", out)
	}
	rows := map[string][]string{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	if r := rows["web"]; len(r) < 7 || r[1] != head[:12] || r[4] != apply.ResultSucceeded || r[5] != apply.ResultSucceeded {
		t.Errorf("web row %q, want revision %s, succeeded", r, head[:12])
	}
	if r := strings.Join(rows["broken"], " "); !strings.Contains(r, "failed") || !strings.Contains(r, "Not_Valid") {
		t.Errorf("broken row %q, want failed with the object named", r)
	}
	if r := strings.Join(rows["paused"], " "); !strings.Contains(r, " yes") {
		t.Errorf("paused row %q, want suspended", r)
	}

	out, code = run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv, "--app", "web", "-o", "json")
	if code != 0 {
		t.Fatalf("status -o json: exit %d:\n%s", code, out)
	}
	var got struct {
		Revision string `json:"revision"`
		Apps     []struct {
			App        string               `json:"app"`
			Revision   string               `json:"revision"`
			Result     string               `json:"result"`
			Time       time.Time            `json:"time"`
			Reconciler *reconcile.AppStatus `json:"reconciler"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(got.Apps) != 1 || got.Apps[0].Reconciler == nil || got.Apps[0].Time.IsZero() {
		t.Fatalf("status -o json --app web:\n%s", out)
	}
	want := []string{head, "web", head, apply.ResultSucceeded, apply.ResultSucceeded}
	g := got.Apps[0]
	if diff := cmp.Diff(want, []string{got.Revision, g.App, g.Revision, g.Result, g.Reconciler.Result}); diff != "" {
		t.Errorf("status -o json (-want +got):\n%s", diff)
	}
}

// TestStatusShowsRunUnderWay: a run that only updates objects does not
// write the inventory before it starts, so status reads the app's lock: a
// held lock is a run under way, one left behind a run that was killed.
func TestStatusShowsRunUnderWay(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	ns := env.Namespace(t)
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{"m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: " + ns + "}\ndata: {color: blue}\n"})
	if out, code := run(t, "apply", "--kubeconfig", env.Kubeconfig, "--path", dir, "-f", "m", "--app", "web", "--inventory-namespace", ns); code != 0 {
		t.Fatalf("apply: exit %d:\n%s", code, out)
	}
	leases := env.Client().CoordinationV1().Leases(ns)
	hold := func(holder string, renewed time.Time) {
		t.Helper()
		lease, err := leases.Get(ctx, "deliver-lock-web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secs := int32(30)
		at := metav1.NewMicroTime(renewed)
		lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &at, RenewTime: &at}
		if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	status := func() []string {
		t.Helper()
		out, code := run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("status: exit %d:\n%s", code, out)
		}
		return strings.Fields(lines[1])
	}

	if row := status(); row[4] != apply.ResultSucceeded || len(row) != 7 {
		t.Errorf("status with the lock free: %q, want succeeded and no message", row)
	}
	hold("ci-runner/77/abc", time.Now())
	if row := strings.Join(status(), " "); !strings.Contains(row, " applying ") || !strings.Contains(row, "run under way: ci-runner/77/abc since") {
		t.Errorf("status with the lock held: %q, want applying by ci-runner/77/abc", row)
	}
	hold("ci-runner/77/abc", time.Now().Add(-time.Hour))
	if row := strings.Join(status(), " "); !strings.Contains(row, " succeeded ") || !strings.Contains(row, "was killed before it finished") {
		t.Errorf("status with the lock left behind: %q, want the last result and the killed run", row)
	}
	out, code := run(t, "status", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns, "-o", "json")
	if code != 0 || !strings.Contains(out, `"holder": "ci-runner/77/abc"`) || !strings.Contains(out, `"stale": true`) {
		t.Errorf("status -o json with the lock left behind: exit %d:\n%s", code, out)
	}
}
