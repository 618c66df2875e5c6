package pipeline

import (
	"context"
	"sync"

	"github.com/deliverhq/deliver/pkg/secrets"
)

// VaultSession is one Vault login shared by the runs of a long-lived
// process (the reconciler). A run without one logs in for itself: with
// the kubernetes or approle method, each login is a TokenReview on the
// API server and a new Vault token that lives until its TTL, so a
// reconciler running a thousand apps would leave a thousand tokens in
// Vault per commit. With one, the process logs in once; secrets.Vault
// renews the token and logs in again when it can no longer be renewed or
// is refused.
//
// The login is made by the first run (or inputs check) that needs Vault;
// when it fails, that run fails as it would alone and the next one tries
// again.
type VaultSession struct {
	opts Options

	mu    sync.Mutex
	vault *secrets.Vault
}

// NewVaultSession returns a session logging in to the Vault of opts
// (Secrets.Getenv's VAULT_ADDR, Secrets.VaultAuth; values read and the
// token are given to opts.Redactor, which should be the one of every run
// sharing the session). No request is made before a run needs Vault.
func NewVaultSession(opts Options) *VaultSession {
	opts.defaults()
	return &VaultSession{opts: opts}
}

// get returns the session's Vault, logging in when it has none; nil when
// VAULT_ADDR is not set. Runs that need it meanwhile wait for that login.
func (s *VaultSession) get(ctx context.Context) (*secrets.Vault, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vault != nil {
		return s.vault, nil
	}
	v, err := newVault(ctx, s.opts)
	if err != nil {
		return nil, err
	}
	s.vault = v
	return v, nil
}

// Close ends the session's login (secrets.Vault.Close: renewal stops, a
// token the login created is revoked); a later run logs in again. A nil
// session has nothing to close.
func (s *VaultSession) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vault != nil {
		s.vault.Close()
		s.vault = nil
	}
}

// runVault returns the Vault a run of opts uses and whether the run owns
// it (logged in for itself, so it closes it at its end): the shared
// session's when opts has one.
func runVault(ctx context.Context, opts Options) (v *secrets.Vault, owned bool, err error) {
	if opts.Vault != nil {
		v, err = opts.Vault.get(ctx)
		return v, false, err
	}
	v, err = newVault(ctx, opts)
	return v, v != nil, err
}
