package secrets

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/hcvault"
	sopspgp "github.com/getsops/sops/v3/pgp"
	"github.com/hashicorp/vault/api"

	"github.com/deliverhq/deliver/internal/testenv"
)

var env *testenv.Cluster

func TestMain(m *testing.M) {
	code := testenv.Run(m, &env, testenv.Options{NoControllers: true})
	shared.stop()
	os.Exit(code)
}

// sharedVault is one Vault dev server for the tests that do not break it.
type sharedVault struct {
	once sync.Once
	v    *testenv.Vault
	err  error
}

var shared sharedVault

func (s *sharedVault) stop() {
	if s.v != nil {
		s.v.Stop()
	}
}

// startVault returns the shared Vault dev server, started on first use.
func startVault(t *testing.T) *testenv.Vault {
	t.Helper()
	if testing.Short() {
		t.Skip("vault: skipped with -short")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		shared.v, shared.err = testenv.StartVault(ctx)
	})
	if shared.err != nil {
		t.Fatalf("start vault: %v", shared.err)
	}
	return shared.v
}

// ownVault starts a Vault dev server for one test, for tests that seal or
// stop it.
func ownVault(t *testing.T) *testenv.Vault {
	t.Helper()
	if testing.Short() {
		t.Skip("vault: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	v, err := testenv.StartVault(ctx)
	if err != nil {
		t.Fatalf("start vault: %v", err)
	}
	t.Cleanup(v.Stop)
	return v
}

// rootClient returns a Vault client with the root token.
func rootClient(t *testing.T, tv *testenv.Vault) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = tv.Addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tv.Token)
	return c
}

// vaultWrite writes with the root client and fails the test on error.
func vaultWrite(t *testing.T, c *api.Client, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := c.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return s
}

// ageKey generates an age identity.
func ageKey(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pgpKey generates a PGP key (Ed25519 + Curve25519, fast) and returns it
// with its armored private keyring.
func pgpKey(t *testing.T) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity("deliver test", "", "test@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := pgparmor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, b.Bytes()
}

// encOpts say how a test file is encrypted.
type encOpts struct {
	age            []*age.X25519Identity
	pgp            []*openpgp.Entity
	transit        *testenv.Vault // encrypt with transit key "sops" at transit/
	encryptedRegex string
}

// encrypt encrypts a plain document with the sops library, as sops -e does.
func encrypt(t *testing.T, f Format, plain string, o encOpts) []byte {
	t.Helper()
	st, err := f.store()
	if err != nil {
		t.Fatal(err)
	}
	branches, err := st.LoadPlainFile([]byte(plain))
	if err != nil {
		t.Fatalf("load plain %s: %v", f, err)
	}
	dataKey := make([]byte, 32)
	_, _ = rand.Read(dataKey)
	var group sops.KeyGroup
	for _, id := range o.age {
		k, err := sopsage.MasterKeyFromRecipient(id.Recipient().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Encrypt(dataKey); err != nil {
			t.Fatal(err)
		}
		group = append(group, k)
	}
	for _, e := range o.pgp {
		k := sopspgp.NewMasterKeyFromFingerprint(fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
		var b bytes.Buffer
		aw, _ := pgparmor.Encode(&b, "PGP MESSAGE", nil)
		pw, err := openpgp.Encrypt(aw, []*openpgp.Entity{e}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(dataKey)
		pw.Close()
		aw.Close()
		k.EncryptedKey = b.String()
		group = append(group, k)
	}
	if o.transit != nil {
		k := hcvault.NewMasterKey(o.transit.Addr, "transit", "sops")
		hcvault.Token(o.transit.Token).ApplyToMasterKey(k)
		if err := k.Encrypt(dataKey); err != nil {
			t.Fatalf("transit encrypt: %v", err)
		}
		group = append(group, k)
	}
	tree := sops.Tree{
		Branches: branches,
		Metadata: sops.Metadata{
			KeyGroups: []sops.KeyGroup{group},
			Version:   "3.13.3",
		},
	}
	if o.encryptedRegex != "" {
		tree.Metadata.EncryptedRegex = o.encryptedRegex
	} else {
		tree.Metadata.UnencryptedSuffix = sops.DefaultUnencryptedSuffix
	}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		t.Fatal(err)
	}
	tree.Metadata.LastModified = time.Now().UTC()
	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.EmitEncryptedFile(tree)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
