package ui_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/ui"
)

// authFixture is a namespace holding the inventory Secrets of three apps
// and ServiceAccounts with different rights on them.
type authFixture struct {
	ns   string
	apps map[string]ui.AppRef // by app name
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	ns := env.Namespace(t)
	f := &authFixture{ns: ns, apps: map[string]ui.AppRef{}}
	for _, app := range []string{"web", "api", "db"} {
		inv := "deliver-inventory-" + app
		_, err := env.Client().CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: inv},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f.apps[app] = ui.AppRef{Environment: "prod", Name: app, InventoryNamespace: ns, InventoryName: inv}
	}
	return f
}

// user creates the ServiceAccount name, binds it to a Role with rules (none:
// no Role), waits until the authorizer knows, and returns a token for it.
func (f *authFixture) user(t *testing.T, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	ctx := context.Background()
	cs := env.Client()
	env.ServiceAccount(t, f.ns, name)
	if len(rules) > 0 {
		if _, err := cs.RbacV1().Roles(f.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: f.ns}},
		}
		if _, err := cs.RbacV1().RoleBindings(f.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// RBAC reaches the authorizer through an informer: wait until it
		// allows the first rule's first verb, so the guard under test
		// never caches an answer from before the binding.
		r := rules[0]
		attrs := authorizationv1.ResourceAttributes{Namespace: f.ns, Verb: r.Verbs[0], Resource: r.Resources[0]}
		if len(r.ResourceNames) > 0 {
			attrs.Name = r.ResourceNames[0]
		}
		waitAuthorized(t, cs, "system:serviceaccount:"+f.ns+":"+name, attrs)
	}
	tr, err := cs.CoreV1().ServiceAccounts(f.ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create token for %s: %v", name, err)
	}
	return tr.Status.Token
}

func waitAuthorized(t *testing.T, cs kubernetes.Interface, user string, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &attrs,
		}}
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		return err == nil && res.Status.Allowed, err
	})
	if err != nil {
		t.Fatalf("%s was never allowed %s %s/%s: %v", user, attrs.Verb, attrs.Resource, attrs.Name, err)
	}
}

func getSecrets(names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: names}
}

