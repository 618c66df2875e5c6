package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"golang.org/x/sync/singleflight"
)

// The in-cluster view authenticates and authorises with the API server
// itself, so that whoever may read an app's inventory with kubectl may see
// the app in the view, and nobody else:
//
//   - Identify takes a bearer token from the Authorization header, or from
//     the cookie the login page sets, and asks the API server who it is
//     with a TokenReview (authentication.k8s.io/v1).
//   - MayRead asks with a SubjectAccessReview (authorization.k8s.io/v1)
//     whether that user may `get` the app's inventory Secret.
//   - MayAct asks whether the user may `patch` it, for every Action: a pin
//     is annotations on that Secret (what `kubectl annotate` needs), and
//     "reconcile now" changes when the app is delivered, which is what the
//     same people may decide. No other verb on any other object is granted
//     by the view.
//
// To keep a page of 1,000 apps from sending 1,000 reviews, MayRead and
// MayAct first ask once per namespace, without a resource name (a Role
// granting `get secrets` in the namespace answers it), and only when that
// is refused ask per inventory Secret (a Role with resourceNames). Answers
// are cached for TokenGuardOptions.CacheTTL.
const (
	// VerbRead is the verb on an app's inventory Secret that lets a user
	// see the app.
	VerbRead = "get"
	// VerbAct is the verb on an app's inventory Secret that lets a user
	// pin, unpin or reconcile the app through the view.
	VerbAct = "patch"
)

// LoginPath and LogoutPath are where a server mounts a LoginGuard's
// handlers.
const (
	LoginPath  = "/login"
	LogoutPath = "/logout"
)

// CookieName is the cookie in which the login page keeps the user's token.
// It is HttpOnly (no script reads it) and SameSite=Strict (no other site's
// page sends it, so a form elsewhere cannot make the browser act).
const CookieName = "deliver-token"

// maxTokenBytes bounds a token read from a request: service account tokens
// are about 1 KiB, OIDC ID tokens a few.
const maxTokenBytes = 16 << 10

// Errors of TokenGuard.Identify; every one means 401.
var (
	// ErrNoToken: the request carries neither an Authorization header nor
	// the login cookie.
	ErrNoToken = errors.New("no bearer token: sign in at " + LoginPath + " or send an Authorization: Bearer header")
	// ErrTokenRejected: the API server did not authenticate the token.
	ErrTokenRejected = errors.New("the API server did not accept the token")
)

// A LoginGuard is a Guard whose browser users sign in on a page of its
// own: a server mounts LoginHandler at LoginPath and LogoutHandler at
// LogoutPath, and links to LoginPath from its 401 page.
type LoginGuard interface {
	Guard
	// LoginHandler serves the sign-in form (GET) and takes it (POST).
	LoginHandler() http.Handler
	// LogoutHandler forgets the browser's token (POST).
	LogoutHandler() http.Handler
}

// TokenGuardOptions configure NewTokenGuard.
type TokenGuardOptions struct {
	// Client sends the TokenReviews and SubjectAccessReviews. Its identity
	// needs `create` on tokenreviews and subjectaccessreviews (what the
	// ClusterRole system:auth-delegator grants). Required.
	Client kubernetes.Interface
	// Reviewer, when set, returns the client that asks the
	// SubjectAccessReviews about app, and a name of its cluster (answers
	// are cached per cluster): the cluster holding app's inventory
	// Secret, when a view shows the apps of several clusters. Its
	// identity needs `create` on subjectaccessreviews there. Default:
	// Client, for every app.
	Reviewer func(ctx context.Context, app AppRef) (client kubernetes.Interface, cluster string, err error)
	// Audiences the token must be meant for; the API server checks them.
	// Default: none, which means the API server's own audiences.
	Audiences []string
	// CacheTTL is how long an answer of the API server is reused, allowed
	// or not: a revoked token or RoleBinding stops working within it.
	// Default 10s. Negative: nothing is cached.
	CacheTTL time.Duration
	// CacheSize bounds the number of answers kept (tokens and reviews
	// together); the least recently used goes first. Default 10,000.
	CacheSize int
}

