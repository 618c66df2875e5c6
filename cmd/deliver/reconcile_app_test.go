package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReconcileAppCommand: deliver reconcile-app --wait asks the running
// reconciler for a run of an up-to-date app, waits for it and prints
// its result (exit 0); when the run fails it exits 1; an app without an
// inventory Secret is refused. The reconciler also serves its runtime
// profiles on --pprof-addr, which must be a loopback address.
func TestReconcileAppCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns, inv := env.Namespace(t), env.Namespace(t)
	repo, url, root := webRepo(t, ns)
	pprofAddr := freeAddr(t)
	p := startReconcile(t, "deliver reconcile", nil, "--repo", url, "--ref", "main", "--interval", "1h",
		"--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"), "--pprof-addr", pprofAddr)
	eventually(t, 30*time.Second, "first apply", func() bool { return color(ns) == "blue" })

	// The same reconciler serves its runtime profiles on --pprof-addr:
	// the heap profile (gzipped protobuf) and the goroutines as text.
	if code, body := httpGet("http://" + pprofAddr + "/debug/pprof/heap"); code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET /debug/pprof/heap = %d, %d bytes, want a gzipped profile", code, len(body))
	}
	if code, body := httpGet("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("GET /debug/pprof/goroutine?debug=1 = %d:\n%.500s", code, body)
	}
	if code, _ := httpGet("http://" + pprofAddr + "/debug/pprof/nosuch"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/nosuch = %d, want 404", code)
	}
	// Beyond loopback the profiles would be open to anyone: refused.
	if out, code := run(t, "reconcile", "--kubeconfig", env.Kubeconfig, "--repo", url, "--pprof-addr", "0.0.0.0:0"); code == 0 || !strings.Contains(out, "bind them to loopback") {
		t.Errorf("reconcile --pprof-addr 0.0.0.0:0: exit %d, want a refusal:\n%s", code, out)
	}

	args := []string{"reconcile-app", "web", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv, "--wait", "--timeout", "60s"}
	out, code := run(t, args...)
	if code != 0 || !strings.Contains(out, "app web: succeeded at "+repo.Head()[:12]+" (run requested at ") {
		t.Fatalf("reconcile-app --wait: exit %d:\n%s", code, out)
	}
	if !strings.Contains(p.logs.String(), `"reason":"requested at `) {
		t.Errorf("the reconciler logged no run for the request")
	}

	// A commit the API server refuses, not fetched yet (--interval 1h):
	// the request fetches it, and the run, which serves the request,
	// fails.
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Web_Bad}\ndata: {color: red}\n")
	repo.CommitAll("bad")
	out, code = run(t, args...)
	if code != 1 || !strings.Contains(out, "app web: failed") {
		t.Errorf("reconcile-app --wait of a failing app: exit %d, want 1:\n%s", code, out)
	}

	out, code = run(t, "reconcile-app", "nosuch", "--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv)
	if code != 1 || !strings.Contains(out, "no inventory Secret") {
		t.Errorf("reconcile-app of an app without inventory: exit %d, want 1:\n%s", code, out)
	}
}
