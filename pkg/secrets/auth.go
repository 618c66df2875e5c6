package secrets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// DefaultServiceAccountTokenFile is where a pod finds its ServiceAccount
// token.
const DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// KubernetesAuth logs in to Vault's kubernetes auth method with a
// ServiceAccount token.
type KubernetesAuth struct {
	// Role is the Vault role to log in as. Required.
	Role string
	// Mount is where the auth method is mounted. Default "kubernetes".
	Mount string
	// JWTFile is the file holding the ServiceAccount token; it is read at
	// each login, since projected tokens rotate. Default
	// DefaultServiceAccountTokenFile.
	JWTFile string
}

// AppRoleAuth logs in to Vault's AppRole auth method.
type AppRoleAuth struct {
	// RoleID is the role's ID. Required.
	RoleID string
	// SecretIDFile is the file holding the secret ID; it is read at each
	// login. Required unless the role does not bind a secret ID.
	SecretIDFile string
	// Mount is where the auth method is mounted. Default "approle".
	Mount string
}

// authMethod gets a token.
type authMethod interface {
	// name names the method in messages.
	name() string
	// login gets a new token with c, a client without a token.
	login(ctx context.Context, c *api.Client, r *Redactor) (*api.Secret, error)
	// canRelogin reports whether a new login may give a new token.
	canRelogin() bool
	// creates reports whether a login creates the token (kubernetes,
	// approle), which is then deliver's to revoke when done, rather than
	// reading one the user holds (a token, a token file).
	creates() bool
}

// newAuth picks the auth method of a.
func newAuth(a VaultAuth, env func(string) string) (authMethod, error) {
	n := 0
	for _, set := range []bool{a.Token != "", a.TokenFile != "", a.Kubernetes != nil, a.AppRole != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("auth: more than one method configured")
	}
	switch {
	case a.Token != "":
		return tokenAuth{token: a.Token, what: "token"}, nil
	case a.TokenFile != "":
		return tokenFileAuth{file: a.TokenFile}, nil
	case a.Kubernetes != nil:
		k := *a.Kubernetes
		if k.Role == "" {
			return nil, errors.New("auth kubernetes: no role")
		}
		k.Mount = strings.Trim(cmp.Or(k.Mount, "kubernetes"), "/")
		k.JWTFile = cmp.Or(k.JWTFile, DefaultServiceAccountTokenFile)
		return kubernetesAuth(k), nil
	case a.AppRole != nil:
		r := *a.AppRole
		if r.RoleID == "" {
			return nil, errors.New("auth approle: no role_id")
		}
		r.Mount = strings.Trim(cmp.Or(r.Mount, "approle"), "/")
		return appRoleAuth(r), nil
	}
	if t := env(EnvVaultToken); t != "" {
		return tokenAuth{token: t, what: EnvVaultToken}, nil
	}
	if home := env("HOME"); home != "" {
		f := filepath.Join(home, ".vault-token")
		if _, err := os.Stat(f); err == nil {
			return tokenFileAuth{file: f}, nil
		}
	}
	return nil, errors.New("auth: no method configured and no token in the environment")
}

// tokenAuth uses a fixed token.
type tokenAuth struct {
	token string
	what  string
}

func (a tokenAuth) name() string     { return a.what }
func (a tokenAuth) canRelogin() bool { return false }
func (a tokenAuth) creates() bool    { return false }
func (a tokenAuth) login(ctx context.Context, c *api.Client, r *Redactor) (*api.Secret, error) {
	r.Add(a.token)
	return lookupToken(ctx, c, a.token)
}

// lookupToken checks a token and returns it as a login answer, renewable if
// the token is.
func lookupToken(ctx context.Context, c *api.Client, token string) (*api.Secret, error) {
	c.SetToken(token)
	sec, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		if isForbidden(err) {
			return nil, fmt.Errorf("%w: token refused", ErrTokenExpired)
		}
		return nil, err
	}
	renewable, _ := sec.TokenIsRenewable()
	ttl, _ := sec.TokenTTL()
	accessor, _ := sec.TokenAccessor()
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   token,
		Accessor:      accessor,
		Renewable:     renewable,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// tokenFileAuth reads a token from a file at each login.
type tokenFileAuth struct{ file string }

func (a tokenFileAuth) name() string     { return "token file " + a.file }
func (a tokenFileAuth) canRelogin() bool { return true }
func (a tokenFileAuth) creates() bool    { return false }
func (a tokenFileAuth) login(ctx context.Context, c *api.Client, r *Redactor) (*api.Secret, error) {
	b, err := os.ReadFile(a.file)
	if err != nil {
		return nil, err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return nil, fmt.Errorf("%s: empty", a.file)
	}
	r.Add(t)
	return lookupToken(ctx, c, t)
}

// kubernetesAuth logs in with a ServiceAccount token.
type kubernetesAuth KubernetesAuth

func (a kubernetesAuth) name() string {
	return "kubernetes role " + a.Role + " at auth/" + a.Mount
}
func (a kubernetesAuth) canRelogin() bool { return true }
func (a kubernetesAuth) creates() bool    { return true }
func (a kubernetesAuth) login(ctx context.Context, c *api.Client, r *Redactor) (*api.Secret, error) {
	b, err := os.ReadFile(a.JWTFile)
	if err != nil {
		return nil, err
	}
	jwt := strings.TrimSpace(string(b))
	r.Add(jwt)
	return c.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", map[string]any{"role": a.Role, "jwt": jwt})
}

// appRoleAuth logs in with a role ID and a secret ID.
type appRoleAuth AppRoleAuth

func (a appRoleAuth) name() string     { return "approle at auth/" + a.Mount }
func (a appRoleAuth) canRelogin() bool { return true }
func (a appRoleAuth) creates() bool    { return true }
func (a appRoleAuth) login(ctx context.Context, c *api.Client, r *Redactor) (*api.Secret, error) {
	body := map[string]any{"role_id": a.RoleID}
	if a.SecretIDFile != "" {
		b, err := os.ReadFile(a.SecretIDFile)
		if err != nil {
			return nil, err
		}
		sid := strings.TrimSpace(string(b))
		r.Add(sid)
		body["secret_id"] = sid
	}
	return c.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", body)
}
