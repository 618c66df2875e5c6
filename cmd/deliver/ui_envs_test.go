package main

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestUIEnvironments: deliver ui --env staging --env prod --env gone
// reads deliver.yaml from --repo and shows the three environments on one
// page, each read in the cluster of the kubeconfig context deliver.yaml
// names for it (staging: the current context's control plane, prod: a
// second one, whose inventories are in its inventoryNamespace) and in its
// inventory namespace: both apps with their context as cluster, each app
// page with its own cluster's objects (only-prod is in prod's alone), and
// gone, whose context's server does not answer, named at the top of the
// page instead of a blank page or an error. Then deliver reconcile --env
// staging --env prod --ui-addr, prod delivered through its
// kubeconfigSecret, serves one view of both in the same way.
func TestUIEnvironments(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	second := testenv.StartSecond(t, false)
	ctx := context.Background()
	ns, inv, prodInv := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	for _, name := range []string{ns, prodInv} {
		if _, err := second.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// One kubeconfig, three contexts; gone's server is a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneHost := "https://" + ln.Addr().String()
	_ = ln.Close()
	kc := clientcmdapi.NewConfig()
	for name, cfg := range map[string]*rest.Config{"staging": env.Config, "prod": second.Config, "gone": env.Config} {
		host := cfg.Host
		if name == "gone" {
			host = goneHost
		}
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	kc.CurrentContext = "staging"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"environments:\n  staging: {context: staging}\n  prod:\n    context: prod\n    kubeconfigSecret: {name: prod-kubeconfig}\n    inventoryNamespace: "+prodInv+"\n    apps:\n      web: {path: web-prod}\n  gone: {context: gone}\n")
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n")
	repo.WriteFile("web-prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: green}\n")
	repo.WriteFile("web-prod/only.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-prod}\ndata: {here: prod}\n")
	repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	source := []string{"--kubeconfig", kubeconfig, "--repo", url, "--cache-dir", filepath.Join(root, "cache"), "--inventory-namespace", inv}
	for _, e := range []string{"staging", "prod"} {
		if out, code := run(t, append([]string{"apply", "--env", e}, source...)...); code != 0 {
			t.Fatalf("apply --env %s: exit %d:\n%s", e, code, out)
		}
	}

	ui := exec.Command(deliverBin, append([]string{"ui", "--env", "staging,prod", "--env", "gone", "--addr", "127.0.0.1:0"}, source...)...)
	logs := &syncBuffer{}
	ui.Stdout, ui.Stderr = logs, logs
	if err := ui.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ui.Process.Kill()
		_ = ui.Wait()
		if t.Failed() {
			t.Logf("deliver ui output:\n%s", logs.String())
		}
	})
	var base string
	eventually(t, 60*time.Second, "deliver ui listening", func() bool {
		m := regexp.MustCompile(`serving the web view at (http://\S+/)`).FindStringSubmatch(logs.String())
		if m != nil {
			base = m[1]
		}
		return base != ""
	})
	code, page := httpGet(base)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`class="problem">environment gone: `),
		regexp.MustCompile(`data-env="prod"[^>]*>\s*<td>prod</td>\s*<td><a[^>]*>web</a></td>\s*<td>prod</td>\s*<td[^>]*>[0-9a-f]{12}</td>\s*<td class="result r-succeeded"`),
		regexp.MustCompile(`data-env="staging"[^>]*>\s*<td>staging</td>\s*<td><a[^>]*>web</a></td>\s*<td>staging</td>\s*<td[^>]*>[0-9a-f]{12}</td>\s*<td class="result r-succeeded"`),
	} {
		if code != http.StatusOK || !want.MatchString(page) {
			t.Errorf("deliver ui's page of all apps (%d) does not match %s:\n%s", code, want, page)
		}
	}
	onlyProd := `class="object s-Current" data-id="ConfigMap/` + ns + `/only-prod"`
	if code, page := httpGet(base + "apps/prod/web"); code != http.StatusOK || !strings.Contains(page, onlyProd) {
		t.Errorf("prod's web page (%d) does not show only-prod, current in the second cluster:\n%s", code, page)
	}
	if code, page := httpGet(base + "apps/staging/web"); code != http.StatusOK || strings.Contains(page, "only-prod") ||
		!strings.Contains(page, `class="object s-Current" data-id="ConfigMap/`+ns+`/web"`) {
		t.Errorf("staging's web page (%d) does not show its own cluster's objects alone:\n%s", code, page)
	}

	// The reconciler of both, in staging's cluster, and its view.
	prodKubeconfig, err := second.KubeconfigFor("prod")
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "prod-kubeconfig", Namespace: inv}, Data: map[string][]byte{"value": prodKubeconfig}}
	if _, err := env.Client().CoreV1().Secrets(inv).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = ui.Process.Kill()
	addr := freeAddr(t)
	startReconcile(t, "reconcile --env staging --env prod --ui-addr", nil, "--repo", url, "--ref", "main", "--interval", "300ms",
		"--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache-reconcile"),
		"--env", "staging", "--env", "prod", "--ui-addr", addr, "--ui-auth", "none")
	eventually(t, 90*time.Second, "both environments on the reconciler's view", func() bool {
		_, page = httpGet("http://" + addr + "/")
		return regexp.MustCompile(`data-env="staging"[^>]*>\s*<td>staging</td>\s*<td><a[^>]*>web</a></td>\s*<td>own cluster</td>`).MatchString(page) &&
			regexp.MustCompile(`data-env="prod"[^>]*>\s*<td>prod</td>\s*<td><a[^>]*>web</a></td>\s*<td>Secret `+regexp.QuoteMeta(inv)+`/prod-kubeconfig`).MatchString(page) &&
			strings.Count(page, "r-succeeded") == 2
	})
	if code, page := httpGet("http://" + addr + "/apps/prod/web"); code != http.StatusOK || !strings.Contains(page, onlyProd) {
		t.Errorf("the reconciler's page of prod's web (%d) does not show only-prod, current in the second cluster:\n%s", code, page)
	}

	// reconcile-app of prod's web: the request on its inventory in the
	// second cluster (--context prod), the wait on the reconciler's
	// status of prod in staging's cluster (--status-context).
	out, code := run(t, "reconcile-app", "web", "--kubeconfig", kubeconfig, "--context", "prod", "--inventory-namespace", prodInv,
		"--env", "prod", "--status-context", "staging", "--status-namespace", inv, "--wait", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "app web: succeeded at ") {
		t.Errorf("reconcile-app --env prod --status-context staging --wait: exit %d:\n%s", code, out)
	}
	requested := func() string {
		s, err := second.Client().CoreV1().Secrets(prodInv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Annotations[reconcile.AnnotationReconcileRequestedAt]
	}
	before := requested()
	out, code = run(t, "reconcile-app", "web", "--kubeconfig", kubeconfig, "--context", "prod", "--inventory-namespace", prodInv,
		"--env", "prod", "--status-context", "nosuch", "--wait")
	if code != 1 || !strings.Contains(out, `--status-context nosuch: context "nosuch" not found`) {
		t.Errorf("reconcile-app --status-context nosuch: exit %d, want 1 naming the context:\n%s", code, out)
	}
	if after := requested(); after != before {
		t.Errorf("reconcile-app with a wrong --status-context requested a run (%q, was %q)", after, before)
	}
}
