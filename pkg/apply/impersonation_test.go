package apply_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
)

// writeAll are the verbs of a Role that lets a ServiceAccount deliver.
var writeAll = []string{"get", "list", "watch", "create", "patch", "update", "delete"}

// userLog records, for each request, the user it impersonates ("" for
// none), its method and path.
type userLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *userLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

type userTransport struct {
	log  *userLog
	next http.RoundTripper
}

// RoundTrip logs "user METHOD /path?query". client-go's impersonation
// wrapper runs before the wrappers of rest.Config.Wrap, so its header is
// set by now.
func (t userTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.log.mu.Lock()
	t.log.reqs = append(t.log.reqs, fmt.Sprintf("%q %s %s?%s", r.Header.Get("Impersonate-User"), r.Method, r.URL.Path, r.URL.RawQuery))
	t.log.mu.Unlock()
	return t.next.RoundTrip(r)
}

// userSession returns a Session whose requests are logged with the user
// they impersonate.
func userSession(t *testing.T) (*apply.Session, *userLog) {
	t.Helper()
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	log := &userLog{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return userTransport{log, rt} })
	s, err := apply.NewSession(cfg, apply.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s, log
}

// tenantManager returns a Manager of s for an app in ns that impersonates
// the ServiceAccount sa ("" for none), with the test's inventory
// namespace.
func tenantManager(t *testing.T, s *apply.Session, ns, sa, inv string, lists *apply.SharedLists) *apply.Manager {
	t.Helper()
	m := apply.NewManager(s, apply.Options{DefaultNamespace: ns, ServiceAccountName: sa, InventoryNamespace: inv, Timeout: time.Minute, Lists: lists})
	t.Cleanup(func() { apply.StopIdleWatches(m) })
	return m
}

// TestServiceAccountDelivers: an app with a ServiceAccount is delivered
// only because its ServiceAccount may write its namespace. Without the
// RoleBinding the run fails naming the ServiceAccount; with it the app's
// Deployment, config and pre-apply hook Job are applied and waited for,
// and every request about them (dry runs, applies, the hook's Job, the
// wait's lists and watches) impersonated the ServiceAccount while the
// inventory and the lock were written as deliver itself; once the
// binding is gone, a change fails and nothing of it is written.
func TestServiceAccountDelivers(t *testing.T) {
	s, log := userSession(t)
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	user := env.ServiceAccount(t, ns, "deployer")
	m := tenantManager(t, s, ns, "deployer", inv, nil)
	opts := apply.PlanOptions{App: ns, Wait: true}
	set := func(image string) string {
		return app(image, "pw", preApply, "{app: migrate}")
	}

	_, err := m.Apply(ctx, withHooks(objects(t, ns, set("app:1"))), opts)
	var denied *apply.ForbiddenError
	if !errors.As(err, &denied) || denied.User != user || !strings.Contains(err.Error(), "as "+user) {
		t.Fatalf("apply without a RoleBinding: %v; want a ForbiddenError as %s", err, user)
	}
	if _, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Deployment was written by a run its ServiceAccount may not make: %v", err)
	}

	env.Grant(t, ns, ns, "deployer", writeAll, "secrets", "deployments", "deployments/scale", "jobs", "pods", "events", "replicasets")
	log.take()
	rep, err := m.Apply(ctx, withHooks(objects(t, ns, set("app:1"))), opts)
	if err != nil {
		t.Fatalf("apply with the RoleBinding: %v", err)
	}
	if got := actions(rep)["Deployment/"+ns+"/web"]; got != apply.Created {
		t.Errorf("Deployment: %v, want Created", got)
	}
	// checkLog checks that every request of a run about the app's
	// namespace was made as its ServiceAccount, and every one about the
	// inventory's as deliver; it returns the app's requests.
	checkLog := func(t *testing.T) []string {
		t.Helper()
		var own []string
		for _, r := range log.take() {
			switch {
			case strings.Contains(r, "/namespaces/"+ns+"/"):
				if !strings.HasPrefix(r, fmt.Sprintf("%q ", user)) {
					t.Errorf("a request about the app's objects not as its ServiceAccount: %s", r)
				}
				own = append(own, r)
			case strings.Contains(r, "/namespaces/"+inv+"/"):
				if !strings.HasPrefix(r, `"" `) {
					t.Errorf("a request about the inventory or lock as a ServiceAccount: %s", r)
				}
			}
		}
		return own
	}
	var watched, hook, hpa bool
	for _, r := range checkLog(t) {
		watched = watched || strings.Contains(r, "/deployments?") && strings.Contains(r, "watch=true")
		hook = hook || !strings.Contains(r, " GET ") && strings.Contains(r, "/apis/batch/v1/namespaces/"+ns+"/jobs")
		// The lookup of autoscalers, which this ServiceAccount may not
		// list: refused, and spec.replicas is then delivered as in git.
		hpa = hpa || strings.Contains(r, "/horizontalpodautoscalers")
	}
	if !watched || !hook || !hpa {
		t.Errorf("no watch of the Deployments (%v), no hook Job written (%v) or no lookup of HorizontalPodAutoscalers (%v) as the ServiceAccount", watched, hook, hpa)
	}
	if d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment replicas after an autoscaler lookup the ServiceAccount may not make: %v, want 2 as in git", err)
	}

	// The recreate strategy: the scale to zero through the scale
	// subresource, the wait for the old Pods and the new version, all as
	// the ServiceAccount.
	rep, err = m.Apply(ctx, withHooks(objects(t, ns, set("app:1r"))), apply.PlanOptions{App: ns, Wait: true, Strategy: apply.Recreate})
	if err != nil {
		t.Fatalf("recreate: %v", err)
	}
	var scaled, pods bool
	for _, r := range checkLog(t) {
		scaled = scaled || strings.Contains(r, " PATCH ") && strings.Contains(r, "/deployments/web/scale")
		pods = pods || strings.Contains(r, "/pods")
	}
	if !scaled || !pods {
		t.Errorf("recreate: no scale to zero (%v) or no read of the old Pods (%v) as the ServiceAccount", scaled, pods)
	}

	// The binding is what let it: without it, a change fails and is not
	// written.
	if err := env.Client().RbacV1().RoleBindings(ns).Delete(ctx, "deployer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	env.WaitAllowed(t, user, "patch", "deployments", ns, false)
	_, err = m.Apply(ctx, withHooks(objects(t, ns, set("app:2"))), apply.PlanOptions{App: ns})
	if !errors.As(err, &denied) {
		t.Fatalf("apply after the RoleBinding was removed: %v; want a ForbiddenError", err)
	}
	d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "app:1r" {
		t.Errorf("image %s written by a run its ServiceAccount may not make", img)
	}
}

