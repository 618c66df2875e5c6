package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/vault/api"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// suffix returns a random suffix for mount and role names on the shared
// server.
func suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newVault connects a Vault for a test and closes it at the end.
func newVault(t *testing.T, opts VaultOptions) *Vault {
	t.Helper()
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1
	}
	v, err := NewVault(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// kvFixture mounts a KV v1 engine, writes secrets in both versions and a
// read-only policy for them, and returns the names.
type kvFixture struct {
	kv1, app, policy string
}

func setupKV(t *testing.T, c *api.Client) kvFixture {
	t.Helper()
	f := kvFixture{kv1: "kv1-" + suffix(), app: "app-" + suffix(), policy: "read-" + suffix()}
	if err := c.Sys().Mount(f.kv1, &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	vaultWrite(t, c, "secret/data/"+f.app, map[string]any{"data": map[string]any{
		"db":    map[string]any{"password": "hunter2-v2", "port": 5432},
		"token": "hunter2-token",
	}})
	vaultWrite(t, c, f.kv1+"/"+f.app, map[string]any{"key": "hunter2-v1", "user": "app"})
	err := c.Sys().PutPolicy(f.policy, fmt.Sprintf(`
path "secret/data/%[1]s" { capabilities = ["read"] }
path "%[2]s/%[1]s" { capabilities = ["read"] }
`, f.app, f.kv1))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// countingTransport counts requests by method and path.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[req.Method+" "+req.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *countingTransport) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func TestVaultRefs(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	f := setupKV(t, root)
	tok := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{f.policy}, "ttl": "1h"}).Auth.ClientToken

	red := NewRedactor(RedactorOptions{})
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}, Redactor: red})
	r := NewResolver(ResolverOptions{Vault: v, Redactor: red})
	ctx := context.Background()
	values := map[string]any{
		"v2api":    "ref+vault://secret/data/" + f.app + "#/db/password",
		"v2cli":    "ref+vault://secret/" + f.app + "#/token",
		"v1":       "ref+vault://" + f.kv1 + "/" + f.app + "#/key",
		"port":     "ref+vault://secret/data/" + f.app + "#/db/port",
		"whole":    "ref+vault://" + f.kv1 + "/" + f.app,
		"embedded": "user=ref+vault://" + f.kv1 + "/" + f.app + "#/user+;pass=ref+vault://" + f.kv1 + "/" + f.app + "#/key+;",
	}
	got, err := r.ResolveValues(ctx, "values.yaml", values)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"v2api":    "hunter2-v2",
		"v2cli":    "hunter2-token",
		"v1":       "hunter2-v1",
		"port":     int64(5432),
		"whole":    map[string]any{"key": "hunter2-v1", "user": "app"},
		"embedded": "user=app;pass=hunter2-v1;",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, s := range []string{"hunter2-v2", "hunter2-token", "hunter2-v1", tok} {
		if red.Redact(s) != Mask {
			t.Errorf("%q not registered", s)
		}
	}

	other := "other-" + suffix()
	vaultWrite(t, root, "secret/data/"+other, map[string]any{"data": map[string]any{"k": "hunter2-other"}})
	errTests := []struct {
		name string
		ref  string
		is   error
		msg  string
	}{
		{"missing path v2", "ref+vault://secret/data/nope-" + f.app + "#/k", ErrPermissionDenied, ""},
		{"missing key", "ref+vault://secret/data/" + f.app + "#/db/nope", ErrNotFound, "key db/nope: not found"},
		{"permission denied", "ref+vault://secret/data/" + other + "#/k", ErrPermissionDenied, "ref+vault://secret/data/" + other + "#/k: permission denied"},
		{"unknown mount", "ref+vault://nomount-" + f.app + "/x#/k", nil, "ref+vault://nomount-" + f.app + "/x#/k: find mount:"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Resolve(ctx, tt.ref)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), tt.ref+": ") {
				t.Errorf("error %q should start with the ref and contain %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), tok) {
				t.Errorf("error leaks: %q", err)
			}
		})
	}

	// The root token can see a missing path: not found.
	rv := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tv.Token}})
	_, err = NewResolver(ResolverOptions{Vault: rv}).Resolve(ctx, "ref+vault://secret/data/nope-"+f.app+"#/k")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing path with root: %v, want ErrNotFound", err)
	}
	_, err = NewResolver(ResolverOptions{Vault: rv}).Resolve(ctx, "ref+vault://"+f.kv1+"/nope#/k")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing path kv1: %v, want ErrNotFound", err)
	}
}

