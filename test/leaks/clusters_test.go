package leaks

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestClustersNoLeaks: the kubeconfig Secrets of a multi-cluster
// reconciler (issue #20) never show. Canaries are planted as the bearer
// token of each kubeconfig, in a second key of a Secret, and in a value
// that is no kubeconfig at all; then the reconciler delivers to a
// working cluster (the token rides along with the client certificate),
// fails on an unreachable one (closed port), and on an unparsable
// kubeconfig. Its JSON logs, /metrics, /readyz and /healthz, deliver
// status of each environment, every Event and every object of the
// cluster but the kubeconfig Secrets themselves are scanned.
func TestClustersNoLeaks(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	ns := env.Namespace(t)
	inv := env.Namespace(t)
	tokenGood := newCanary("kubeconfig-token-reachable")
	tokenGone := newCanary("kubeconfig-token-unreachable")
	otherKey := newCanary("kubeconfig-secret-other-key")
	garbage := newCanary("kubeconfig-garbage")
	cs := []canary{tokenGood, tokenGone, otherKey, garbage}
	pairs := []string{}
	for _, c := range cs {
		pairs = append(pairs, c.Value, "<"+c.Name+">")
	}
	mask = strings.NewReplacer(pairs...)

	// withToken adds the canary token to a kubeconfig of env.
	withToken := func(kubeconfig []byte, token string) []byte {
		cfg, err := clientcmd.Load(kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range cfg.AuthInfos {
			a.Token = token
		}
		b, err := clientcmd.Write(*cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, err := env.KubeconfigFor("good")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := env.UnreachableKubeconfig("gone")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]map[string][]byte{
		"kc-good":    {"value": withToken(good, tokenGood.Value), "notes": []byte(otherKey.Value)},
		"kc-gone":    {"value": withToken(gone, tokenGone.Value)},
		"kc-garbage": {"value": []byte("apiVersion: v1\nkind: Config\nusers: [{name: x, user: {token: " + garbage.Value + "}}]\nclusters: {not: a list}\n")},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: inv}, Data: data}
		if _, err := env.Client().CoreV1().Secrets(inv).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// One app per environment: all but own are the same cluster as
	// own, and one app name has one inventory per cluster.
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	envs := []string{"own", "good", "gone", "garbage"}
	var apps, envYAML strings.Builder
	for _, e := range envs {
		fmt.Fprintf(&apps, "- {name: app-%s, namespace: %s, manifests: {path: %s}}\n", e, ns, e)
		repo.WriteFile(e+"/cm.yaml", fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%s}\ndata: {env: %s}\n", e, e))
	}
	// An app Secret of no canary: the object scan expects one.
	repo.WriteFile("own/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: own}\nstringData: {plain: not-a-secret}\n")
	for _, e := range envs {
		fmt.Fprintf(&envYAML, "  %s:\n", e)
		if e != "own" {
			fmt.Fprintf(&envYAML, "    kubeconfigSecret: {name: kc-%s}\n", e)
		}
		fmt.Fprintf(&envYAML, "    apps:\n")
		for _, o := range envs {
			if o != e {
				fmt.Fprintf(&envYAML, "      app-%s: {disabled: true}\n", o)
			}
		}
	}
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n"+apps.String()+"environments:\n"+envYAML.String())
	repo.CommitAll("four environments")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rec := &reconciler{t: t, addr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan error, 1)}
	rec.cmd = exec.Command(deliverBin, "reconcile", "--repo", url, "--ref", "main", "--interval", "1s", "--retry-max", "2s",
		"--listen", rec.addr, "--inventory-namespace", inv, "--cache-dir", filepath.Join(root, "cache"),
		"--kubeconfig", env.Kubeconfig, "--timeout", "30s", "--env", strings.Join(envs, ","))
	rec.cmd.Stdout, rec.cmd.Stderr = &rec.stdout, &rec.stderr
	if err := rec.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { rec.exited <- rec.cmd.Wait() }()
	t.Cleanup(func() {
		if rec.cmd.ProcessState == nil {
			_ = rec.cmd.Process.Kill()
			<-rec.exited
		}
	})
	status := func(e string) string {
		cm, err := env.Client().CoreV1().ConfigMaps(inv).Get(ctx, reconcile.EnvStatusName(e), metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["app-"+e] + " " + cm.Annotations[reconcile.AnnotationClusterError]
	}
	rec.waitFor("own and good delivered, gone and garbage failed twice", 90*time.Second, func() bool {
		return strings.Contains(status("own"), `"result":"succeeded"`) && strings.Contains(status("good"), `"result":"succeeded"`) &&
			strings.Contains(status("gone"), `"failures":2`) && strings.Contains(status("garbage"), `"failures":2`)
	})
	if s := status("gone"); !strings.Contains(s, "unreachable") {
		t.Errorf("status of gone does not say unreachable: %s", mask.Replace(s))
	}
	if s := status("garbage"); !strings.Contains(s, "no usable kubeconfig") {
		t.Errorf("status of garbage does not say the kubeconfig is unusable: %s", mask.Replace(s))
	}
	rec.get("/metrics")
	rec.get("/healthz")
	req, _ := http.NewRequest(http.MethodGet, "http://"+rec.addr+"/readyz", nil)
	if code, body := rec.do(req); code != 200 || !strings.Contains(body, "gone: unreachable") {
		t.Errorf("/readyz: %d %s", code, mask.Replace(body))
	}
	rec.stop()

	r := &runner{t: t, cluster: []string{"--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}}
	for _, e := range envs {
		r.run("status --env "+e, 0, []string{"environment " + e + ", cluster: "}, "status", "--env", e)
	}
	r.run("status", 0, []string{"reports environments garbage, gone, good, own here"}, "status")

	outs := append(rec.outputs(), r.outputs...)
	outs = append(outs, clusterEvents(t)...)
	objs, _ := clusterObjects(t, ns, "")
	for _, o := range objs {
		// The kubeconfig Secrets hold the canaries: where the user put
		// them.
		for _, name := range []string{"kc-good", "kc-gone", "kc-garbage"} {
			if o.where == "Secret "+inv+"/"+name {
				o.except = []string{tokenGood.Name, tokenGone.Name, otherKey.Name, garbage.Name}
			}
		}
		outs = append(outs, o)
	}
	sc := newScanner(cs...)
	var hits []hit
	for _, o := range outs {
		hits = append(hits, o.allowed(sc.scan(o.where, o.data))...)
	}
	for _, h := range hits {
		t.Errorf("leak: %s", h)
	}
	// The scan saw the canaries where they are: a scan that cannot find
	// them proves nothing.
	found := false
	for _, o := range objs {
		if o.where == "Secret "+inv+"/kc-good" && len(sc.scan(o.where, o.data)) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("the scanner did not find the canary in the kubeconfig Secret kc-good itself")
	}
	t.Logf("scanned %d outputs", len(outs))
}