// TestServiceAccountForbiddenNamespace: an app whose ServiceAccount may
// not write one of its namespaces fails before it writes anything, with
// an error naming the ServiceAccount, the verb and the object (or, when
// it may not even read there, the list); two other apps of the same run
// and session (one as deliver, one as another ServiceAccount allowed
// there) are delivered meanwhile.
func TestServiceAccountForbiddenNamespace(t *testing.T) {
	for _, tt := range []struct {
		name      string
		readOther bool // the ServiceAccount may read the other namespace
		verb      string
		object    string // %[1]s is the other namespace
	}{
		{"read-only", true, "dry-run apply", "ConfigMap/%[1]s/other"},
		{"no access", false, "list", `configmaps in namespace "%[1]s"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := userSession(t)
			own, other, inv := env.Namespace(t), env.Namespace(t), env.Namespace(t)
			ctx := context.Background()
			user := env.ServiceAccount(t, own, "deployer")
			env.Grant(t, own, own, "deployer", writeAll, "configmaps")
			if tt.readOther {
				env.Grant(t, other, own, "deployer", []string{"get", "list", "watch"}, "configmaps")
			}
			env.ServiceAccount(t, other, "local")
			env.Grant(t, other, other, "local", writeAll, "configmaps")

			cm := func(ns, name string) string {
				return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {k: v}\n", name, ns)
			}
			lists := apply.NewSharedLists([]string{own, other + "-deliver", other + "-local"})
			runs := []struct {
				app, ns, sa, manifest string
			}{
				{own, own, "deployer", cm(own, "mine") + "---\n" + cm(other, "other")},
				{other + "-deliver", other, "", cm(other, "by-deliver")},
				{other + "-local", other, "local", cm(other, "by-local")},
			}
			errs := make([]error, len(runs))
			var wg sync.WaitGroup
			for i, r := range runs {
				m := tenantManager(t, s, r.ns, r.sa, inv, lists)
				opts := apply.PlanOptions{App: r.app, Wait: true}
				m.Prefetch(ctx, opts)
				wg.Go(func() { _, errs[i] = m.Apply(ctx, objects(t, r.ns, r.manifest), opts) })
			}
			wg.Wait()
			var denied *apply.ForbiddenError
			if !errors.As(errs[0], &denied) {
				t.Fatalf("app of the ServiceAccount: %v; want a ForbiddenError", errs[0])
			}
			t.Logf("the app of the ServiceAccount: %v", errs[0])
			for _, want := range []string{user, tt.verb + " " + fmt.Sprintf(tt.object, other) + " as " + user, "forbidden"} {
				if !strings.Contains(errs[0].Error(), want) {
					t.Errorf("error %q does not say %q", errs[0], want)
				}
			}
			cs := env.Client()
			for _, id := range [][2]string{{own, "mine"}, {other, "other"}} {
				if _, err := cs.CoreV1().ConfigMaps(id[0]).Get(ctx, id[1], metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("ConfigMap %s/%s of the failed app was written: %v", id[0], id[1], err)
				}
			}
			for i, r := range runs[1:] {
				if errs[i+1] != nil {
					t.Errorf("app %s (ServiceAccount %q) of the same run: %v", r.app, r.sa, errs[i+1])
				}
			}
			for _, name := range []string{"by-deliver", "by-local"} {
				if _, err := cs.CoreV1().ConfigMaps(other).Get(ctx, name, metav1.GetOptions{}); err != nil {
					t.Errorf("ConfigMap %s of another app: %v", name, err)
				}
			}
		})
	}
}

// TestServiceAccountPrune: prune deletes as the ServiceAccount. One that
// may create but not delete fails to prune with the ServiceAccount, the
// verb and the object named, and the object stays.
func TestServiceAccountPrune(t *testing.T) {
	s, _ := userSession(t)
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	user := env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update"}, "configmaps")
	m := tenantManager(t, s, ns, "deployer", inv, nil)
	two := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: NS}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: NS}\n"
	if _, err := m.Apply(ctx, objects(t, ns, two), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	one := strings.SplitN(two, "---\n", 2)[0]
	rep, err := m.Apply(ctx, objects(t, ns, one), apply.PlanOptions{App: ns})
	want := fmt.Sprintf("delete ConfigMap/%s/b as %s", ns, user)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("prune: %v; want an error saying %q", err, want)
	}
	t.Logf("prune: %v", err)
	if got := actions(rep)["ConfigMap/"+ns+"/b"]; got != apply.Failed {
		t.Errorf("ConfigMap b: %v, want Failed", got)
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "b", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap b after a prune its ServiceAccount may not make: %v", err)
	}
}