func TestVaultReadOncePerRun(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	f := setupKV(t, root)
	ct := &countingTransport{n: map[string]int{}}
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tv.Token}, HTTPClient: &http.Client{Transport: ct}})
	var objs []*unstructured.Unstructured
	for i := range 50 {
		objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": fmt.Sprintf("s%d", i), "namespace": "app"},
			"stringData": map[string]any{
				"password": "ref+vault://secret/data/" + f.app + "#/db/password",
				"token":    "ref+vault://secret/" + f.app + "#/token",
				"v1":       "ref+vault://" + f.kv1 + "/" + f.app + "#/key",
			},
		}})
	}
	run := func() {
		r := NewResolver(ResolverOptions{Vault: v, Concurrency: 50})
		if err := r.ResolveObjects(context.Background(), objs); err != nil {
			t.Fatal(err)
		}
	}
	run()
	for _, o := range objs {
		if o.Object["stringData"].(map[string]any)["password"] != "hunter2-v2" {
			t.Fatalf("%s not resolved", o.GetName())
		}
	}
	// secret/data/app and secret/app are the same secret but two refs
	// paths; each is read once.
	if n := ct.count("GET /v1/secret/data/" + f.app); n != 2 {
		t.Errorf("secret/data/%s read %d times, want 2 (once per ref path)", f.app, n)
	}
	if n := ct.count("GET /v1/" + f.kv1 + "/" + f.app); n != 1 {
		t.Errorf("kv1 path read %d times, want 1", n)
	}
	// A new run reads again: nothing is cached across runs by default.
	for i := range objs {
		objs[i].Object["stringData"] = map[string]any{"v1": "ref+vault://" + f.kv1 + "/" + f.app + "#/key"}
	}
	run()
	if n := ct.count("GET /v1/" + f.kv1 + "/" + f.app); n != 2 {
		t.Errorf("kv1 path read %d times after two runs, want 2", n)
	}

	// With a CacheTTL, a second run within the TTL reads nothing.
	ct2 := &countingTransport{n: map[string]int{}}
	cachedV := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tv.Token}, HTTPClient: &http.Client{Transport: ct2}, CacheTTL: time.Minute})
	for range 2 {
		if _, err := NewResolver(ResolverOptions{Vault: cachedV}).Resolve(context.Background(), "ref+vault://"+f.kv1+"/"+f.app+"#/key"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ct2.count("GET /v1/" + f.kv1 + "/" + f.app); n != 1 {
		t.Errorf("with CacheTTL, kv1 path read %d times in two runs, want 1", n)
	}
}

func TestVaultTokenLifecycle(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	f := setupKV(t, root)
	ref := "ref+vault://" + f.kv1 + "/" + f.app + "#/key"
	read := func(v *Vault) error {
		_, err := NewResolver(ResolverOptions{Vault: v}).Resolve(context.Background(), ref)
		return err
	}

	t.Run("expired token", func(t *testing.T) {
		t.Parallel()
		tok := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{f.policy}, "ttl": "2s", "renewable": false}).Auth.ClientToken
		v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}})
		if err := read(v); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		err := read(v)
		if !errors.Is(err, ErrTokenExpired) || !strings.HasPrefix(err.Error(), ref+": ") {
			t.Errorf("after expiry: %v, want ErrTokenExpired naming the ref", err)
		}
		// A new client with the expired token fails at login.
		if _, err := NewVault(context.Background(), VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}}); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("NewVault(expired) = %v", err)
		}
	})

	t.Run("renewed token", func(t *testing.T) {
		t.Parallel()
		tok := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{f.policy}, "ttl": "2s", "explicit_max_ttl": "1h", "renewable": true}).Auth.ClientToken
		v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}})
		time.Sleep(4 * time.Second)
		if err := read(v); err != nil {
			t.Errorf("renewable token not renewed: %v", err)
		}
	})

	t.Run("approle relogin", func(t *testing.T) {
		t.Parallel()
		ar := newAppRole(t, root, map[string]any{"token_policies": []string{f.policy}, "token_ttl": "2s", "token_max_ttl": "2s"})
		red := NewRedactor(RedactorOptions{})
		v := newVault(t, VaultOptions{Address: tv.Addr, Redactor: red, Auth: VaultAuth{AppRole: ar.AppRoleAuth}})
		first := v.Client().Token()
		if err := read(v); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := read(v); err != nil {
			t.Errorf("after the token's max TTL: %v", err)
		}
		if v.Client().Token() == first {
			t.Error("no new login")
		}
		if red.Redact(ar.secretID) != Mask || red.Redact(first) != Mask {
			t.Error("credentials not registered with the redactor")
		}
		// A wrong secret ID fails at login, naming the method.
		os.WriteFile(ar.SecretIDFile, []byte("wrong"), 0o600)
		_, err := NewVault(context.Background(), VaultOptions{Address: tv.Addr, MaxRetries: -1, Auth: VaultAuth{AppRole: ar.AppRoleAuth}})
		if err == nil || !strings.Contains(err.Error(), "login (approle at auth/"+ar.Mount+")") {
			t.Errorf("wrong secret id: %v", err)
		}
	})
}

