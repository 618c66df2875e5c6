package reconcile_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// seenRequest is one request of the reconciler, as the API server got it.
type seenRequest struct {
	method, path, query, as string
	status                  int
}

// requestLog records the reconciler's requests: who each impersonated,
// and the status it got.
type requestLog struct {
	mu   sync.Mutex
	reqs []seenRequest
}

// wrap makes cfg record its requests in l.
func (l *requestLog) wrap(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			r := seenRequest{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery, as: req.Header.Get("Impersonate-User")}
			if err == nil {
				r.status = resp.StatusCode
			}
			l.mu.Lock()
			l.reqs = append(l.reqs, r)
			l.mu.Unlock()
			return resp, err
		})
	})
}

// count counts the requests that match.
func (l *requestLog) count(match func(seenRequest) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if match(r) {
			n++
		}
	}
	return n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// countingHandler counts the log records of one message, and logs
// everything through next.
type countingHandler struct {
	slog.Handler
	msg string
	mu  *sync.Mutex
	n   *int
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.mu.Lock()
		*h.n++
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.msg, h.mu, h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.msg, h.mu, h.n}
}

// TestTenantScaleReadAsServiceAccount: in tenant mode (the reconciler may
// not read the app's namespace itself), a Deployment whose manifest sets
// no replica count is scaled in the cluster: its generation moves, and
// the reconciler reads the object to tell a scale from drift as the app's
// ServiceAccount (the GET carries its impersonation and succeeds), so
// that the scale is no drift, while a ConfigMap edit made after it is
// (docs/identity.md).
func TestTenantScaleReadAsServiceAccount(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sa := env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update", "delete"}, "configmaps", "deployments")
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml":        deliverYAML(ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}, serviceAccountName: deployer}"),
		"web/cm.yaml":         configMap("web", map[string]string{"color": "blue"}),
		"web/deployment.yaml": webDeployment(""),
	})
	opts := options(t, repo, nil)
	inv := opts.Pipeline.Apply.InventoryNamespace
	opts.Config = tenantConfig(t, inv)
	var reqs requestLog
	reqs.wrap(opts.Config)
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "first apply", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	getWeb := func(q seenRequest) bool {
		return q.method == http.MethodGet && q.path == "/apis/apps/v1/namespaces/"+ns+"/deployments/web"
	}
	before := reqs.count(getWeb)
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
	if _, err := env.Client().AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the scaled Deployment read", func() bool { return reqs.count(getWeb) > before })
	// A kubectl edit of the ConfigMap, after the scale: by the time it is
	// reverted, the scale was judged too.
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"red"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "ConfigMap drift reverted", func() bool {
		a := appStatus(r, "web")
		return cmData(t, ns, "web")["color"] == "blue" && a.Result == "succeeded" && len(a.Drift) == 0
	})
	reqs.mu.Lock()
	var gets []seenRequest
	for _, q := range reqs.reqs {
		if getWeb(q) {
			gets = append(gets, q)
		}
	}
	reqs.mu.Unlock()
	for _, q := range gets {
		if q.as != sa || q.status != http.StatusOK {
			t.Errorf("GET of the Deployment as %q: %d, want as %s: 200", q.as, q.status, sa)
		}
	}
	for _, msg := range driftEvents(t, inv, "web") {
		if strings.HasPrefix(msg, "Deployment/") {
			t.Errorf("drift reported for a scale: %q", msg)
		}
	}
	d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d, want the scale's 3 kept", *d.Spec.Replicas)
	}
}

// TestDriftWatchRefusedOnce: in tenant mode, an app whose ServiceAccount
// may write its ConfigMap but not list ConfigMaps fails, naming the list
// and the ServiceAccount (its plan lists its kinds). Allowed to list but
// not to watch, it is delivered; the reconciler logs `drift watch
// refused` once however often the watch is retried, and once the Role
// allows the watch, the retried watch sees the drift made meanwhile and
// it is reverted, with no commit (docs/identity.md).
func TestDriftWatchRefusedOnce(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sa := env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "create", "patch", "update", "delete"}, "configmaps")
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: web, namespace: $NS, wait: false, manifests: {path: web}, serviceAccountName: deployer}"),
		"web/cm.yaml":  configMap("web", map[string]string{"color": "blue"}),
	})
	opts := options(t, repo, nil)
	opts.Config = tenantConfig(t, opts.Pipeline.Apply.InventoryNamespace)
	var reqs requestLog
	reqs.wrap(opts.Config)
	var mu sync.Mutex
	refused := 0
	opts.Log = slog.New(countingHandler{Handler: opts.Log.Handler(), msg: "drift watch refused", mu: &mu, n: &refused})
	r, _ := start(t, opts)
	waitFor(t, 30*time.Second, "the run failed naming the list", func() bool {
		a := appStatus(r, "web")
		return a.Result == "failed" && strings.Contains(a.Message, "list configmaps") && strings.Contains(a.Message, "as "+sa)
	})
	allow := func(verb string) {
		t.Helper()
		role, err := env.Client().RbacV1().Roles(ns).Get(ctx, "deployer", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{verb}})
		if _, err := env.Client().RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		env.WaitAllowed(t, sa, verb, "configmaps", ns, true)
	}
	allow("list")
	waitFor(t, 30*time.Second, "delivered once allowed to list", func() bool { return appStatus(r, "web").Revision == repo.Head() })

	watchRefused := func(q seenRequest) bool {
		return q.method == http.MethodGet && q.path == "/api/v1/namespaces/"+ns+"/configmaps" && strings.Contains(q.query, "watch=true") &&
			q.as == sa && q.status == http.StatusForbidden
	}
	waitFor(t, 30*time.Second, "the watch refused and retried", func() bool { return reqs.count(watchRefused) >= 3 })
	mu.Lock()
	n := refused
	mu.Unlock()
	if n != 1 {
		t.Errorf("%q logged %d times over %d refused watches, want once", "drift watch refused", n, reqs.count(watchRefused))
	}

	// Drift while the watch is refused, then the Role allows it: the
	// retried list and watch see the drift, and the run reverts it.
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"data":{"color":"red"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	allow("watch")
	// The reflector retries with a backoff of up to 30 s.
	waitFor(t, 90*time.Second, "drift seen through the retried watch and reverted", func() bool {
		return cmData(t, ns, "web")["color"] == "blue"
	})
	if head := appStatus(r, "web").Revision; head != repo.Head() {
		t.Errorf("revision %s, want %s: no commit was made", head, repo.Head())
	}
}