// TokenGuard is the Guard of the reconciler's view: see VerbRead.
type TokenGuard struct {
	client    kubernetes.Interface
	reviewer  func(ctx context.Context, app AppRef) (kubernetes.Interface, string, error)
	audiences []string

	tokens  *reviewCache[tokenAnswer]
	reviews *reviewCache[bool]
	flight  singleflight.Group
	login   *template.Template
}

type tokenAnswer struct {
	user User
	ok   bool
}

// NewTokenGuard returns a TokenGuard.
func NewTokenGuard(opts TokenGuardOptions) (*TokenGuard, error) {
	if opts.Client == nil {
		return nil, errors.New("token guard: a Kubernetes client is required")
	}
	ttl := opts.CacheTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	size := opts.CacheSize
	if size <= 0 {
		size = 10000
	}
	return &TokenGuard{
		client:    opts.Client,
		reviewer:  opts.Reviewer,
		audiences: slices.Clone(opts.Audiences),
		tokens:    newReviewCache[tokenAnswer](ttl, size, time.Now),
		reviews:   newReviewCache[bool](ttl, size, time.Now),
		login:     template.Must(template.New("login").Parse(loginPage)),
	}, nil
}

// Identify authenticates r by its bearer token: the Authorization header
// first, else the login cookie.
func (g *TokenGuard) Identify(r *http.Request) (User, error) {
	token, err := tokenOf(r)
	if err != nil {
		return User{}, err
	}
	return g.authenticate(r.Context(), token)
}

// tokenOf returns the bearer token r carries.
func tokenOf(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", errors.New("the Authorization header is not a bearer token")
		}
		return checkToken(strings.TrimSpace(token))
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return checkToken(c.Value)
	}
	return "", ErrNoToken
}

func checkToken(token string) (string, error) {
	if len(token) > maxTokenBytes {
		return "", fmt.Errorf("the bearer token is longer than %d bytes", maxTokenBytes)
	}
	return token, nil
}

// authenticate asks the API server who token is, or the cache. The cache
// is keyed by the token's SHA-256, so the process keeps no token.
func (g *TokenGuard) authenticate(ctx context.Context, token string) (User, error) {
	sum := sha256.Sum256([]byte(token))
	key := "token\x00" + hex.EncodeToString(sum[:])
	ans, ok := g.tokens.get(key)
	if !ok {
		v, err, _ := g.flight.Do(key, func() (any, error) {
			tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: g.audiences}}
			res, err := g.client.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
			if err != nil {
				// The API server's error never holds the token; it is
				// wrapped as is for the operator's log.
				return tokenAnswer{}, fmt.Errorf("review token: %w", err)
			}
			a := tokenAnswer{ok: res.Status.Authenticated && res.Status.User.Username != ""}
			if a.ok {
				a.user = User{Name: res.Status.User.Username, Groups: slices.Clone(res.Status.User.Groups)}
			}
			g.tokens.put(key, a)
			return a, nil
		})
		if err != nil {
			return User{}, err
		}
		ans = v.(tokenAnswer)
	}
	if !ans.ok {
		return User{}, ErrTokenRejected
	}
	return User{Name: ans.user.Name, Groups: slices.Clone(ans.user.Groups)}, nil
}

// MayRead reports whether u may `get` app's inventory Secret.
func (g *TokenGuard) MayRead(ctx context.Context, u User, app AppRef) (bool, error) {
	return g.allowed(ctx, u, app, VerbRead)
}

// MayAct reports whether u may `patch` app's inventory Secret, which every
// Action requires.
func (g *TokenGuard) MayAct(ctx context.Context, u User, app AppRef, a Action) (bool, error) {
	switch a {
	case ActionReconcile, ActionPin, ActionUnpin, ActionSuspend, ActionResume:
		return g.allowed(ctx, u, app, VerbAct)
	}
	return false, fmt.Errorf("authorise %s on app %s/%s: unknown action", a, app.Environment, app.Name)
}