func TestVaultKubernetesAuth(t *testing.T) {
	tv := startVault(t)
	if env == nil {
		t.Skip("no control plane")
	}
	root := rootClient(t, tv)
	f := setupKV(t, root)
	ctx := context.Background()
	ns := env.Namespace(t)
	cs := env.Client()
	for _, sa := range []string{"vault-reviewer", "app"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-reviewer-" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "vault-reviewer", Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	mount := "kubernetes-" + suffix()
	if err := root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	vaultWrite(t, root, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":    env.Config.Host,
		"kubernetes_ca_cert": string(env.Config.CAData),
		"token_reviewer_jwt": token("vault-reviewer"),
		"issuer":             "https://kubernetes.default.svc",
	})
	vaultWrite(t, root, "auth/"+mount+"/role/deliver", map[string]any{
		"bound_service_account_names":      []string{"app"},
		"bound_service_account_namespaces": []string{ns},
		"token_policies":                   []string{f.policy},
		"token_ttl":                        "1h",
	})
	jwt := filepath.Join(t.TempDir(), "token")
	os.WriteFile(jwt, []byte(token("app")), 0o600)
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Kubernetes: &KubernetesAuth{Role: "deliver", Mount: mount, JWTFile: jwt}}})
	got, err := NewResolver(ResolverOptions{Vault: v}).Resolve(ctx, "ref+vault://secret/data/"+f.app+"#/db/password")
	if err != nil || got != "hunter2-v2" {
		t.Errorf("Resolve = %v, %v", got, err)
	}

	// The reviewer's token is not bound to the role.
	os.WriteFile(jwt, []byte(token("vault-reviewer")), 0o600)
	_, err = NewVault(ctx, VaultOptions{Address: tv.Addr, MaxRetries: -1, Auth: VaultAuth{Kubernetes: &KubernetesAuth{Role: "deliver", Mount: mount, JWTFile: jwt}}})
	if err == nil || !strings.Contains(err.Error(), "login (kubernetes role deliver at auth/"+mount+")") {
		t.Errorf("unbound service account: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestVaultSealedAndUnreachable(t *testing.T) {
	tv := ownVault(t)
	root := rootClient(t, tv)
	ctx := context.Background()
	vaultWrite(t, root, "secret/data/app", map[string]any{"data": map[string]any{"k": "hunter2-sealed"}})
	envm := map[string]string{EnvVaultAddr: tv.Addr, EnvVaultToken: tv.Token}
	v := newVault(t, VaultOptions{Env: func(k string) string { return envm[k] }})
	r := NewResolver(ResolverOptions{Vault: v})
	if got, err := r.Resolve(ctx, "ref+vault://secret/data/app#/k"); err != nil || got != "hunter2-sealed" {
		t.Fatalf("Resolve before seal = %v, %v", got, err)
	}
	if err := root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	_, err := NewResolver(ResolverOptions{Vault: v}).Resolve(ctx, "ref+vault://secret/data/app#/k")
	if !errors.Is(err, ErrSealed) || !strings.HasPrefix(err.Error(), "ref+vault://secret/data/app#/k: ") {
		t.Errorf("sealed: %v", err)
	}
	tv.Stop()
	_, err = NewResolver(ResolverOptions{Vault: v}).Resolve(ctx, "ref+vault://secret/data/app#/k")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("stopped: %v", err)
	}
	_, err = NewVault(ctx, VaultOptions{Address: tv.Addr, MaxRetries: -1, Auth: VaultAuth{Token: "x"}})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tv.Addr) {
		t.Errorf("NewVault unreachable: %v", err)
	}
}

