package secrets

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"
)

// Environment variables read for Vault, as the vault CLI reads them.
const (
	EnvVaultAddr      = "VAULT_ADDR"
	EnvVaultCACert    = "VAULT_CACERT"
	EnvVaultNamespace = "VAULT_NAMESPACE"
	EnvVaultToken     = "VAULT_TOKEN"
)

// VaultOptions configure a Vault client. Settings left empty are taken from
// the environment through Env, like the vault CLI does.
type VaultOptions struct {
	// Address is the server's URL. Default: VAULT_ADDR, else
	// https://127.0.0.1:8200 (the vault CLI's default).
	Address string
	// CACert is a PEM file of the CAs that sign the server's certificate.
	// Default: VAULT_CACERT, else the system's roots.
	CACert string
	// Namespace is the Vault Enterprise namespace. Default: VAULT_NAMESPACE.
	Namespace string
	// Auth says how to log in. Zero: the token in VAULT_TOKEN, else the
	// one in $HOME/.vault-token, as the vault CLI does.
	Auth VaultAuth
	// Env reads the environment. Pass os.Getenv to honour the process
	// environment. Nil: the environment is not read.
	Env func(string) string
	// HTTPClient is the HTTP client to use; its Transport must be an
	// *http.Transport when CACert is set. Default: a new client.
	HTTPClient *http.Client
	// Timeout bounds each request. Default 60s.
	Timeout time.Duration
	// MaxRetries is how many times a request failing with a 5xx status or
	// a connection error is retried. Default 2. Negative: no retry.
	MaxRetries int
	// CacheTTL keeps what was read for this long, across Resolvers (runs).
	// Default 0: nothing is kept across runs; within one run a Resolver
	// reads each path once.
	CacheTTL time.Duration
	// Redactor is given the tokens and credentials used to log in and
	// every value read. Nil: nothing is registered.
	Redactor *Redactor
	// Logger receives renewals and logins. Nil: discarded.
	Logger *slog.Logger
}

// VaultAuth selects one auth method. At most one field may be set.
type VaultAuth struct {
	// Token is a Vault token. It cannot be renewed past its max TTL: when
	// it expires, requests fail with ErrTokenExpired.
	Token string
	// TokenFile is a file holding a token, such as a Vault Agent sink. It
	// is read again when the token expires.
	TokenFile string
	// Kubernetes logs in with a Kubernetes ServiceAccount token.
	Kubernetes *KubernetesAuth
	// AppRole logs in with an AppRole role ID and secret ID.
	AppRole *AppRoleAuth
}

// Vault is a logged-in client of a Vault server. It renews its token while
// it is open and logs in again when the token expires. It is safe for
// concurrent use; call Close when done.
type Vault struct {
	client   *api.Client
	auth     authMethod
	redactor *Redactor
	log      *slog.Logger
	ttl      time.Duration

	ctx    context.Context // lives until Close, for renewal and re-login
	cancel context.CancelFunc

	logins singleflight.Group
	mu     sync.Mutex
	stop   func() // stops the current token's lifetime watcher

	mounts singleflight.Group
	mountM sync.Mutex
	mount  map[string]mountInfo

	cacheM sync.Mutex
	cache  map[string]cached
}

type cached struct {
	data    map[string]any
	version int
	expires time.Time
}

// mountInfo is what sys/internal/ui/mounts says about a path's mount.
type mountInfo struct {
	path    string // with a trailing slash, like "secret/"
	kind    string // "kv", "transit", …
	version string // "1" or "2" for kv
}

// kv2 reports whether the mount is a KV v2 engine.
func (m mountInfo) kv2() bool { return m.kind == "kv" && m.version == "2" }

// rel returns p, a path of a KV v2 secret in the API's form or the
// CLI's, relative to the mount and without data/: secret/data/app and
// secret/app are both app.
func (m mountInfo) rel(p string) string {
	return strings.TrimPrefix(strings.TrimPrefix(p, m.path), "data/")
}