// countingClient returns a clientset on the admin config whose requests
// are counted by path suffix.
func countingClient(t *testing.T) (kubernetes.Interface, func(suffix string) int64) {
	t.Helper()
	var tokenReviews, accessReviews atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/tokenreviews"):
				tokenReviews.Add(1)
			case strings.HasSuffix(r.URL.Path, "/subjectaccessreviews"):
				accessReviews.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	cfg.QPS, cfg.Burst = -1, 0 // the test counts requests; client-side throttling would only slow it
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, func(suffix string) int64 {
		if suffix == "tokenreviews" {
			return tokenReviews.Load()
		}
		return accessReviews.Load()
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func identify(t *testing.T, g ui.Guard, token string) (ui.User, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return g.Identify(r)
}

func TestTokenGuardShowsOnlyReadableApps(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	tokens := map[string]string{
		"web-reader": f.user(t, "web-reader", getSecrets("deliver-inventory-web")),
		"ns-reader":  f.user(t, "ns-reader", getSecrets()),
		"nobody":     f.user(t, "nobody"),
		// list and watch on every Secret, but not get: the view asks for
		// get, the verb that shows an inventory's content.
		"lister": f.user(t, "lister", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"}}),
	}
	g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: env.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user string
		want []string
	}{
		{"web-reader", []string{"web"}},
		{"ns-reader", []string{"api", "db", "web"}},
		{"nobody", nil},
		{"lister", nil},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			u, err := identify(t, g, tokens[tt.user])
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			if want := "system:serviceaccount:" + f.ns + ":" + tt.user; u.Name != want {
				t.Fatalf("Identify name = %q, want %q", u.Name, want)
			}
			if !slices.Contains(u.Groups, "system:serviceaccounts") {
				t.Errorf("Identify groups = %v, want the API server's, with system:serviceaccounts", u.Groups)
			}
			var got []string
			for _, name := range []string{"api", "db", "web"} {
				ok, err := g.MayRead(context.Background(), u, f.apps[name])
				if err != nil {
					t.Fatalf("MayRead %s: %v", name, err)
				}
				if ok {
					got = append(got, name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s sees %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

func TestTokenGuardRejectsBadTokens(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	good := f.user(t, "reader", getSecrets())
	g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: env.Client()})
	if err != nil {
		t.Fatal(err)
	}
	// A token of the right shape, signed by no key the API server knows.
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + parts[1] + ".c2lnbmF0dXJl"
	// A token for another audience than the API server's.
	other, err := env.Client().CoreV1().ServiceAccounts(f.ns).CreateToken(context.Background(), "reader",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"none", "", ui.ErrNoToken},
		{"garbage", "not-a-token", ui.ErrTokenRejected},
		{"forged signature", forged, ui.ErrTokenRejected},
		{"other audience", other.Status.Token, ui.ErrTokenRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := identify(t, g, tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Identify = %+v, %v; want %v", u, err, tt.want)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("the error shows the token")
			}
		})
	}
	// The good token still works through the same guard, so the rejections
	// above were about the tokens, not the guard.
	if _, err := identify(t, g, good); err != nil {
		t.Fatalf("Identify with a valid token: %v", err)
	}
	// A user the guard did not make (the local user) is trusted with
	// nothing.
	if ok, err := g.MayRead(context.Background(), ui.User{}, f.apps["web"]); ok || err != nil {
		t.Errorf("MayRead for the nameless user = %v, %v; want false, nil", ok, err)
	}
}

func TestTokenGuardActionsNeedPatch(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	patcher := f.user(t, "patcher", rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"patch", "get"},
		ResourceNames: []string{"deliver-inventory-web"},
	})
	reader := f.user(t, "reader", getSecrets())
	updater := f.user(t, "updater", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"update", "get"}})
	g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: env.Client()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user  string
		token string
		app   string
		want  bool
	}{
		{"patcher", patcher, "web", true},
		{"patcher", patcher, "api", false}, // patch on web's inventory only
		{"reader", reader, "web", false},
		{"updater", updater, "web", false}, // update is not patch
	}
	for _, tt := range tests {
		for _, a := range []ui.Action{ui.ActionReconcile, ui.ActionPin, ui.ActionUnpin, ui.ActionSuspend, ui.ActionResume} {
			t.Run(fmt.Sprintf("%s/%s/%s", tt.user, tt.app, a), func(t *testing.T) {
				u, err := identify(t, g, tt.token)
				if err != nil {
					t.Fatal(err)
				}
				ok, err := g.MayAct(context.Background(), u, f.apps[tt.app], a)
				if err != nil || ok != tt.want {
					t.Fatalf("MayAct = %v, %v; want %v", ok, err, tt.want)
				}
			})
		}
	}
	u, err := identify(t, g, patcher)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := g.MayAct(context.Background(), u, f.apps["web"], ui.Action(0)); ok || err == nil {
		t.Errorf("MayAct for the zero Action = %v, %v; want false and an error", ok, err)
	}
}

// The page of 1,000 apps asks the API server once per namespace for a user
// who may read every Secret there, once per app for a user who may read
// only some, and not at all on the next load.
func TestTokenGuardBatchesAndCachesReviews(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	nsReader := f.user(t, "ns-reader", getSecrets())
	webReader := f.user(t, "web-reader", getSecrets("deliver-inventory-web"))
	apps := make([]ui.AppRef, 1000)
	for i := range apps {
		apps[i] = ui.AppRef{Environment: "prod", Name: fmt.Sprintf("app-%d", i), InventoryNamespace: f.ns, InventoryName: fmt.Sprintf("deliver-inventory-app-%d", i)}
	}
	apps[500] = f.apps["web"]

	tests := []struct {
		name        string
		token       string
		wantVisible int
		wantSARs    int64
	}{
		{"namespace-wide reader", nsReader, 1000, 1},
		{"reader of one inventory", webReader, 1, 1 + 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, count := countingClient(t)
			g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: cs})
			if err != nil {
				t.Fatal(err)
			}
			for load := 1; load <= 2; load++ {
				u, err := identify(t, g, tt.token)
				if err != nil {
					t.Fatal(err)
				}
				visible := 0
				for _, app := range apps {
					ok, err := g.MayRead(context.Background(), u, app)
					if err != nil {
						t.Fatal(err)
					}
					if ok {
						visible++
					}
				}
				if visible != tt.wantVisible {
					t.Errorf("load %d: %d apps visible, want %d", load, visible, tt.wantVisible)
				}
				if n := count("tokenreviews"); n != 1 {
					t.Errorf("load %d: %d TokenReviews sent, want 1 in all", load, n)
				}
				if n := count("subjectaccessreviews"); n != tt.wantSARs {
					t.Errorf("load %d: %d SubjectAccessReviews sent, want %d in all", load, n, tt.wantSARs)
				}
			}
		})
	}
}

