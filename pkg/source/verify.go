package source

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// trustedKeys is the keyring commits must be signed with; empty means no
// verification was asked for.
type trustedKeys openpgp.EntityList

// parseTrustedKeys reads every armored key up front, so a typo in a key is
// reported before anything is fetched.
func parseTrustedKeys(armored []string) (trustedKeys, error) {
	var ring openpgp.EntityList
	for i, a := range armored {
		el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(a))
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if len(el) == 0 {
			return nil, fmt.Errorf("key %d: no public key in armor", i)
		}
		ring = append(ring, el...)
	}
	return trustedKeys(ring), nil
}

// verify checks c's OpenPGP signature against the trusted keys and returns
// the signer's primary key fingerprint. It implements what go-git's
// Commit.Verify does, but against a keyring assembled from several armored
// keys, which Commit.Verify cannot take.
func (k trustedKeys) verify(c *object.Commit) (string, error) {
	if c.PGPSignature == "" {
		return "", fmt.Errorf("commit %s is not signed: %w", c.Hash, ErrSignature)
	}
	if !strings.HasPrefix(strings.TrimSpace(c.PGPSignature), "-----BEGIN PGP SIGNATURE-----") {
		return "", fmt.Errorf("commit %s has a non-OpenPGP (ssh or x509) signature: %w", c.Hash, ErrSignature)
	}
	if n := strings.Count(c.PGPSignature, "-----BEGIN PGP SIGNATURE-----"); n > 1 {
		return "", fmt.Errorf("commit %s carries %d signatures: %w", c.Hash, n, ErrSignature)
	}
	encoded := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(encoded); err != nil {
		return "", err
	}
	signed, err := encoded.Reader()
	if err != nil {
		return "", err
	}
	entity, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList(k), signed, strings.NewReader(c.PGPSignature), nil)
	if err != nil {
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			return "", fmt.Errorf("commit %s is signed by untrusted key %s: %w", c.Hash, issuer(c.PGPSignature), ErrSignature)
		}
		return "", fmt.Errorf("commit %s: %w: %w", c.Hash, ErrSignature, err)
	}
	return fmt.Sprintf("%X", entity.PrimaryKey.Fingerprint), nil
}

// issuer names the key ID a detached signature claims, for the error
// message; "unknown" when the signature cannot be parsed.
func issuer(armored string) string {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return "unknown"
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return "unknown"
	}
	if sig, ok := p.(*packet.Signature); ok {
		if sig.IssuerFingerprint != nil {
			return fmt.Sprintf("%X", sig.IssuerFingerprint)
		}
		if sig.IssuerKeyId != nil {
			return fmt.Sprintf("%016X", *sig.IssuerKeyId)
		}
	}
	return "unknown"
}
