package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/sopstest"
)

// TestBootstrap installs the reconciler with deliver bootstrap: the
// Deployment follows the repository given, the Secrets hold the files'
// contents, nothing secret is printed, a second run changes nothing (the
// generated webhook secret is kept), and --dry-run shows a new ref as a
// change of the Deployment only.
func TestBootstrap(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	const token = "ghp_bootstrapCanary0123456789"
	identity, _, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenFile, ageFile := write("token", token+"\n"), write("age.agekey", "# created by a test\n"+identity+"\n")
	inv := env.Namespace(t)
	repo := "https://git.example.com/team/deploy.git"
	args := []string{"bootstrap", "--kubeconfig", env.Kubeconfig, "--repo", repo, "--ref", "main", "--env", "prod",
		"--git-token-file", tokenFile, "--age-key-file", ageFile, "--inventory-namespace", inv, "--timeout", "2m"}
	noSecrets := func(out string) {
		t.Helper()
		for _, v := range []string{token, identity} {
			if strings.Contains(out, v) {
				t.Errorf("output shows a secret value:\n%s", out)
			}
		}
	}

	out, code := run(t, args...)
	noSecrets(out)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d:\n%s", code, out)
	}
	cs := env.Client()
	d, err := cs.AppsV1().Deployments("deliver-system").Get(ctx, "deliver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers
	if len(c) != 1 || c[0].Name != "deliver" {
		t.Fatalf("containers %v, want only deliver (no Vault Agent without --vault-addr)", c)
	}
	for _, want := range []string{"reconcile", "--repo=" + repo, "--ref=main", "--env=prod", "--leader-elect", "--age-key-file=/etc/deliver/age/keys.txt"} {
		if !slices.Contains(c[0].Args, want) {
			t.Errorf("args %v lack %s", c[0].Args, want)
		}
	}
	if d.Status.AvailableReplicas != 2 {
		t.Errorf("available replicas = %d, want 2", d.Status.AvailableReplicas)
	}
	secret := func(name, key string) string {
		s, err := cs.CoreV1().Secrets("deliver-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data[key])
	}
	if got := secret("deliver-git-credentials", "token"); got != token {
		t.Errorf("git token Secret holds %d bytes, not the file's token", len(got))
	}
	if got := secret("deliver-age-key", "keys.txt"); !strings.Contains(got, identity) {
		t.Error("age key Secret does not hold the key file")
	}
	hook := secret("deliver-webhook", "secret")
	if len(hook) < 32 {
		t.Errorf("generated webhook secret of %d bytes", len(hook))
	}

	out, code = run(t, args...)
	noSecrets(out)
	if code != 0 || !strings.Contains(out, "0 created, 0 configured") {
		t.Errorf("second bootstrap: exit %d, want nothing changed:\n%s", code, out)
	}
	if got := secret("deliver-webhook", "secret"); got != hook {
		t.Error("a second bootstrap replaced the webhook secret the forge knows")
	}

	dry := slices.Clone(args)
	dry[slices.Index(dry, "main")] = "release"
	out, code = run(t, append(dry, "--dry-run")...)
	noSecrets(out)
	if code != 0 || !strings.Contains(out, "- --ref=release") || !strings.Contains(out, "1 to change") {
		t.Errorf("dry run with a new ref: exit %d, want the Deployment's args changing:\n%s", code, out)
	}
	if d2, _ := cs.AppsV1().Deployments("deliver-system").Get(ctx, "deliver", metav1.GetOptions{}); !slices.Contains(d2.Spec.Template.Spec.Containers[0].Args, "--ref=main") {
		t.Error("--dry-run changed the Deployment")
	}

	// With Vault, the Vault Agent sidecar comes back and both containers
	// are pointed at the address given.
	out, code = run(t, append(slices.Clone(args), "--vault-addr", "https://vault.test:8200", "--dry-run")...)
	noSecrets(out)
	if code != 0 || !strings.Contains(out, "+        name: vault-agent\n") || strings.Count(out, "value: https://vault.test:8200") != 2 {
		t.Errorf("dry run with --vault-addr: exit %d, want the Vault Agent added and VAULT_ADDR set in both containers:\n%s", code, out)
	}

	if out, code := run(t, "bootstrap", "--kubeconfig", env.Kubeconfig, "--repo", repo, "--git-token-file", filepath.Join(dir, "missing")); code != 1 || !strings.Contains(out, "missing") {
		t.Errorf("missing token file: exit %d, want 1 naming the file:\n%s", code, out)
	}
}
