package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestVaultAppRoleLogin: with --vault-auth approle and no token at all,
// deliver logs in to a real Vault and resolves a ref; the value reaches
// the rendered object and is masked everywhere else.
func TestVaultAppRoleLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Vault")
	}
	ctx := context.Background()
	v, err := testenv.StartVault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	c, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	const canary = "CANARY-approle-7e31"
	if _, err := c.KVv2("secret").Put(ctx, "app", map[string]any{"password": canary}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().PutPolicy("read-app", `path "secret/data/app" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("auth/approle/role/deliver", map[string]any{"token_policies": "read-app"}); err != nil {
		t.Fatal(err)
	}
	rid, err := c.Logical().Read("auth/approle/role/deliver/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := c.Logical().Write("auth/approle/role/deliver/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secretIDFile := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(filepath.Join(repo, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "m", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {password: \"ref+vault://secret/data/app#/password\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rendered := filepath.Join(dir, "rendered.yaml")
	out, err := os.Create(rendered)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(deliverBin, "render", "--path", repo, "-f", "m", "--show-secrets",
		"--vault-auth", "approle", "--vault-role-id", rid.Data["role_id"].(string), "--vault-secret-id-file", secretIDFile)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN=", "HOME="+dir)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	code, err := testenv.ExitCode(cmd)
	out.Close()
	if err != nil || code != 0 {
		t.Fatalf("render: exit %d %v\n%s", code, err, stderr.String())
	}
	data, _ := os.ReadFile(rendered)
	if !strings.Contains(string(data), "password: "+canary) {
		t.Errorf("the ref was not resolved through the AppRole login:\n%s", data)
	}
	// A wrong role ID: a clear login error, no value anywhere.
	cmd = exec.Command(deliverBin, "render", "--path", repo, "-f", "m",
		"--vault-auth", "approle", "--vault-role-id", "wrong-role-id", "--vault-secret-id-file", secretIDFile)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN=", "HOME="+dir)
	var both strings.Builder
	cmd.Stdout, cmd.Stderr = &both, &both
	code, err = testenv.ExitCode(cmd)
	if err != nil || code != 1 || !strings.Contains(both.String(), "approle") || strings.Contains(both.String(), canary) {
		t.Errorf("wrong role id: exit %d, want 1 naming the approle login and no value:\n%s", code, both.String())
	}
}