// NewVault connects to Vault and logs in.
func NewVault(ctx context.Context, opts VaultOptions) (*Vault, error) {
	env := opts.Env
	if env == nil {
		env = func(string) string { return "" }
	}
	addr := cmp.Or(opts.Address, env(EnvVaultAddr), "https://127.0.0.1:8200")
	cfg := &api.Config{
		Address:    addr,
		HttpClient: opts.HTTPClient,
		Timeout:    opts.Timeout,
		MaxRetries: opts.MaxRetries,
	}
	if cfg.HttpClient == nil {
		cfg.HttpClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	// Vault handles redirects itself.
	cfg.HttpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	switch {
	case opts.MaxRetries == 0:
		cfg.MaxRetries = 2
	case opts.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if ca := cmp.Or(opts.CACert, env(EnvVaultCACert)); ca != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: ca}); err != nil {
			return nil, fmt.Errorf("vault %s: ca cert %s: %w", addr, ca, err)
		}
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", addr, err)
	}
	// api.NewClient reads VAULT_TOKEN and VAULT_NAMESPACE from the process
	// environment itself: only what the options say counts.
	client.ClearToken()
	client.ClearNamespace()
	if ns := cmp.Or(opts.Namespace, env(EnvVaultNamespace)); ns != "" {
		client.SetNamespace(ns)
	}
	auth, err := newAuth(opts.Auth, env)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", addr, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bg, cancel := context.WithCancel(context.Background())
	v := &Vault{
		client:   client,
		auth:     auth,
		redactor: opts.Redactor,
		log:      log,
		ttl:      opts.CacheTTL,
		ctx:      bg,
		cancel:   cancel,
		mount:    map[string]mountInfo{},
		cache:    map[string]cached{},
	}
	if err := v.login(ctx); err != nil {
		v.Close()
		return nil, fmt.Errorf("vault %s: %w", addr, err)
	}
	return v, nil
}

// Address returns the server's address.
func (v *Vault) Address() string { return v.client.Address() }

// Client returns the underlying client, logged in. Requests made with it do
// not get the re-login and error handling of this package.
func (v *Vault) Client() *api.Client { return v.client }

// revokeTimeout bounds Close's revocation of the token: a Vault that does
// not answer leaves it to expire at its TTL rather than hold up the end
// of a run.
const revokeTimeout = 5 * time.Second

// Close stops renewing the token and, when a login created it (kubernetes,
// approle), revokes it: a token deliver is done with would otherwise stay
// valid, and stored in Vault, until its TTL (the roles' default is Vault's
// 32 days), one per run of every CI job. A token the user gave (VAULT_TOKEN,
// a token file) is left alone.
func (v *Vault) Close() {
	v.cancel()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stop != nil {
		v.stop()
		v.stop = nil
	}
	if !v.auth.creates() || v.client.Token() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if err := v.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		v.log.Debug("vault: revoke token", "error", v.redactor.Redact(err.Error()))
	}
	v.client.ClearToken()
}

// login logs in (once, even when called concurrently) and starts renewing
// the new token.
func (v *Vault) login(ctx context.Context) error {
	_, err, _ := v.logins.Do("login", func() (any, error) {
		c, err := v.client.Clone()
		if err != nil {
			return nil, err
		}
		c.ClearToken()
		sec, err := v.auth.login(ctx, c, v.redactor)
		if err != nil {
			return nil, fmt.Errorf("login (%s): %w", v.auth.name(), classify(err))
		}
		if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
			return nil, fmt.Errorf("login (%s): no token in the answer", v.auth.name())
		}
		v.redactor.Add(sec.Auth.ClientToken, sec.Auth.Accessor)
		v.client.SetToken(sec.Auth.ClientToken)
		v.log.Debug("vault: logged in", "method", v.auth.name(), "ttl", time.Duration(sec.Auth.LeaseDuration)*time.Second)
		v.watch(sec)
		return nil, nil
	})
	return err
}

