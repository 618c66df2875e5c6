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

	"github.com/deliverhq/deliver/pkg/reconcile"
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

// previewApps are two apps of a reconciler whose watches are counted:
// preview and staying, each in its namespace, declared by app.
type previewApps struct {
	preview, staying string // their namespaces
	app              func(name, ns string) string
	repo             *gitRepo
	r                *reconcile.Reconciler
	watches          *watchLog
}

// startPreviewApps starts a reconciler delivering the apps preview and
// staying, and waits until both are delivered and watched says their
// watches are open.
func startPreviewApps(t *testing.T, preview, staying string, app func(name, ns string) string, watched func(*watchLog) bool) *previewApps {
	t.Helper()
	p := &previewApps{preview: preview, staying: staying, app: app, watches: &watchLog{open: map[[2]string]int{}}}
	p.repo = newGitRepo(t, map[string]string{
		"deliver.yaml":    deliverYAML(preview, app("preview", preview), app("staying", staying)),
		"preview/cm.yaml": configMap("preview", map[string]string{"v": "one"}),
		"staying/cm.yaml": configMap("staying", map[string]string{"v": "one"}),
	})
	opts := options(t, p.repo, nil)
	opts.Config = rest.CopyConfig(env.Config)
	p.watches.wrap(opts.Config)
	p.r, _ = start(t, opts)
	waitFor(t, 60*time.Second, "both apps delivered and watched", func() bool {
		return appStatus(p.r, "preview").Revision == p.repo.Head() && appStatus(p.r, "staying").Revision == p.repo.Head() &&
			watched(p.watches)
	})
	return p
}

// leave commits deliver.yaml without the app preview, and waits until the
// reconciler fetched it and closed the watches that closed says.
func (p *previewApps) leave(t *testing.T, what string, closed func(*watchLog) bool) {
	t.Helper()
	p.repo.WriteFile("deliver.yaml", deliverYAML(p.preview, p.app("staying", p.staying)))
	head := p.repo.CommitAll("the preview leaves")
	p.r.Trigger()
	waitFor(t, 30*time.Second, what, func() bool { return p.r.Status().Revision == head && closed(p.watches) })
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
	p := startPreviewApps(t, preview, staying, func(name, ns string) string {
		return "- {name: " + name + ", namespace: " + ns + ", manifests: {path: " + name + "}, serviceAccountName: deployer}"
	}, func(w *watchLog) bool {
		return w.count(users[preview], preview) > 0 && w.count(users[staying], staying) > 0
	})
	p.leave(t, "the watch of the preview namespace closed", func(w *watchLog) bool { return w.count(users[preview], preview) == 0 })
	if n := p.watches.count(users[staying], staying); n == 0 {
		t.Error("the watch of the staying app's namespace was closed too")
	}
}

// TestInputWatchOfLeftNamespaceStops: the namespaces apps read
// substituteFrom or valuesFrom objects from are watched for labelled
// ConfigMaps and Secrets; when the last app reading from one leaves
// deliver.yaml, its watches are closed, those of the namespaces still
// read from stay.
func TestInputWatchOfLeftNamespaceStops(t *testing.T) {
	preview, staying := env.Namespace(t), env.Namespace(t)
	t.Parallel()
	p := startPreviewApps(t, preview, staying, func(name, ns string) string {
		return "- {name: " + name + ", namespace: " + ns + ", manifests: {path: " + name + "}, postBuild: {substituteFrom: [{kind: ConfigMap, name: vars, optional: true}]}}"
	}, func(w *watchLog) bool { return w.count("", preview) >= 2 && w.count("", staying) >= 2 })
	p.leave(t, "the watches of the preview namespace closed", func(w *watchLog) bool { return w.count("", preview) == 0 })
	if n := p.watches.count("", staying); n < 2 {
		t.Errorf("%d watches of the staying app's namespace, want its 2 (ConfigMaps, Secrets)", n)
	}
}
