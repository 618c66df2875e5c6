package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/deliverhq/deliver/pkg/secrets"
)

func TestReviewCacheExpiresAndEvicts(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	c := newReviewCache[bool](10*time.Second, 2, func() time.Time { return now })
	c.put("a", true)
	c.put("b", false)
	if v, ok := c.get("a"); !ok || !v {
		t.Fatalf("get a = %v, %v; want true, true", v, ok)
	}
	if v, ok := c.get("b"); !ok || v {
		t.Fatalf("get b = %v, %v; want false (a cached refusal), true", v, ok)
	}
	c.get("a") // a is now the most recently used: c evicts b
	c.put("c", true)
	if _, ok := c.get("b"); ok {
		t.Errorf("b survived a put beyond the bound; it was the least recently used")
	}
	if _, ok := c.get("a"); !ok {
		t.Errorf("a was evicted though used more recently than b")
	}
	if n := c.len(); n != 2 {
		t.Errorf("len = %d, want the bound 2", n)
	}
	now = now.Add(10*time.Second + time.Nanosecond)
	if _, ok := c.get("a"); ok {
		t.Errorf("a still served after its TTL")
	}
	if n := c.len(); n != 0 {
		t.Errorf("len = %d after the TTL, want 0", n)
	}

	off := newReviewCache[bool](-1, 10, time.Now)
	off.put("a", true)
	if _, ok := off.get("a"); ok {
		t.Errorf("a cache with a negative TTL served an answer")
	}
}

func TestTokenOf(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxTokenBytes+1)
	tests := []struct {
		name    string
		header  string
		cookie  string
		want    string
		wantErr error // nil: any error when want is ""
	}{
		{name: "bearer header", header: "Bearer abc.def", want: "abc.def"},
		{name: "scheme in any case", header: "bearer abc", want: "abc"},
		{name: "header wins over cookie", header: "Bearer fromheader", cookie: "fromcookie", want: "fromheader"},
		{name: "cookie", cookie: "fromcookie", want: "fromcookie"},
		{name: "nothing", wantErr: ErrNoToken},
		{name: "basic auth", header: "Basic dXNlcjpwYXNz"},
		{name: "empty bearer", header: "Bearer  "},
		{name: "too long", header: "Bearer " + long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: CookieName, Value: tt.cookie})
			}
			got, err := tokenOf(r)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("tokenOf = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("tokenOf = %q, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("tokenOf error = %v, want %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "dXNlcjpwYXNz") || strings.Contains(err.Error(), "xxxx") {
				t.Errorf("the error shows the credential: %v", err)
			}
		})
	}
}

func TestNewTokenGuardNeedsClient(t *testing.T) {
	t.Parallel()
	if _, err := NewTokenGuard(TokenGuardOptions{}); err == nil {
		t.Fatal("NewTokenGuard without a client: no error")
	}
}

// TestTokenGuardDefaults: the review cache docs/ui-auth.md documents, 10 s
// and 10,000 entries, for tokens and for access reviews alike.
func TestTokenGuardDefaults(t *testing.T) {
	t.Parallel()
	g, err := NewTokenGuard(TokenGuardOptions{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if g.tokens.ttl != 10*time.Second || g.tokens.max != 10000 || g.reviews.ttl != 10*time.Second || g.reviews.max != 10000 {
		t.Errorf("caches: tokens %v/%d, reviews %v/%d; want 10s/10000", g.tokens.ttl, g.tokens.max, g.reviews.ttl, g.reviews.max)
	}
}

// nullSource is a Source without apps.
type nullSource struct{}

func (nullSource) Apps(context.Context) ([]AppRow, error) { return nil, nil }
func (nullSource) App(context.Context, AppRef, *secrets.Redactor) (*AppDetail, error) {
	return nil, ErrNotFound
}

// TestViewDefaults: the defaults docs/ui.md documents: the pages refresh
// every 2 s, and an app's page shows the last 20 lines of a hook Pod's
// log and its last 20 Events. NewCluster does not touch the cluster.
func TestViewDefaults(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Guard: LocalGuard{}, Source: nullSource{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.PollInterval != 2*time.Second {
		t.Errorf("PollInterval = %v, want 2s", s.opts.PollInterval)
	}
	c, err := NewCluster(ClusterOptions{Config: &rest.Config{Host: "https://cluster.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.LogLines != 20 || c.opts.Events != 20 || c.opts.InventoryNamespace != "deliver-system" {
		t.Errorf("LogLines %d, Events %d, InventoryNamespace %q; want 20, 20, deliver-system", c.opts.LogLines, c.opts.Events, c.opts.InventoryNamespace)
	}
}

// TestTokensCachedByDigest: the review cache is keyed by the token's
// SHA-256: the token itself is in no key, and a second request with it is
// answered from the cache.
func TestTokensCachedByDigest(t *testing.T) {
	t.Parallel()
	const token = "eyJhbGciOi.token-canary-4f1d.sig"
	kc := fake.NewClientset()
	reviews := 0
	kc.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: tr.Spec.Token == token, User: authenticationv1.UserInfo{Username: "alice"}}
		return true, tr, nil
	})
	g, err := NewTokenGuard(TokenGuardOptions{Client: kc})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if u, err := g.authenticate(context.Background(), token); err != nil || u.Name != "alice" {
			t.Fatalf("authenticate: %+v, %v", u, err)
		}
	}
	if reviews != 1 {
		t.Errorf("%d TokenReviews for two requests with one token, want 1", reviews)
	}
	sum := sha256.Sum256([]byte(token))
	keys := g.tokens.lru.Keys()
	if len(keys) != 1 || keys[0] != "token\x00"+hex.EncodeToString(sum[:]) {
		t.Errorf("cache keys %q, want the token's SHA-256 alone", keys)
	}
	for _, k := range keys {
		if strings.Contains(k.(string), "token-canary") {
			t.Errorf("the token is in a cache key: %q", k)
		}
	}
}