// watch renews the token of sec until it can no longer be renewed, then
// logs in again if the auth method can.
func (v *Vault) watch(sec *api.Secret) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stop != nil {
		v.stop()
		v.stop = nil
	}
	if v.ctx.Err() != nil || !sec.Auth.Renewable || sec.Auth.LeaseDuration <= 0 {
		return
	}
	w, err := v.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
	if err != nil {
		v.log.Warn("vault: cannot renew token", "error", v.redactor.Redact(err.Error()))
		return
	}
	done := make(chan struct{})
	v.stop = func() { w.Stop(); close(done) }
	go w.Start()
	go func() {
		for {
			select {
			case <-done:
				return
			case r := <-w.RenewCh():
				if r != nil && r.Secret != nil && r.Secret.Auth != nil {
					v.log.Debug("vault: token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
				}
			case err := <-w.DoneCh():
				if !v.auth.canRelogin() || v.ctx.Err() != nil {
					return
				}
				if err != nil {
					v.log.Info("vault: token renewal failed, logging in again", "error", v.redactor.Redact(err.Error()))
				}
				if err := v.login(v.ctx); err != nil {
					// The next request logs in again.
					v.log.Warn("vault: login failed", "error", v.redactor.Redact(err.Error()))
				}
				return
			}
		}
	}()
}

// do runs a request. When Vault refuses it, do tells a refused token from a
// refused path: an expired token is replaced by logging in again and the
// request is retried once; if the method cannot log in again the error is
// ErrTokenExpired.
func (v *Vault) do(ctx context.Context, req func() error) error {
	err := req()
	if err == nil || !isForbidden(err) {
		return classify(err)
	}
	if _, lerr := v.client.Auth().Token().LookupSelfWithContext(ctx); lerr == nil {
		return classify(err) // the token is fine: the policy refuses
	} else if !isForbidden(lerr) {
		return classify(lerr)
	}
	if !v.auth.canRelogin() {
		return fmt.Errorf("%w (auth %s)", ErrTokenExpired, v.auth.name())
	}
	if lerr := v.login(ctx); lerr != nil {
		return fmt.Errorf("%w: log in again: %w", ErrTokenExpired, lerr)
	}
	return classify(req())
}

// isForbidden reports whether err is a 403 from Vault.
func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// classify maps an error of the Vault client to the package's sentinel
// errors, keeping Vault's own short messages.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrPermissionDenied, ErrNotFound, ErrSealed, ErrUnreachable, ErrTokenExpired} {
		if errors.Is(err, s) {
			return err
		}
	}
	if errors.Is(err, api.ErrSecretNotFound) {
		return ErrNotFound // the KV v2 client's: no secret, or no metadata
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusForbidden:
			return ErrPermissionDenied
		case re.StatusCode == http.StatusNotFound:
			return ErrNotFound
		case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed"):
			return ErrSealed
		}
		if msg == "" {
			msg = http.StatusText(re.StatusCode)
		}
		return fmt.Errorf("vault answered %d: %s", re.StatusCode, msg)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || strings.Contains(err.Error(), "giving up after") {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return fmt.Errorf("%w: %v", ErrUnreachable, oe)
		}
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	return err
}

// ReadKV reads a secret and returns its keys and values. For a KV v2 mount
// path may be the API path (secret/data/app) or the CLI's (secret/app);
// the mount's version is asked to Vault once. Reads are not cached unless
// VaultOptions.CacheTTL is set; a Resolver reads each path once per run.
func (v *Vault) ReadKV(ctx context.Context, p string) (map[string]any, error) {
	data, _, err := v.ReadKVVersion(ctx, p)
	return data, err
}

