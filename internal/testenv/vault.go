package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Vault is a running Vault dev server: in memory, unsealed, with a root token
// and KV v2 mounted at secret/.
type Vault struct {
	// Addr is the server's address, like VAULT_ADDR.
	Addr string
	// Token is the root token.
	Token string

	proc *process
	dir  string
}

// NewVault starts a Vault dev server for a test, stopped when the test
// ends, and returns it with a client logged in with its root token; a
// failure fails the test.
func NewVault(tb testing.TB) (*Vault, *vaultapi.Client) {
	tb.Helper()
	v, err := StartVault(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Stop)
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(v.Token)
	return v, c
}

// StartVault starts a Vault dev server on a free loopback port and returns
// once it answers as unsealed. Call Stop when done.
func StartVault(ctx context.Context) (*Vault, error) {
	// Started again on a new port when another process took the first one.
	for attempt := 1; ; attempt++ {
		v, err := startVault(ctx)
		if !addrInUse(err) || attempt == 3 {
			return v, err
		}
	}
}

func startVault(ctx context.Context) (*Vault, error) {
	bin, err := Binary("vault")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "deliver-vault-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	v := &Vault{Addr: "http://" + hostPort(port), Token: "root-" + hex.EncodeToString(b[:]), dir: dir}
	v.proc, err = startProcess("vault", bin, dir, []string{
		"server", "-dev",
		"-dev-root-token-id=" + v.Token,
		"-dev-listen-address=" + hostPort(port),
		"-dev-no-store-token",
	}, []string{"HOME=" + dir, "VAULT_ADDR=", "VAULT_TOKEN="})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	err = v.proc.waitFor(ctx, 60*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.Addr+"/v1/sys/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		v.Stop()
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return v, nil
}

// Log returns the path of the server's log.
func (v *Vault) Log() string { return filepath.Join(v.dir, "vault.log") }

// Stop stops the server and removes its folder.
func (v *Vault) Stop() {
	if v == nil {
		return
	}
	v.proc.stop(5 * time.Second)
	_ = os.RemoveAll(v.dir)
}
