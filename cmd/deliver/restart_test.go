package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/restart"
)

// restartRepo writes the files of TestRestartOnConfigChange: app web
// (rolling) reads ConfigMap settings whole and one key of Secret creds,
// and has a ConfigMap no Pod reads; app db (recreate) mounts ConfigMap
// db-settings. Both restart on config changes, from defaults.
func restartRepo(repo *gitserver.Repo, ns, color, password, other, dbMode string) {
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {restartOnConfigChange: true, waitTimeout: 60s}\napps:\n"+
		"- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"- {name: db, namespace: "+ns+", strategy: recreate, manifests: {path: db}}\n")
	repo.WriteFile("web/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: "+color+"}\n")
	repo.WriteFile("web/creds.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: "+password+", unused: x}\n")
	repo.WriteFile("web/other.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {v: "+other+"}\n")
	repo.WriteFile("web/deployment.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        envFrom: [{configMapRef: {name: settings}}]
        env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}]
`)
	repo.WriteFile("db/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db-settings}\ndata: {mode: "+dbMode+"}\n")
	repo.WriteFile("db/deployment.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: registry.example/db:1, volumeMounts: [{name: conf, mountPath: /etc/db}]}
      volumes: [{name: conf, configMap: {name: db-settings}}]
`)
}

// TestRestartOnConfigChange: against the real control plane (with the
// Deployment controller) and a git server, a change of a ConfigMap a
// Deployment reads changes its pod template's deliver.dev/config-digest
// and a new ReplicaSet rolls out; a change of a ConfigMap no Pod reads, or
// of a Secret key no Pod reads, rolls nothing; a change of the Secret key
// it reads rolls it, and the annotation is no plain hash of the value.
// Under recreate the change goes through the scale-down. The reconciler
// stamps as apply does, with the same key. render shows
// the placeholder; the digest key's Secret and the password never show in
// any output, and a diff before the first apply does not make the key.
func TestRestartOnConfigChange(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	const (
		pw1 = "CANARY-restart-pw-1-7c2e"
		pw2 = "CANARY-restart-pw-2-a91d"
	)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	restartRepo(repo, ns, "blue", pw1, "one", "fast")
	repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")

	var all bytes.Buffer
	deliver := func(wantCode int, args ...string) string {
		t.Helper()
		args = append(args, "--repo", url, "--ref", "main", "--cache-dir", filepath.Join(root, "cache"))
		if args[0] != "render" {
			args = append(args, "--kubeconfig", env.Kubeconfig, "--inventory-namespace", ns)
		}
		cmd := exec.Command(deliverBin, args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		code, err := testenv.ExitCode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(buf.Bytes())
		if code != wantCode {
			t.Fatalf("deliver %s: exit %d, want %d:\n%s", args[0], code, wantCode, buf.String())
		}
		return buf.String()
	}
	digest := func(name string) (string, int64) {
		t.Helper()
		d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[restart.Annotation], d.Generation
	}
	replicaSets := func(app string) int {
		t.Helper()
		l, err := env.Client().AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	waitReplicaSets := func(app string, n int) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("%s has %d ReplicaSets", app, n), func() bool { return replicaSets(app) == n })
	}
	commit := func(color, password, other, dbMode string) {
		t.Helper()
		restartRepo(repo, ns, color, password, other, dbMode)
		repo.CommitAll("change")
	}

	// Offline, there is no key: the placeholder, and nothing digested.
	if out := deliver(0, "render"); !strings.Contains(out, restart.Annotation+": "+restart.Pending) {
		t.Errorf("render lacks the placeholder annotation:\n%s", out)
	}
	// A diff before any apply: no key yet, and a diff makes none.
	if out := deliver(2, "diff"); !strings.Contains(out, "Deployment/"+ns+"/web") {
		t.Errorf("diff before the first apply does not show web:\n%s", out)
	}
	if _, err := env.Client().CoreV1().Secrets(ns).Get(ctx, apply.DigestKeyName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a diff, the digest key Secret: %v, want none (a diff never writes)", err)
	}
	deliver(0, "apply")
	web1, gen1 := digest("web")
	if !strings.HasPrefix(web1, "hmac-sha256:") {
		t.Fatalf("web's pod template annotation = %q, want an HMAC", web1)
	}
	waitReplicaSets("web", 1)

	// Neither a ConfigMap no Pod reads nor a Secret key no Pod reads.
	commit("blue", pw1, "two", "fast")
	deliver(0, "apply")
	if web, gen := digest("web"); web != web1 || gen != gen1 {
		t.Errorf("after an unrelated change: annotation %s generation %d, want %s and %d", web, gen, web1, gen1)
	}
	if n := replicaSets("web"); n != 1 {
		t.Errorf("after an unrelated change web has %d ReplicaSets, want 1", n)
	}

	// The ConfigMap web reads.
	commit("green", pw1, "two", "fast")
	if out := deliver(2, "diff"); !strings.Contains(out, "Deployment/"+ns+"/web") || !strings.Contains(out, restart.Annotation) {
		t.Errorf("diff does not show web's new annotation:\n%s", out)
	}
	deliver(0, "apply")
	web2, _ := digest("web")
	if web2 == web1 {
		t.Errorf("annotation unchanged after the ConfigMap changed: %s", web2)
	}
	waitReplicaSets("web", 2)

	// The Secret key web reads.
	commit("green", pw2, "two", "fast")
	deliver(0, "apply")
	web3, _ := digest("web")
	if web3 == web2 {
		t.Errorf("annotation unchanged after the Secret changed: %s", web3)
	}
	waitReplicaSets("web", 3)
	for _, pw := range []string{pw1, pw2} {
		sum := sha256.Sum256([]byte(pw))
		for _, h := range []string{hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:])} {
			if strings.Contains(web3, h) || strings.Contains(web2, h) {
				t.Errorf("annotation holds a plain SHA-256 of the password")
			}
		}
	}

	// Recreate: db is scaled to 0 before its new template goes in.
	db1, _ := digest("db")
	commit("green", pw2, "two", "safe")
	if out := deliver(2, "diff"); !strings.Contains(out, "will be scaled to 0 before the pre-apply hooks (recreate: its pod template changes)") {
		t.Errorf("diff does not announce db's scale-down:\n%s", out)
	}
	if out := deliver(0, "apply"); !strings.Contains(out, "Deployment/"+ns+"/db scaled-down") {
		t.Errorf("apply did not scale db down:\n%s", out)
	}
	if db2, _ := digest("db"); db2 == db1 {
		t.Errorf("db's annotation unchanged after its ConfigMap changed: %s", db2)
	}
	waitReplicaSets("db", 2)

	// The reconciler: the same stamp, with the same key.
	commit("red", pw2, "two", "safe")
	deliver(0, "reconcile", "--once")
	web4, _ := digest("web")
	if web4 == web3 || !strings.HasPrefix(web4, "hmac-sha256:") {
		t.Errorf("after reconcile --once of a changed ConfigMap: annotation %s, was %s: want a new HMAC", web4, web3)
	}
	waitReplicaSets("web", 4)
	deliver(0, "reconcile", "--once")
	if web, _ := digest("web"); web != web4 {
		t.Errorf("a reconcile pass with nothing changed moved the annotation: %s, was %s", web, web4)
	}

	// Nothing secret in any output: the password, or the digest key.
	key, err := env.Client().CoreV1().Secrets(ns).Get(ctx, apply.DigestKeyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := key.Data["key"]
	if len(k) < 32 {
		t.Fatalf("digest key holds %d bytes, want 32", len(k))
	}
	for _, leak := range []string{pw1, pw2, string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k), base64.RawStdEncoding.EncodeToString(k)} {
		if strings.Contains(all.String(), leak) {
			t.Errorf("an output holds a secret (%d bytes)", len(leak))
		}
	}
}

