package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
)

// TestExampleApp runs examples/app the way a CI pipeline does: from a real
// git server, with its SOPS file and a Vault ref (staging), against the real
// control plane; render, diff, apply, a change in git, a prune, and a failing
// migration that leaves the running version alone. A canary planted in
// Vault never shows in any output.
func TestExampleApp(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	const canary = "CANARY-api-key-5d1c9e"
	v, err := testenv.StartVault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	vc, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.Token)
	if _, err := vc.KVv2("secret").Put(ctx, "shop/web", map[string]any{"apiKey": canary}); err != nil {
		t.Fatal(err)
	}

	// The example as a git repository on a smart-HTTP git server.
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "shop"))
	if out, err := exec.Command("cp", "-r", "../../examples/app/.", repo.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v %s", err, out)
	}
	repo.CommitAll("shop: first version")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("shop")

	var all strings.Builder
	deliver := func(args ...string) (string, int) {
		t.Helper()
		args = append(args, "--repo", url, "--ref", "main", "--env", "staging", "--cache-dir", filepath.Join(root, "cache"))
		if args[0] != "render" {
			args = append(args, "--kubeconfig", env.Kubeconfig)
		}
		cmd := exec.Command(deliverBin, args...)
		cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token,
			"SOPS_AGE_KEY_FILE="+filepath.Join(repo.Dir, "demo.agekey"))
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		code, err := testenv.ExitCode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		out := buf.Bytes()
		all.Write(out)
		return string(out), code
	}
	expect := func(step string, gotCode, wantCode int, out string, contains ...string) {
		t.Helper()
		if gotCode != wantCode {
			t.Fatalf("%s: exit %d, want %d:\n%s", step, gotCode, wantCode, out)
		}
		for _, c := range contains {
			if !strings.Contains(out, c) {
				t.Errorf("%s: output lacks %q:\n%s", step, c, out)
			}
		}
	}
	cs := env.Client()
	webImage := func() string {
		d, err := cs.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}

	out, code := deliver("render")
	expect("render", code, 0, out, "kind: Deployment", "API_KEY: '***'", "# Source: worker:")
	out, code = deliver("diff")
	expect("first diff", code, 2, out, "== app web", "hook Job/shop/web-migrate (pre-apply, weight 0) will run: first run")
	out, code = deliver("apply")
	expect("first apply", code, 0, out, "hook Job/shop/web-migrate (pre-apply) hook-ran", "Deployment/shop/web created", "Deployment/shop/worker created")
	sec, err := cs.CoreV1().Secrets("shop").Get(ctx, "web-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["API_KEY"]) != canary || string(sec.Data["DATABASE_PASSWORD"]) != "demo-db-password-0b5e" {
		t.Errorf("secret values not resolved from Vault and SOPS")
	}
	d, _ := cs.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	if d.Status.AvailableReplicas != 3 {
		t.Errorf("web available replicas = %d, want 3 (staging values)", d.Status.AvailableReplicas)
	}
	out, code = deliver("diff")
	expect("diff after apply", code, 0, out, "0 to create, 0 to change, 0 to delete")

	// A new image in git: the migration runs again, then the rollout.
	dy, _ := os.ReadFile(filepath.Join(repo.Dir, "deliver.yaml"))
	repo.WriteFile("deliver.yaml", strings.Replace(string(dy), "web:1.0.0", "web:1.1.0", 1))
	// And a ConfigMap leaves git: it is pruned.
	ns, _ := os.ReadFile(filepath.Join(repo.Dir, "base", "namespace.yaml"))
	repo.WriteFile("base/namespace.yaml", strings.SplitN(string(ns), "---", 2)[0])
	repo.CommitAll("web 1.1.0, drop shop-settings")
	out, code = deliver("diff")
	expect("diff after change", code, 2, out, "Deployment/shop/web update", "will run: spec or referenced config changed", "ConfigMap/shop/shop-settings delete")
	out, code = deliver("apply")
	expect("apply change", code, 0, out, "hook-ran", "Deployment/shop/web configured", "ConfigMap/shop/shop-settings deleted")
	if _, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "shop-settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("shop-settings not pruned: %v", err)
	}
	if img := webImage(); img != "registry.example/shop/web:1.1.0" {
		t.Errorf("web image = %s after apply", img)
	}

	// A failing migration: exit 1, and 1.1.0 keeps running.
	dy, _ = os.ReadFile(filepath.Join(repo.Dir, "deliver.yaml"))
	broken := strings.Replace(string(dy), "web:1.1.0", "web:1.2.0", 1)
	broken = strings.Replace(broken, "        image: registry.example/shop/web:1.2.0", "        image: registry.example/shop/web:1.2.0\n        migrationLabels: {\""+testenv.FailLabel+"\": \"true\"}", 1)
	repo.WriteFile("deliver.yaml", broken)
	repo.CommitAll("web 1.2.0 with a broken migration")
	out, code = deliver("apply")
	expect("failing migration", code, 1, out, "hook Job/shop/web-migrate", "Job failed", "failed: app web")
	if img := webImage(); img != "registry.example/shop/web:1.1.0" {
		t.Errorf("web image = %s after a failed migration, want 1.1.0 still running", img)
	}

	for _, leak := range []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), "demo-db-password-0b5e"} {
		if strings.Contains(all.String(), leak) {
			t.Errorf("output leaks %q", leak)
		}
	}
}