// allowed asks whether u may use verb on app's inventory Secret: first on
// every Secret of its namespace, then on that Secret alone.
func (g *TokenGuard) allowed(ctx context.Context, u User, app AppRef, verb string) (bool, error) {
	if u.Name == "" {
		// Only LocalGuard has a user without a name; a TokenGuard never
		// made it, so it is not trusted with anything.
		return false, nil
	}
	if app.InventoryNamespace == "" || app.InventoryName == "" {
		return false, fmt.Errorf("authorise %s on app %s/%s: the app names no inventory Secret", verb, app.Environment, app.Name)
	}
	client, cluster := kubernetes.Interface(g.client), ""
	if g.reviewer != nil {
		var err error
		if client, cluster, err = g.reviewer(ctx, app); err != nil {
			return false, fmt.Errorf("authorise %s on app %s/%s: %w", verb, app.Environment, app.Name, err)
		}
	}
	ok, err := g.review(ctx, client, cluster, u, verb, app.InventoryNamespace, "")
	if err != nil || ok {
		return ok, err
	}
	return g.review(ctx, client, cluster, u, verb, app.InventoryNamespace, app.InventoryName)
}

// review sends one SubjectAccessReview on secrets with client, to the
// cluster named cluster, or takes the cached answer; concurrent callers
// asking the same share one request.
func (g *TokenGuard) review(ctx context.Context, client kubernetes.Interface, cluster string, u User, verb, ns, name string) (bool, error) {
	groups := slices.Clone(u.Groups)
	slices.Sort(groups)
	key := strings.Join(append([]string{"sar", cluster, verb, ns, name, u.Name}, groups...), "\x00")
	if ok, hit := g.reviews.get(key); hit {
		return ok, nil
	}
	v, err, _ := g.flight.Do(key, func() (any, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   u.Name,
			Groups: u.Groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Group: "", Resource: "secrets", Name: name,
			},
		}}
		res, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			what := "secrets in " + ns
			if name != "" {
				what = "Secret/" + ns + "/" + name
			}
			return false, fmt.Errorf("review %s %s for %s: %w", verb, what, u.Name, err)
		}
		ok := res.Status.Allowed && !res.Status.Denied
		g.reviews.put(key, ok)
		return ok, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// LoginHandler serves the sign-in form on GET and, on POST, checks the
// pasted token with a TokenReview before it keeps it in the cookie, so a
// mistyped token is said at once rather than on the next page.
func (g *TokenGuard) LoginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			g.renderLogin(w, http.StatusOK, "")
		case http.MethodPost:
			if !sameOrigin(r) {
				http.Error(w, "sign-in refused: the form was sent from another site", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxTokenBytes+1024)
			if err := r.ParseForm(); err != nil {
				g.renderLogin(w, http.StatusBadRequest, "The form could not be read.")
				return
			}
			token := strings.TrimSpace(r.PostForm.Get("token"))
			if token == "" {
				g.renderLogin(w, http.StatusUnauthorized, "Paste a token.")
				return
			}
			if _, err := checkToken(token); err != nil {
				g.renderLogin(w, http.StatusUnauthorized, "The token is too long.")
				return
			}
			if _, err := g.authenticate(r.Context(), token); err != nil {
				msg := "The API server did not accept the token."
				if !errors.Is(err, ErrTokenRejected) {
					msg = "The token could not be checked; try again."
				}
				g.renderLogin(w, http.StatusUnauthorized, msg)
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: CookieName, Value: token, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
			})
			http.Redirect(w, r, "/", http.StatusSeeOther)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

// LogoutHandler removes the login cookie on POST (a link cannot sign a
// user out behind their back) and returns to the sign-in form.
func (g *TokenGuard) LogoutHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: CookieName, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
	})
}

func (g *TokenGuard) renderLogin(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The page holds nothing from the request: no token is ever echoed.
	_ = g.login.Execute(w, struct{ Error, Action string }{msg, LoginPath})
}

const loginPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deliver: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}
textarea{width:100%;font-family:monospace}.error{color:#b00020}</style></head>
<body><h1>deliver</h1>
<p>Paste a Kubernetes bearer token. You will see the apps whose inventory Secret it may <code>get</code>.</p>
<p>For a ServiceAccount: <code>kubectl create token NAME -n NAMESPACE</code></p>
{{with .Error}}<p class="error" id="login-error">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}" id="login">
<textarea name="token" rows="6" required autocomplete="off" spellcheck="false"></textarea>
<p><button type="submit">Sign in</button></p>
</form></body></html>
`
