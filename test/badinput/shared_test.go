package badinput

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/sopstest"
)

// The canaries: secret values that must never show. Each is unique, so a
// hit can only come from the secret itself.
const (
	sopsCanary    = "CANARY-sops-7c41e0"
	vaultCanary   = "CANARY-vault-2b9d5a"
	labelCanary   = "CANARY vault label 4e1d" // not a valid label value: the server echoes it
	outsideCanary = "CANARY-outside-root-91f3"
	kubeCanary    = "CANARY-kube-token-0d7e"
	gitPassword   = "CANARY-git-pass-5a2c"
	wrongPassword = "CANARY-wrong-pass-8e6b"
)

// shared is the world every case shares: keys, a Vault with canaries and
// tokens, git servers.
type shared struct {
	vars    map[string]string
	secrets []string
	gitRoot string
	http    *gitserver.HTTPServer
	ssh     *gitserver.SSHServer
	// expiredAt is when the short-lived Vault token has surely expired.
	expiredAt time.Time
}

func (s *shared) secretValues() []string { return s.secrets }

func (s *shared) set(k, v string) { s.vars[k] = v }

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// newShared prepares the shared world once for all cases.
func newShared(t *testing.T) *shared {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s := &shared{vars: map[string]string{}}

	// age keys: the right one, and one that is not a recipient.
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wrongID, _, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	s.set("AGEKEY", writeFile(t, filepath.Join(dir, "keys", "age.key"), []byte(id+"\n"), 0o600))
	s.set("WRONGAGEKEY", writeFile(t, filepath.Join(dir, "keys", "wrong.key"), []byte(wrongID+"\n"), 0o600))
	enc, err := sopstest.Encrypt("app.enc.yaml", []byte("password: "+sopsCanary+"\n"), recipient)
	if err != nil {
		t.Fatal(err)
	}
	s.set("ENCVALUES", string(enc))

	// Vault: the canaries, a token whose policy cannot read them, a token
	// that expires in a second, and one that never existed.
	vc := vaultClient(t, vlt.Addr, vlt.Token)
	if _, err := vc.KVv2("secret").Put(ctx, "badinput/app", map[string]any{"password": vaultCanary, "label": labelCanary}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicy("other-only", `path "secret/data/other/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	limited, err := vc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"other-only"}})
	if err != nil {
		t.Fatal(err)
	}
	short, err := vc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}, TTL: "1s", ExplicitMaxTTL: "1s", NoParent: true})
	if err != nil {
		t.Fatal(err)
	}
	s.expiredAt = time.Now().Add(3 * time.Second)
	s.set("VAULT", vlt.Addr)
	s.set("VAULT_TOKEN", vlt.Token)
	s.set("LIMITED_TOKEN", limited.Auth.ClientToken)
	s.set("EXPIRED_TOKEN", short.Auth.ClientToken)
	s.set("BOGUS_TOKEN", "hvs.CANARYbogusTokenNeverIssued0a1b")

	// A kubeconfig pointing at a port nobody listens on, with a token.
	s.set("NOWHERE_KUBECONFIG", writeFile(t, filepath.Join(dir, "nowhere.kubeconfig"), []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "`+kubeCanary+`"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))

	// Git: one HTTP server with basic auth and one SSH server, serving
	// every repository under gitRoot.
	s.gitRoot = filepath.Join(dir, "git")
	if err := os.MkdirAll(s.gitRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	s.http = gitserver.NewHTTP(t, s.gitRoot, gitserver.HTTPOptions{Username: "deliver", Password: gitPassword})
	s.set("HTTP", s.http.URL)
	priv, pub := gitserver.NewClientKey(t, "")
	otherPriv, otherPub := gitserver.NewClientKey(t, "")
	s.ssh = gitserver.NewSSH(t, s.gitRoot, pub)
	s.set("SSHKEY", writeFile(t, filepath.Join(dir, "keys", "id_ed25519"), priv, 0o600))
	s.set("OTHER_SSHKEY", writeFile(t, filepath.Join(dir, "keys", "other_ed25519"), otherPriv, 0o600))
	s.set("KNOWN_HOSTS", writeFile(t, filepath.Join(dir, "keys", "known_hosts"), s.ssh.KnownHosts(), 0o644))
	s.set("EMPTY_KNOWN_HOSTS", writeFile(t, filepath.Join(dir, "keys", "empty_known_hosts"), nil, 0o644))
	// The server's address with another key: a changed host key, as in a
	// man-in-the-middle.
	changed := knownhosts.Line([]string{knownhosts.Normalize(s.ssh.Addr)}, otherPub) + "\n"
	s.set("CHANGED_KNOWN_HOSTS", writeFile(t, filepath.Join(dir, "keys", "changed_known_hosts"), []byte(changed), 0o644))
	s.set("SSH_ADDR", s.ssh.Addr)

	s.secrets = []string{
		sopsCanary, vaultCanary, labelCanary, outsideCanary, kubeCanary, gitPassword, wrongPassword,
		id, wrongID, vlt.Token, limited.Auth.ClientToken, short.Auth.ClientToken, s.vars["BOGUS_TOKEN"],
	}
	for _, k := range [][]byte{priv, otherPriv} {
		// A line from the middle of each private key.
		lines := splitLines(string(k))
		s.secrets = append(s.secrets, lines[len(lines)/2])
	}
	return s
}

func splitLines(s string) []string {
	return strings.Split(strings.TrimSpace(s), "\n")
}
