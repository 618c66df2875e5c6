package reconcile_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestOneVaultLoginForAllRuns: the reconciler logs in to Vault once for
// all its runs and inputs checks, where each run used to log in for
// itself (with the kubernetes or approle method, a Vault token and a
// TokenReview per run). A proxy in front of a real Vault counts the
// logins (a token's lookup-self, deliver's login with VAULT_TOKEN) while
// three apps that read Vault are delivered and their inputs checked
// several times.
func TestOneVaultLoginForAllRuns(t *testing.T) {
	ns := env.Namespace(t) // first: skipped with -short before Vault starts
	t.Parallel()
	ctx := context.Background()
	tv, vc := testenv.NewVault(t)
	kvPut(t, vc, "web", "CANARY-vs-1-4be1d0")
	target, err := url.Parse(tv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var logins, checked atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/v1/auth/token/lookup-self":
			logins.Add(1)
		case "/v1/secret/metadata/web":
			checked.Add(1) // an inputs check reading the version
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)

	apps := []string{"a", "b", "c"}
	files := map[string]string{}
	var decl []string
	for _, app := range apps {
		decl = append(decl, "- {name: "+app+", namespace: $NS, manifests: {path: "+app+"}}")
		files[app+"/secret.yaml"] = "apiVersion: v1\nkind: Secret\nmetadata: {name: " + app + "}\nstringData: {password: \"ref+vault://secret/web#/password\"}\n"
	}
	files["deliver.yaml"] = deliverYAML(ns, decl...)
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour
	opts.InputsInterval = 200 * time.Millisecond
	opts.Pipeline.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": srv.URL, "VAULT_TOKEN": tv.Token}[k]
	}
	r, _ := start(t, opts)
	waitFor(t, 60*time.Second, "the apps delivered and their inputs checked", func() bool {
		for _, app := range apps {
			if a := appStatus(r, app); a.Revision != repo.Head() || a.Result != apply.ResultSucceeded {
				return false
			}
		}
		return checked.Load() >= 3*int64(len(apps))
	})
	for _, app := range apps {
		if _, err := env.Client().CoreV1().Secrets(ns).Get(ctx, app, metav1.GetOptions{}); err != nil {
			t.Errorf("secret %s: %v", app, err)
		}
	}
	if n := logins.Load(); n != 1 {
		t.Errorf("%d Vault logins for %d runs and %d version reads, want 1", n, len(apps), checked.Load())
	}
}