// ReadKVVersion is ReadKV that also returns the version of a KV v2 secret
// it read, taken from the same answer as the values (so that it is the
// version of those values, whatever was written since); 0 for a secret
// without versions (KV v1, another engine).
func (v *Vault) ReadKVVersion(ctx context.Context, p string) (map[string]any, int, error) {
	p = strings.Trim(p, "/")
	if v.ttl > 0 {
		v.cacheM.Lock()
		c, ok := v.cache[p]
		v.cacheM.Unlock()
		if ok && time.Now().Before(c.expires) {
			return c.data, c.version, nil
		}
	}
	m, err := v.mountOf(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	var (
		data    map[string]any
		version int
	)
	if m.kv2() {
		var sec *api.KVSecret
		err = v.do(ctx, func() error {
			var err error
			sec, err = v.kv2(m).Get(ctx, m.rel(p))
			return err
		})
		if err != nil {
			return nil, 0, err
		}
		if sec.Data == nil {
			// Deleted or destroyed version.
			return nil, 0, ErrNotFound
		}
		data = sec.Data
		if sec.VersionMetadata != nil {
			version = sec.VersionMetadata.Version
		}
	} else {
		var sec *api.Secret
		err = v.do(ctx, func() error {
			var err error
			sec, err = v.client.Logical().ReadWithContext(ctx, p)
			return err
		})
		if err != nil {
			return nil, 0, err
		}
		if sec == nil || sec.Data == nil {
			return nil, 0, ErrNotFound
		}
		data = sec.Data
	}
	v.register(data)
	if v.ttl > 0 {
		v.cacheM.Lock()
		v.cache[p] = cached{data: data, version: version, expires: time.Now().Add(v.ttl)}
		v.cacheM.Unlock()
	}
	return data, version, nil
}

// KVVersion returns the current version of a KV v2 secret from its
// metadata, which holds no value: what a later run compares with the
// version its last render read (ReadKVVersion) to tell whether the secret
// changed. path is as for ReadKV; the token needs read on the mount's
// metadata/ path. It fails with ErrNotVersioned for a path outside a KV
// v2 mount, and with ErrNotFound when the secret does not exist or its
// current version is deleted or destroyed (a read would fail). It is never
// cached.
func (v *Vault) KVVersion(ctx context.Context, p string) (int, error) {
	p = strings.Trim(p, "/")
	m, err := v.mountOf(ctx, p)
	if err != nil {
		return 0, err
	}
	if !m.kv2() {
		return 0, ErrNotVersioned
	}
	var md *api.KVMetadata
	err = v.do(ctx, func() error {
		var err error
		md, err = v.kv2(m).GetMetadata(ctx, m.rel(p))
		return err
	})
	if err != nil {
		return 0, err
	}
	cur := md.CurrentVersion
	if cur <= 0 {
		return 0, ErrNotFound
	}
	if e, ok := md.Versions[strconv.Itoa(cur)]; ok && (e.Destroyed || !e.DeletionTime.IsZero()) {
		return 0, ErrNotFound
	}
	return cur, nil
}

// kv2 is the vault API's KV v2 client of mount m.
func (v *Vault) kv2(m mountInfo) *api.KVv2 {
	return v.client.KVv2(strings.TrimSuffix(m.path, "/"))
}

// register gives every value of a secret to the redactor.
func (v *Vault) register(data map[string]any) {
	if v.redactor != nil {
		registerAll(v.redactor, data)
	}
}

// mountOf returns the mount a path belongs to.
func (v *Vault) mountOf(ctx context.Context, p string) (mountInfo, error) {
	v.mountM.Lock()
	for prefix, m := range v.mount {
		if strings.HasPrefix(p+"/", prefix) {
			v.mountM.Unlock()
			return m, nil
		}
	}
	v.mountM.Unlock()
	r, err, _ := v.mounts.Do(p, func() (any, error) {
		var sec *api.Secret
		err := v.do(ctx, func() error {
			var err error
			sec, err = v.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+p)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("find mount: %w", err)
		}
		if sec == nil || sec.Data == nil {
			return nil, fmt.Errorf("find mount: %w", ErrNotFound)
		}
		m := mountInfo{}
		m.path, _ = sec.Data["path"].(string)
		m.kind, _ = sec.Data["type"].(string)
		if o, ok := sec.Data["options"].(map[string]any); ok {
			m.version, _ = o["version"].(string)
		}
		if m.path == "" {
			return nil, fmt.Errorf("find mount: %w", ErrNotFound)
		}
		if m.kind == "kv" && m.version == "" {
			m.version = "1"
		}
		v.mountM.Lock()
		v.mount[m.path] = m
		v.mountM.Unlock()
		return m, nil
	})
	if err != nil {
		return mountInfo{}, err
	}
	return r.(mountInfo), nil
}

// transitDecrypt decrypts a ciphertext with a transit key, for SOPS files
// whose data key is encrypted with Vault transit.
func (v *Vault) transitDecrypt(ctx context.Context, engine, key, ciphertext string) ([]byte, error) {
	var sec *api.Secret
	err := v.do(ctx, func() error {
		var err error
		sec, err = v.client.Logical().WriteWithContext(ctx, path.Join(engine, "decrypt", key), map[string]any{"ciphertext": ciphertext})
		return err
	})
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, errors.New("empty answer from transit")
	}
	pt, _ := sec.Data["plaintext"].(string)
	b, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(b) == 0 {
		return nil, errors.New("malformed answer from transit")
	}
	return b, nil
}
