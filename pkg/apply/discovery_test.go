package apply_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestDiscoveryMatchesClientGo checks that the manager's RESTMapper, built
// on the parallel fetch of /api and /apis, maps every kind the API server
// serves as client-go's own discovery does, and that the two documents
// were indeed in flight at the same time.
func TestDiscoveryMatchesClientGo(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	// /api is answered only once /apis was asked for too (or after 5 s,
	// which a sequential fetch would wait for).
	var (
		mu         sync.Mutex
		apisAsked  = make(chan struct{})
		askedOnce  sync.Once
		overlapped bool
	)
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			switch req.URL.Path {
			case "/apis":
				askedOnce.Do(func() { close(apisAsked) })
			case "/api":
				select {
				case <-apisAsked:
					mu.Lock()
					overlapped = true
					mu.Unlock()
				case <-time.After(5 * time.Second):
				}
			}
			return rt.RoundTrip(req)
		})
	}
	m, err := apply.New(cfg, apply.Options{})
	if err != nil {
		t.Fatal(err)
	}

	dc := discovery.NewDiscoveryClientForConfigOrDie(env.Config)
	plain := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // subresources
			}
			want, wantErr := plain.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: r.Kind}, gv.Version)
			got, err := m.RESTMapper().RESTMapping(schema.GroupKind{Group: gv.Group, Kind: r.Kind}, gv.Version)
			if err != nil || wantErr != nil {
				t.Fatalf("%s %s: error %v, client-go's %v", gv, r.Kind, err, wantErr)
			}
			if diff := cmp.Diff(mappingOf(want), mappingOf(got)); diff != "" {
				t.Errorf("%s %s: mapping (-client-go +deliver):\n%s", gv, r.Kind, diff)
			}
			n++
		}
	}
	if n < 40 {
		t.Errorf("compared %d kinds, want the API server's 40 or more", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !overlapped {
		t.Error("/api was answered before /apis was asked for: discovery is sequential")
	}
}

// mapping is a RESTMapping's comparable content.
type mapping struct {
	Resource schema.GroupVersionResource
	Kind     schema.GroupVersionKind
	Scope    meta.RESTScopeName
}

func mappingOf(m *meta.RESTMapping) mapping {
	return mapping{Resource: m.Resource, Kind: m.GroupVersionKind, Scope: m.Scope.Name()}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