func TestSOPSVaultTransit(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	mountTransit(t, root)
	id := ageKey(t)
	enc := encrypt(t, FormatYAML, "password: hunter2-transit\n", encOpts{transit: tv})
	if !strings.Contains(string(enc), "hc_vault") {
		t.Fatalf("not encrypted with transit:\n%s", enc)
	}
	ctx := context.Background()
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tv.Token}})
	s, err := NewSOPS(SOPSOptions{Vault: v, AgeKeys: []string{id.String()}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.DecryptData(ctx, "secrets/transit.enc.yaml", enc, FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	if got["password"] != "hunter2-transit" {
		t.Errorf("password = %v", got["password"])
	}

	// A token without the transit policy: no key, permission denied.
	tok := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{"default"}, "ttl": "1h"}).Auth.ClientToken
	weak := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tok}})
	s2, _ := NewSOPS(SOPSOptions{Vault: weak})
	_, err = s2.Decrypt(ctx, "secrets/transit.enc.yaml", enc, FormatAuto)
	if !errors.Is(err, ErrNoKey) || !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "vault transit transit/keys/sops: permission denied") {
		t.Errorf("weak token: %v", err)
	}
	// No Vault configured.
	s3, _ := NewSOPS(SOPSOptions{})
	if _, err := s3.Decrypt(ctx, "secrets/transit.enc.yaml", enc, FormatAuto); err == nil || !strings.Contains(err.Error(), "no vault client configured") {
		t.Errorf("no vault: %v", err)
	}
}

// mountTransit enables transit at transit/ with a key "sops", once per
// server.
func mountTransit(t *testing.T, c *api.Client) {
	t.Helper()
	err := c.Sys().Mount("transit", &api.MountInput{Type: "transit"})
	if err != nil && !strings.Contains(err.Error(), "already in use") {
		t.Fatal(err)
	}
	vaultWrite(t, c, "transit/keys/sops", nil)
}

// TestVaultKVVersions: a Resolver knows the version of each KV v2 secret
// whose values it resolved refs with (none for KV v1), and reads a
// secret's current version from its metadata, never its data, once per
// Resolver however many goroutines ask; a new Resolver sees a new version.
// KVVersion fails for what has no usable version.
func TestVaultKVVersions(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	f := setupKV(t, root)
	ctx := context.Background()
	ct := &countingTransport{n: map[string]int{}}
	v := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{Token: tv.Token}, HTTPClient: &http.Client{Transport: ct}})

	r := NewResolver(ResolverOptions{Vault: v})
	for _, ref := range []string{
		"ref+vault://secret/data/" + f.app + "#/token",
		"ref+vault:///secret/" + f.app + "/#/token",
		"ref+vault://" + f.kv1 + "/" + f.app + "#/key",
	} {
		if _, err := r.Resolve(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	versions := []struct {
		path string
		want int
		ok   bool
	}{
		{"secret/data/" + f.app, 1, true},
		{"secret/" + f.app, 1, true},
		{"/secret/" + f.app + "/", 1, true},
		{f.kv1 + "/" + f.app, 0, false},
		{"secret/data/never-read", 0, false},
	}
	for _, tt := range versions {
		if n, ok := r.VaultVersion(tt.path); n != tt.want || ok != tt.ok {
			t.Errorf("VaultVersion(%s) = %d, %v; want %d, %v", tt.path, n, ok, tt.want, tt.ok)
		}
	}

	// A new version: the Resolver that read the values keeps their
	// version; the current one is read from the metadata, once.
	vaultWrite(t, root, "secret/data/"+f.app, map[string]any{"data": map[string]any{"token": "hunter2-token-2"}})
	dataReads := ct.count("GET /v1/secret/data/" + f.app)
	check := NewResolver(ResolverOptions{Vault: v})
	var wg sync.WaitGroup
	got := make([]int, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := check.CurrentVaultVersion(ctx, "secret/"+f.app)
			if err != nil {
				t.Error(err)
			}
			got[i] = n
		}()
	}
	wg.Wait()
	for i, n := range got {
		if n != 2 {
			t.Fatalf("CurrentVaultVersion #%d = %d, want 2", i, n)
		}
	}
	if n, ok := r.VaultVersion("secret/" + f.app); n != 1 || !ok {
		t.Errorf("VaultVersion after a put = %d, %v; want the version read, 1", n, ok)
	}
	if n := ct.count("GET /v1/secret/metadata/" + f.app); n != 1 {
		t.Errorf("metadata read %d times by 20 goroutines of one Resolver, want 1", n)
	}
	if n := ct.count("GET /v1/secret/data/" + f.app); n != dataReads {
		t.Errorf("the version check read the secret's data %d times, want none", n-dataReads)
	}
	vaultWrite(t, root, "secret/data/"+f.app, map[string]any{"data": map[string]any{"token": "hunter2-token-3"}})
	if n, err := check.CurrentVaultVersion(ctx, "/secret/"+f.app); err != nil || n != 2 {
		t.Errorf("same Resolver after another put: %d, %v; want 2, which it read first", n, err)
	}
	if n, err := NewResolver(ResolverOptions{Vault: v}).CurrentVaultVersion(ctx, "secret/data/"+f.app); err != nil || n != 3 {
		t.Errorf("new Resolver after another put: %d, %v; want 3", n, err)
	}

	// What has no version to compare.
	deleted := "deleted-" + suffix()
	vaultWrite(t, root, "secret/data/"+deleted, map[string]any{"data": map[string]any{"k": "v"}})
	if _, err := root.Logical().Delete("secret/data/" + deleted); err != nil {
		t.Fatal(err)
	}
	readOnly := newVault(t, VaultOptions{Address: tv.Addr, Auth: VaultAuth{
		Token: vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{f.policy}, "ttl": "1h"}).Auth.ClientToken,
	}})
	errTests := []struct {
		name string
		v    *Vault
		path string
		is   error
	}{
		{"kv v1", v, f.kv1 + "/" + f.app, ErrNotVersioned},
		{"missing", v, "secret/nope-" + f.app, ErrNotFound},
		{"current version deleted", v, "secret/" + deleted, ErrNotFound},
		{"no read on metadata", readOnly, "secret/" + f.app, ErrPermissionDenied},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.v.KVVersion(ctx, tt.path)
			if !errors.Is(err, tt.is) {
				t.Errorf("KVVersion(%s) = %d, %v; want %v", tt.path, n, err, tt.is)
			}
		})
	}
	// Reading them: not found, like a secret that never existed.
	for _, p := range []string{"secret/" + deleted, "secret/data/" + deleted, "secret/nope-" + f.app} {
		if _, _, err := v.ReadKVVersion(ctx, p); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadKVVersion(%s): %v, want %v", p, err, ErrNotFound)
		}
	}
}

