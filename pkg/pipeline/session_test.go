package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// discoveryCounter counts the discoveries made through a rest.Config:
// GET /api and GET /apis, each once per discovery (aggregated discovery).
type discoveryCounter struct{ api, apis atomic.Int64 }

func (c *discoveryCounter) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet {
				switch req.URL.Path {
				case "/api":
					c.api.Add(1)
				case "/apis":
					c.apis.Add(1)
				}
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

func (c *discoveryCounter) check(t *testing.T, want int64) {
	t.Helper()
	if api, apis := c.api.Load(), c.apis.Load(); api != want || apis != want {
		t.Errorf("GET /api %d times and /apis %d times, want %d discoveries", api, apis, want)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestRunSharesOneDiscovery: a run of 20 apps discovers the API once, not
// once per app; two runs given one Session (as the reconciler does)
// discover once for both.
func TestRunSharesOneDiscovery(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	const apps = 20
	files := map[string]string{}
	var config strings.Builder
	config.WriteString("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n")
	for i := range apps {
		fmt.Fprintf(&config, "- {name: app%d, namespace: %s, manifests: {path: app%d}}\n", i, ns, i)
		files[fmt.Sprintf("app%d/objects.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app%d}\ndata: {app: \"%d\"}\n", i, i)
	}
	files["deliver.yaml"] = config.String()
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, files)
	ctx := context.Background()

	t.Run("session per run", func(t *testing.T) {
		var c discoveryCounter
		opts := clusterOptions(dir, ns)
		opts.Kube = func(string) (*rest.Config, error) { return c.config(), nil }
		res, err := Apply(ctx, opts)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			t.Fatal(err)
		}
		c.check(t, 1)
		for i := range apps {
			if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, fmt.Sprintf("app%d", i), metav1.GetOptions{}); err != nil {
				t.Errorf("app%d: %v", i, err)
			}
		}
	})
	t.Run("session given to two runs", func(t *testing.T) {
		var c discoveryCounter
		s, err := apply.NewSession(c.config(), apply.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts := clusterOptions(dir, ns)
		opts.Kube = nil // the session is the cluster
		opts.Session = s
		for _, run := range []func(context.Context, Options) (*Result, error){Diff, Apply} {
			res, err := run(ctx, opts)
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Apps) != apps || res.HasChanges() {
				t.Errorf("%d apps, changes %v: want %d apps without changes", len(res.Apps), res.HasChanges(), apps)
			}
		}
		c.check(t, 1)
	})
}

// TestRunCRDOfOneAppForAnother: in one run, an app that depends on the
// app creating a CRD uses its kind: the shared RESTMapper, discovered
// before the CRD existed (while rendering), was reset by the run that
// created it.
func TestRunCRDOfOneAppForAnother(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	group := ns + ".example.com"
	t.Cleanup(func() {
		dyn, err := dynamic.NewForConfig(env.Config)
		if err == nil {
			gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
			_ = dyn.Resource(gvr).Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{})
		}
	})
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: crds, namespace: " + ns + ", manifests: {path: crds}}\n" +
			"- {name: widgets, namespace: " + ns + ", manifests: {path: widgets}, dependsOn: [crds]}\n",
		"crds/crd.yaml": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets." + group + "}\n" +
			"spec:\n  group: " + group + "\n  scope: Namespaced\n  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}\n" +
			"  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
		"widgets/widget.yaml": "apiVersion: " + group + "/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n",
	})
	var c discoveryCounter
	opts := clusterOptions(dir, ns)
	opts.Kube = func(string) (*rest.Config, error) { return c.config(), nil }
	res, err := Apply(context.Background(), opts)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, a := range res.Apps {
		if a.Name != "widgets" || a.Report == nil {
			continue
		}
		for _, r := range a.Report.Results {
			found = found || (r.ID.String() == "Widget/"+ns+"/w" && r.Action == apply.Created)
		}
	}
	if !found {
		t.Errorf("app widgets did not create Widget/%s/w", ns)
	}
	if c.apis.Load() < 2 {
		t.Errorf("%d discoveries: the run did not discover again after creating the CRD", c.apis.Load())
	}
}
