package apply_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/deliverhq/deliver/pkg/apply"
)

// loggedSession returns a Session whose requests are logged, for Managers
// that share it.
func loggedSession(t *testing.T) (*apply.Session, *requestLog) {
	t.Helper()
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	log := &requestLog{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return logTransport{log, rt} })
	s, err := apply.NewSession(cfg, apply.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s, log
}

// configMapLists returns the finished lists of ConfigMaps in reqs.
func configMapLists(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.HasPrefix(r, "done GET ") && strings.HasSuffix(r, "/configmaps") {
			out = append(out, strings.TrimPrefix(r, "done "))
		}
	}
	return out
}

// TestSharedListsOncePerNamespace: the apps of a run that share
// namespaces share their lists. Twelve apps in two namespaces, each
// prefetched and planned by its own Manager, list ConfigMaps twice in
// all (once per namespace), and plan what Managers that list for
// themselves plan.
func TestSharedListsOncePerNamespace(t *testing.T) {
	namespaces := []string{env.Namespace(t), env.Namespace(t)}
	ctx := context.Background()
	type app struct {
		opts apply.PlanOptions
		ns   string
		set  string
	}
	var apps []app
	for i := range 12 {
		ns := namespaces[i%2]
		a := app{opts: apply.PlanOptions{App: fmt.Sprintf("%s-%d", ns, i), Revision: "c1"}, ns: ns,
			set: cms(fmt.Sprintf("a%d=1", i), fmt.Sprintf("b%d=1", i))}
		if _, err := newManager(t, apply.Options{}).Apply(ctx, objects(t, ns, a.set), a.opts); err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
	}
	// The next revision changes one object of every third app.
	for i := range apps {
		if i%3 == 0 {
			apps[i].set = cms(fmt.Sprintf("a%d=2", i), fmt.Sprintf("b%d=1", i))
		}
	}

	s, log := loggedSession(t)
	names := []string{"never-applied"}
	for _, a := range apps {
		names = append(names, a.opts.App)
	}
	lists := apply.NewSharedLists(names)
	managers := make([]*apply.Manager, len(apps))
	for i, a := range apps {
		managers[i] = apply.NewManager(s, apply.Options{Lists: lists})
		managers[i].Prefetch(ctx, a.opts)
	}
	for i, a := range apps {
		got, err := managers[i].Plan(ctx, objects(t, a.ns, a.set), a.opts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newManager(t, apply.Options{}).Plan(ctx, objects(t, a.ns, a.set), a.opts)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(changes(want), changes(got)); diff != "" {
			t.Errorf("app %s: plan with shared lists (-own lists +shared):\n%s", a.opts.App, diff)
		}
	}
	reqs := log.take()
	if got := configMapLists(reqs); len(got) != len(namespaces) {
		t.Errorf("%d apps in %d namespaces listed ConfigMaps %d times, want %d: %q", len(apps), len(namespaces), len(got), len(namespaces), got)
	}
	// The inventories: one list for the run's apps, and a GET only for
	// the app the list did not return (it has none).
	var invReads []string
	for _, r := range reqs {
		if strings.HasPrefix(r, "done GET ") && (strings.HasSuffix(r, "/secrets") || strings.Contains(r, "/secrets/deliver-inventory-")) {
			invReads = append(invReads, strings.TrimPrefix(r, "done "))
		}
	}
	if len(invReads) != 2 || !strings.HasSuffix(invReads[0], "/secrets") || !strings.HasSuffix(invReads[1], "/secrets/"+apply.InventoryName("never-applied")) {
		t.Errorf("inventory reads %q, want one list and one GET of the app that has none", invReads)
	}
}

// TestSharedListOlderThanInventory: a list shared with another app of the
// run was taken before this app's inventory was read, and another deliver
// applied the app in between, adding an object. Under the app's lock the
// inventory is the one read ahead, but the shared list is older than it
// and does not show the new object: Apply must list again, and prune the
// object that left git. (With the app's own lists, taken after its
// inventory, TestPrefetchStaleUnderLock covers the same run.)
func TestSharedListOlderThanInventory(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	mine := apply.PlanOptions{App: ns + "-mine", Revision: "c1"}
	theirs := apply.PlanOptions{App: ns + "-theirs", Revision: "c1"}
	other := newManager(t, apply.Options{})
	for _, a := range []struct {
		opts apply.PlanOptions
		set  string
	}{{mine, cms("a=1")}, {theirs, cms("t=1")}} {
		if _, err := other.Apply(ctx, objects(t, ns, a.set), a.opts); err != nil {
			t.Fatal(err)
		}
	}

	s, log := loggedSession(t)
	lists := apply.NewSharedLists(nil)
	// The other app of the run lists the namespace first.
	apply.NewManager(s, apply.Options{Lists: lists}).Prefetch(ctx, theirs)
	waitRequests(t, log, func(reqs []string) bool { return len(configMapLists(reqs)) > 0 })
	// Another deliver (CI, say) adds x to mine meanwhile.
	if _, err := other.Apply(ctx, objects(t, ns, cms("a=1", "x=1")), apply.PlanOptions{App: mine.App, Revision: "c2"}); err != nil {
		t.Fatal(err)
	}
	m := apply.NewManager(s, apply.Options{Lists: lists})
	m.Prefetch(ctx, mine)
	rep, err := m.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: mine.App, Revision: "c3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep)["ConfigMap/"+ns+"/x"]; got != apply.Deleted {
		t.Errorf("apply after a shared list older than the inventory: x %q, want %q (report %v)", got, apply.Deleted, actions(rep))
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "x", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("x left git but was not pruned: get: %v", err)
	}
}