// TestVaultCloseRevokesItsLogin: Close revokes the token an approle login
// created, which would otherwise stay valid until its TTL, and leaves a
// token the user gave valid.
func TestVaultCloseRevokesItsLogin(t *testing.T) {
	tv := startVault(t)
	root := rootClient(t, tv)
	f := setupKV(t, root)
	valid := func(tok string) bool {
		_, err := root.Logical().Write("auth/token/lookup", map[string]any{"token": tok})
		return err == nil
	}

	ar := newAppRole(t, root, map[string]any{"token_policies": []string{f.policy}, "token_ttl": "1h"})
	v, err := NewVault(context.Background(), VaultOptions{Address: tv.Addr, MaxRetries: -1, Auth: VaultAuth{AppRole: ar.AppRoleAuth}})
	if err != nil {
		t.Fatal(err)
	}
	tok := v.Client().Token()
	if !valid(tok) {
		t.Fatal("the login's token is not valid before Close")
	}
	v.Close()
	if valid(tok) {
		t.Error("the approle login's token is still valid after Close, want it revoked")
	}

	given := vaultWrite(t, root, "auth/token/create", map[string]any{"policies": []string{f.policy}, "ttl": "1h"}).Auth.ClientToken
	v, err = NewVault(context.Background(), VaultOptions{Address: tv.Addr, MaxRetries: -1, Auth: VaultAuth{Token: given}})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if !valid(given) {
		t.Error("a token the user gave was revoked by Close")
	}
}

// appRole is an AppRole login of a role made by newAppRole, with the
// secret ID its file holds.
type appRole struct {
	*AppRoleAuth
	secretID string
}

// newAppRole enables an approle auth method at a mount of its own, makes
// its role deliver with the settings role, and returns its login: the
// role ID and a new secret ID, in a file ending in a newline.
func newAppRole(t *testing.T, root *api.Client, role map[string]any) appRole {
	t.Helper()
	mount := "approle-" + suffix()
	if err := root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	vaultWrite(t, root, "auth/"+mount+"/role/deliver", role)
	rid, err := root.Logical().Read("auth/" + mount + "/role/deliver/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := vaultWrite(t, root, "auth/"+mount+"/role/deliver/secret-id", nil).Data["secret_id"].(string)
	sidFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(sidFile, []byte(sid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return appRole{&AppRoleAuth{RoleID: rid.Data["role_id"].(string), SecretIDFile: sidFile, Mount: mount}, sid}
}
