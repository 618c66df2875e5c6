package reconcile_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// watchLog counts the watches the reconciler holds open, by the user they
// impersonate and the namespace they watch: a watch is open from its
// answer until the reconciler closes its body.
type watchLog struct {
	mu   sync.Mutex
	open map[[2]string]int
}

func (l *watchLog) wrap(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err != nil || req.URL.Query().Get("watch") != "true" {
				return resp, err
			}
			key := [2]string{req.Header.Get("Impersonate-User"), watchedNamespace(req.URL)}
			l.mu.Lock()
			l.open[key]++
			l.mu.Unlock()
			resp.Body = &closeCounted{ReadCloser: resp.Body, close: func() {
				l.mu.Lock()
				l.open[key]--
				l.mu.Unlock()
			}}
			return resp, nil
		})
	})
}

func (l *watchLog) count(user, ns string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[[2]string{user, ns}]
}

// watchedNamespace is the namespace of a watch's path, "" for all.
func watchedNamespace(u *url.URL) string {
	_, rest, ok := strings.Cut(u.Path, "/namespaces/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

type closeCounted struct {
	io.ReadCloser
	once  sync.Once
	close func()
}

func (c *closeCounted) Close() error {
	c.once.Do(c.close)
	return c.ReadCloser.Close()
}

// TestDriftWatchOfLeftNamespaceStops: an app delivered as a ServiceAccount
// is watched for drift as that ServiceAccount in its namespace; when the
// app leaves deliver.yaml (a namespace per pull request, say), that watch
// is closed, where it used to stay open for the life of the reconciler,
// one per namespace such an app ever had. The watch of another app's
// namespace stays.
func TestDriftWatchOfLeftNamespaceStops(t *testing.T) {
	preview, staying := env.Namespace(t), env.Namespace(t)
	t.Parallel()
	users := map[string]string{}
	for _, ns := range []string{preview, staying} {
		users[ns] = env.ServiceAccount(t, ns, "deployer")
		env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update", "delete"}, "configmaps")
	}
	app := func(name, ns string) string {
		return "- {name: " + name + ", namespace: " + ns + ", manifests: {path: " + name + "}, serviceAccountName: deployer}"
	}
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":    deliverYAML(preview, app("preview", preview), app("staying", staying)),
		"preview/cm.yaml": configMap("preview", map[string]string{"v": "one"}),
		"staying/cm.yaml": configMap("staying", map[string]string{"v": "one"}),
	})
	opts := options(t, repo, nil)
	watches := &watchLog{open: map[[2]string]int{}}
	opts.Config = rest.CopyConfig(env.Config)
	watches.wrap(opts.Config)
	r, _ := start(t, opts)
	waitFor(t, 60*time.Second, "both apps delivered and watched as their ServiceAccounts", func() bool {
		return appStatus(r, "preview").Revision == repo.Head() && appStatus(r, "staying").Revision == repo.Head() &&
			watches.count(users[preview], preview) > 0 && watches.count(users[staying], staying) > 0
	})

	repo.WriteFile("deliver.yaml", deliverYAML(preview, app("staying", staying)))
	head := repo.CommitAll("the preview leaves")
	r.Trigger()
	waitFor(t, 30*time.Second, "the watch of the preview namespace closed", func() bool {
		return r.Status().Revision == head && watches.count(users[preview], preview) == 0
	})
	if n := watches.count(users[staying], staying); n == 0 {
		t.Error("the watch of the staying app's namespace was closed too")
	}
}
