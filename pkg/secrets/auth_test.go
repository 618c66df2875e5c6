package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewAuthFromEnvironment: without a configured method, deliver uses
// VAULT_TOKEN, then ~/.vault-token (what vault login leaves), as the
// vault CLI does; a configured method wins over both; with none of them,
// an error says so.
func TestNewAuthFromEnvironment(t *testing.T) {
	t.Parallel()
	withFile := t.TempDir()
	if err := os.WriteFile(filepath.Join(withFile, ".vault-token"), []byte("hvs.from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tt := range []struct {
		name    string
		auth    VaultAuth
		env     map[string]string
		want    string // the method's name
		wantErr string
	}{
		{"VAULT_TOKEN", VaultAuth{}, map[string]string{EnvVaultToken: "hvs.env", "HOME": withFile}, EnvVaultToken, ""},
		{"~/.vault-token", VaultAuth{}, map[string]string{"HOME": withFile}, "token file " + filepath.Join(withFile, ".vault-token"), ""},
		{"configured token wins", VaultAuth{Token: "hvs.flag"}, map[string]string{EnvVaultToken: "hvs.env", "HOME": withFile}, "token", ""},
		{"no token anywhere", VaultAuth{}, map[string]string{"HOME": empty}, "", "no method configured and no token in the environment"},
		{"no HOME", VaultAuth{}, nil, "", "no method configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newAuth(tt.auth, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.name() != tt.want {
				t.Errorf("method %q, want %q", m.name(), tt.want)
			}
		})
	}
}