// TestExampleRestart runs examples/restart from a git repository against
// the real control plane as its README says: a changed GREETING rolls
// shop (a new ReplicaSet), a changed note rolls nothing, a changed
// schedule scales reports (recreate) down before it rolls.
func TestExampleRestart(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	inv := env.Namespace(t)
	const ns = "restart-demo"
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "shop"))
	if out, err := exec.Command("cp", "-r", "../../examples/restart/.", repo.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v %s", err, out)
	}
	repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("shop")
	apply := func(want ...string) {
		t.Helper()
		out, code := run(t, "apply", "--repo", url, "--ref", "main", "--cache-dir", filepath.Join(root, "cache"),
			"--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv, "--timeout", "1m")
		if code != 0 {
			t.Fatalf("apply: exit %d:\n%s", code, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("apply output lacks %q:\n%s", w, out)
			}
		}
	}
	edit := func(file, old, new string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(repo.Dir, file))
		if err != nil || !strings.Contains(string(data), old) {
			t.Fatalf("%s: %v, or no %q in it", file, err, old)
		}
		repo.WriteFile(file, strings.Replace(string(data), old, new, 1))
		repo.CommitAll("edit " + file)
	}
	replicaSets := func(app string) int {
		t.Helper()
		l, err := env.Client().AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	stamp := func(name string) string {
		t.Helper()
		d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[restart.Annotation]
	}

	apply("Deployment/restart-demo/shop created", "Deployment/restart-demo/reports created")
	first := stamp("shop")
	eventually(t, 30*time.Second, "shop's first ReplicaSet", func() bool { return replicaSets("shop") == 1 })

	edit("manifests/shop.yaml", "note: no Pod reads this", "note: still no Pod reads this")
	edit("manifests/shop.yaml", "UNUSED: not read by any Pod", "UNUSED: still not read")
	apply("ConfigMap/restart-demo/shop-notes configured", "Secret/restart-demo/shop-credentials configured")
	if s := stamp("shop"); s != first || replicaSets("shop") != 1 {
		t.Errorf("after unrelated changes: stamp %s (was %s), %d ReplicaSets: want no roll", s, first, replicaSets("shop"))
	}

	edit("manifests/shop.yaml", "GREETING: hello from git", "GREETING: hello again")
	apply("Deployment/restart-demo/shop configured")
	if stamp("shop") == first {
		t.Error("shop's stamp unchanged after GREETING changed")
	}
	eventually(t, 30*time.Second, "shop's second ReplicaSet", func() bool { return replicaSets("shop") == 2 })

	edit("reports/reports.yaml", "schedule: hourly", "schedule: daily")
	apply("Deployment/restart-demo/reports scaled-down", "Deployment/restart-demo/reports configured")
	eventually(t, 30*time.Second, "reports' second ReplicaSet", func() bool { return replicaSets("reports") == 2 })
}