// TestSharedAutoscalerLists: the plans of a run's apps that share
// namespaces list the autoscalers of each namespace once, and still find
// the live HorizontalPodAutoscaler that targets one app's Deployment:
// that app leaves spec.replicas alone, the others set it.
func TestSharedAutoscalerLists(t *testing.T) {
	namespaces := []string{env.Namespace(t), env.Namespace(t)}
	ctx := context.Background()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: namespaces[0]},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web-0"},
			MinReplicas:    ptr.To[int32](1), MaxReplicas: 3,
		},
	}
	if _, err := env.Client().AutoscalingV2().HorizontalPodAutoscalers(namespaces[0]).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, log := loggedSession(t)
	var names []string
	for i := range 6 {
		names = append(names, fmt.Sprintf("web-%d", i))
	}
	// As a pipeline run does: the inventories are read ahead, together,
	// so every plan starts from the same read and may share lists made
	// after it.
	lists := apply.NewSharedLists(names)
	managers := make([]*apply.Manager, len(names))
	for i, name := range names {
		managers[i] = apply.NewManager(s, apply.Options{Lists: lists})
		managers[i].Prefetch(ctx, apply.PlanOptions{App: name})
	}
	for i, name := range names {
		ns := namespaces[i%2]
		set := objects(t, ns, strings.ReplaceAll(deployment, "name: web", "name: "+name))
		p, err := managers[i].Plan(ctx, set, apply.PlanOptions{App: name})
		if err != nil {
			t.Fatal(err)
		}
		_, hasReplicas, _ := unstructured.NestedFieldNoCopy(p.Changes[0].Desired.Object, "spec", "replicas")
		if want := name != "web-0"; hasReplicas != want {
			t.Errorf("app %s: plan sets spec.replicas = %v, want %v (only web-0 has an autoscaler)", name, hasReplicas, want)
		}
	}
	var hpaLists []string
	for _, r := range log.take() {
		if strings.HasPrefix(r, "done GET ") && strings.HasSuffix(r, "/horizontalpodautoscalers") {
			hpaLists = append(hpaLists, strings.TrimPrefix(r, "done "))
		}
	}
	if len(hpaLists) != len(namespaces) {
		t.Errorf("%d apps in %d namespaces listed autoscalers %d times, want %d: %q", len(names), len(namespaces), len(hpaLists), len(namespaces), hpaLists)
	}
}
