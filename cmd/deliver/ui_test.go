package main

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUICommands: deliver reconcile --ui-addr serves the view of its
// apps with each run's plan, deliver ui serves the same apps from the
// cluster, and both refuse to listen beyond loopback.
func TestUICommands(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	_, url, root := webRepo(t, ns)
	common := []string{"--repo", url, "--ref", "main", "--interval", "300ms", "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache")}

	out, code := run(t, append([]string{"reconcile", "--kubeconfig", env.Kubeconfig, "--ui-addr", "0.0.0.0:0"}, common...)...)
	if code == 0 || !strings.Contains(out, "bind it to loopback") {
		t.Errorf("reconcile --ui-addr 0.0.0.0:0: exit %d:\n%s", code, out)
	}

	addr := freeAddr(t)
	startReconcile(t, "reconcile", nil, append([]string{"--ui-addr", addr, "--ui-actions"}, common...)...)
	var page string
	eventually(t, 60*time.Second, "web delivered, on the reconciler's view", func() bool {
		_, page = httpGet("http://" + addr + "/")
		return regexp.MustCompile(`(?s)data-name="web".*?>succeeded<`).MatchString(page)
	})
	code, page = httpGet("http://" + addr + "/apps/_/web")
	for _, want := range []string{"color: blue", `id="reconcile-now"`, "ConfigMap/" + ns + "/web"} {
		if code != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("reconciler's view of web (%d) lacks %q:\n%s", code, want, page)
		}
	}

	out, code = run(t, "ui", "--kubeconfig", env.Kubeconfig, "--addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(out, "loopback only") {
		t.Errorf("ui --addr 0.0.0.0:0: exit %d:\n%s", code, out)
	}
	ui := exec.Command(deliverBin, "ui", "--kubeconfig", env.Kubeconfig, "--addr", "127.0.0.1:0", "--inventory-namespace", inv)
	logs := &syncBuffer{}
	ui.Stdout, ui.Stderr = logs, logs
	if err := ui.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ui.Process.Kill(); _ = ui.Wait() })
	var base string
	eventually(t, 30*time.Second, "deliver ui listening", func() bool {
		m := regexp.MustCompile(`serving the web view at (http://\S+/)`).FindStringSubmatch(logs.String())
		if m != nil {
			base = m[1]
		}
		return base != ""
	})
	code, page = httpGet(base)
	if code != http.StatusOK || !regexp.MustCompile(`(?s)data-name="web".*?>succeeded<`).MatchString(page) || strings.Contains(page, `id="reconcile-now"`) {
		t.Errorf("deliver ui's page of all apps (%d), want web succeeded:\n%s", code, page)
	}
	code, page = httpGet(base + "apps/_/web")
	if code != http.StatusOK || !strings.Contains(page, "ConfigMap/"+ns+"/web") || strings.Contains(page, `id="actions"`) {
		t.Errorf("deliver ui's page of web (%d), want its ConfigMap and no actions:\n%s", code, page)
	}
}
