package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func httpGet(url string) (int, string) { return httpGetAs(url, "") }

// httpGetAs is httpGet with the bearer token (none when empty).
func httpGetAs(url, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUICommands: deliver reconcile --ui-addr serves the view of its
// apps with each run's plan, deliver ui serves the same apps from the
// cluster, and both refuse to listen beyond loopback without a token
// check. By default (--ui-auth token) the reconciler's view answers 401
// without a token, linking to the sign-in page, and shows a ServiceAccount
// the apps whose inventory Secret it may get, and no other.
func TestUICommands(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	_, url, root := webRepo(t, ns)
	common := []string{"--repo", url, "--ref", "main", "--interval", "300ms", "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache")}

	out, code := run(t, append([]string{"reconcile", "--kubeconfig", env.Kubeconfig, "--ui-addr", "0.0.0.0:0", "--ui-auth", "none"}, common...)...)
	if code == 0 || !strings.Contains(out, "bind it to loopback") {
		t.Errorf("reconcile --ui-addr 0.0.0.0:0 --ui-auth none: exit %d:\n%s", code, out)
	}

	addr := freeAddr(t)
	noAuth := startReconcile(t, "reconcile", nil, append([]string{"--ui-addr", addr, "--ui-auth", "none", "--ui-actions"}, common...)...)
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

	// One reconciler at a time on the inventory namespace.
	_ = noAuth.cmd.Process.Kill()
	<-noAuth.exited

	// The default: tokens, on any address.
	tokenAddr := freeAddr(t)
	startReconcile(t, "reconcile (token)", nil, append([]string{"--ui-addr", tokenAddr}, common...)...)
	eventually(t, 60*time.Second, "the token-checked view answering", func() bool {
		code, page := httpGet("http://" + tokenAddr + "/")
		return code == http.StatusUnauthorized && strings.Contains(page, `href="/login"`)
	})
	reader, stranger := viewToken(t, inv, "reader", true), viewToken(t, inv, "stranger", false)
	eventually(t, 60*time.Second, "web delivered, for a reader of its inventory", func() bool {
		_, page := httpGetAs("http://"+tokenAddr+"/", reader)
		return regexp.MustCompile(`(?s)data-name="web".*?>succeeded<`).MatchString(page)
	})
	if code, page := httpGetAs("http://"+tokenAddr+"/", stranger); code != http.StatusOK || strings.Contains(page, `data-name="web"`) {
		t.Errorf("a token without rights on the inventory (%d) sees web:\n%s", code, page)
	}
	if code, page := httpGetAs("http://"+tokenAddr+"/apps/_/web", stranger); code != http.StatusNotFound || strings.Contains(page, ns) {
		t.Errorf("a token without rights on the inventory gets web's page (%d):\n%s", code, page)
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

// viewToken returns a token of a new ServiceAccount name in the
// namespace inv, which may get the Secrets there (the inventories) when
// read is set.
func viewToken(t *testing.T, inv, name string, read bool) string {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	if _, err := cs.CoreV1().ServiceAccounts(inv).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if read {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}
		if _, err := cs.RbacV1().Roles(inv).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: inv}}}
		if _, err := cs.RbacV1().RoleBindings(inv).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts(inv).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}