func TestTokenGuardLoginSetsCookie(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	token := f.user(t, "reader", getSecrets())
	g, err := ui.NewTokenGuard(ui.TokenGuardOptions{Client: env.Client()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(ui.LoginPath, g.LoginHandler())
	mux.Handle(ui.LogoutPath, g.LogoutHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u, err := g.Identify(r)
		if err != nil {
			http.Error(w, "unauthorised", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "hello "+u.Name)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	post := func(t *testing.T, token, origin string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+ui.LoginPath, strings.NewReader(url.Values{"token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}

	t.Run("secure over TLS", func(t *testing.T) {
		tlsSrv := httptest.NewTLSServer(mux)
		defer tlsSrv.Close()
		client := tlsSrv.Client()
		client.CheckRedirect = noRedirect.CheckRedirect
		req, err := http.NewRequest(http.MethodPost, tlsSrv.URL+ui.LoginPath, strings.NewReader(url.Values{"token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var c *http.Cookie
		for _, rc := range res.Cookies() {
			if rc.Name == ui.CookieName {
				c = rc
			}
		}
		if res.StatusCode != http.StatusSeeOther || c == nil || !c.Secure || !c.HttpOnly {
			t.Errorf("over TLS: status %d, cookie %+v; want 303 and a Secure, HttpOnly cookie", res.StatusCode, c)
		}
	})
	t.Run("valid token", func(t *testing.T) {
		res := post(t, token, srv.URL)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", res.StatusCode)
		}
		var c *http.Cookie
		for _, rc := range res.Cookies() {
			if rc.Name == ui.CookieName {
				c = rc
			}
		}
		if c == nil {
			t.Fatalf("no %s cookie set", ui.CookieName)
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
			t.Errorf("cookie HttpOnly=%v SameSite=%v Path=%q Secure=%v; want HttpOnly, Strict, /, not Secure over plain HTTP", c.HttpOnly, c.SameSite, c.Path, c.Secure)
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.AddCookie(c)
		got, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer got.Body.Close()
		if got.StatusCode != http.StatusOK {
			t.Fatalf("with the cookie: status %d, want 200", got.StatusCode)
		}
	})
	for _, tt := range []struct {
		name, token, origin string
		want                int
	}{
		{"invalid token", "not-a-token", "", http.StatusUnauthorized},
		{"empty", "", "", http.StatusUnauthorized},
		{"from another site", token, "http://evil.example", http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, tt.token, tt.origin)
			if res.StatusCode != tt.want {
				t.Errorf("status %d, want %d", res.StatusCode, tt.want)
			}
			for _, c := range res.Cookies() {
				if c.Name == ui.CookieName && c.Value != "" {
					t.Errorf("a refused sign-in set the cookie")
				}
			}
		})
	}
	// A browser that sends no Origin still says where the form was:
	// Sec-Fetch-Site (what net/http's CrossOriginProtection reads first).
	for site, want := range map[string]int{"cross-site": http.StatusForbidden, "same-site": http.StatusForbidden, "same-origin": http.StatusSeeOther} {
		t.Run("Sec-Fetch-Site "+site, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+ui.LoginPath, strings.NewReader(url.Values{"token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", site)
			res, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("status %d, want %d", res.StatusCode, want)
			}
		})
	}
	t.Run("logout", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+ui.LogoutPath, nil)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		cleared := false
		for _, c := range res.Cookies() {
			cleared = cleared || (c.Name == ui.CookieName && c.Value == "" && c.MaxAge < 0)
		}
		if res.StatusCode != http.StatusSeeOther || !cleared {
			t.Errorf("logout: status %d, cookie cleared %v; want 303 and cleared", res.StatusCode, cleared)
		}
	})
}

var _ ui.LoginGuard = (*ui.TokenGuard)(nil)
