package reconcile_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// switchProxy forwards TCP connections to a server and can be switched
// off (connections refused, those open cut) and on again at the same
// address: a server that goes down and comes back.
type switchProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	p := &switchProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *switchProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *switchProxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *switchProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func (p *switchProxy) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	// The port was just released; the kernel may take a moment.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGitServerDown: while the git server is down the reconciler keeps
// serving its probes, reports the failed fetches in its status and
// metrics, and delivers the commit pushed meanwhile once it is back.
func TestGitServerDown(t *testing.T) {
	ns := env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}"))
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "blue"}))
	repo.CommitAll("first")
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{})
	proxy := newSwitchProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	g := &gitRepo{Repo: repo, URL: "http://" + proxy.addr + "/deploy", cache: filepath.Join(root, "cache")}
	opts := options(t, g, env.Config)
	r, _ := start(t, opts)
	h := httptest.NewServer(r.Handler())
	defer h.Close()
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	proxy.down()
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	head := repo.CommitAll("green")
	waitFor(t, 10*time.Second, "fetch failure in status", func() bool { return r.Status().SourceError != "" })
	time.Sleep(5 * opts.Interval) // several failed fetches
	if code, body := get(t, h.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while git is down: %d %s", code, body)
	}
	if code, _ := get(t, h.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz while git is down: %d", code)
	}
	if _, body := get(t, h.URL+"/metrics"); !strings.Contains(body, "deliver_git_fetch_errors_total ") ||
		strings.Contains(body, "deliver_git_fetch_errors_total 0\n") {
		t.Errorf("/metrics does not count the failed fetches:\n%.3000s", body)
	}
	st := r.Status()
	t.Logf("status while git is down: %s", st.SourceError)
	if a := appStatus(r, "web"); a.Result != apply.ResultSucceeded || a.Revision == head {
		t.Errorf("web status while git is down = %+v, want the last success kept", a)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Errorf("color = %s while git is down", got)
	}

	proxy.up()
	took := waitFor(t, 20*time.Second, "catch up", func() bool {
		return cmData(t, ns, "web")["color"] == "green" && appStatus(r, "web").Revision == head && r.Status().SourceError == ""
	})
	t.Logf("caught up %s after the git server came back", took.Round(time.Millisecond))
}

// TestVaultDown: with Vault unreachable a run fails before any write, so
// no object of the app changes (no partial apply: a plain ConfigMap of the
// same commit is not applied without the Secret); the status says Vault;
// once Vault is back the retry delivers the whole commit.
func TestVaultDown(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t) // first: skipped with -short before Vault starts
	v, err := testenv.StartVault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	vc, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.Token)
	if _, err := vc.KVv2("secret").Put(ctx, "web", map[string]any{"key": "s3cr3t-one-8a1f"}); err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, strings.TrimPrefix(v.Addr, "http://"))

	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {apiKey: \"ref+vault://secret/data/web#/key\", version: \"%s\"}\n"
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":    deliverYAML(ns, "- {name: web, namespace: $NS, manifests: {path: web}}"),
		"web/cm.yaml":     configMap("web", map[string]string{"color": "blue"}),
		"web/secret.yaml": strings.Replace(secret, "%s", "1", 1),
	})
	opts := options(t, repo, env.Config)
	opts.Pipeline.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": "http://" + proxy.addr, "VAULT_TOKEN": v.Token}[k]
	}
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	proxy.down()
	repo.WriteFile("web/cm.yaml", configMap("web", map[string]string{"color": "green"}))
	repo.WriteFile("web/secret.yaml", strings.Replace(secret, "%s", "2", 1))
	head := repo.CommitAll("green")
	waitFor(t, 30*time.Second, "failed run", func() bool { return appStatus(r, "web").Failures >= 1 })
	a := appStatus(r, "web")
	t.Logf("status while Vault is down: %s", a.Message)
	if a.Result != apply.ResultFailed || !strings.Contains(strings.ToLower(a.Message), "vault") || a.Revision == head {
		t.Errorf("status while Vault is down = %+v, want failed naming Vault", a)
	}
	if got := cmData(t, ns, "web")["color"]; got != "blue" {
		t.Errorf("color = %s while Vault is down: a partial apply", got)
	}

	proxy.up()
	took := waitFor(t, 30*time.Second, "recovery", func() bool {
		return appStatus(r, "web").Revision == head && cmData(t, ns, "web")["color"] == "green"
	})
	t.Logf("recovered %s after Vault came back", took.Round(time.Millisecond))
	s, err := env.Client().CoreV1().Secrets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data["version"]) != "2" || string(s.Data["apiKey"]) != "s3cr3t-one-8a1f" {
		t.Errorf("secret not delivered with the new commit after recovery")
	}
}

// TestFirstRunFailedThenFixed: an app whose first run fails in its dry
// run (its ServiceAccount may not write), after taking its Lease and
// before writing its inventory, is retried with the server's reason each
// time, and delivered once a commit fixes it. Each retry looks like a new
// app (no inventory) and tries to create the Lease first: the Lease it
// finds must then be taken, not reported as missing.
func TestFirstRunFailedThenFixed(t *testing.T) {
	ns := env.Namespace(t)
	env.ServiceAccount(t, ns, "reader")
	env.Grant(t, ns, ns, "reader", []string{"get", "list", "watch"}, "configmaps")
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: late, namespace: $NS, manifests: {path: late}, serviceAccountName: reader}"),
		"late/cm.yaml": configMap("late", map[string]string{"color": "blue"}),
	})
	r, _ := start(t, options(t, repo, env.Config))

	var s reconcile.AppStatus
	waitFor(t, 30*time.Second, "first runs failed", func() bool {
		s = appStatus(r, "late")
		return s.Failures >= 3 && s.Result != reconcile.ResultRunning
	})
	if !strings.Contains(s.Message, "forbidden") || strings.Contains(s.Message, "lock") {
		t.Errorf("retry %d: message %q, want forbidden and no lock error", s.Failures, s.Message)
	}

	repo.WriteFile("deliver.yaml", deliverYAML(ns, "- {name: late, namespace: $NS, manifests: {path: late}}"))
	head := repo.CommitAll("as deliver itself")
	waitFor(t, 30*time.Second, "fixed app delivered", func() bool {
		return appStatus(r, "late").Revision == head && cmData(t, ns, "late")["color"] == "blue"
	})
}
