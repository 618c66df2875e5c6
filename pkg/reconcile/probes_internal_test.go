package reconcile

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProbes: /readyz answers 503 only while the engine of a cluster that
// answers has not made its first pass (an unreachable cluster leaves the
// pod ready: its status says why); /healthz fails when the fetch loop or
// the loop of a leading engine has not passed for three intervals and a
// minute, and not for an engine that does not lead (it has no loop to
// run).
func TestProbes(t *testing.T) {
	t.Parallel()
	const interval = time.Minute
	stuck := time.Now().Add(-(3*interval + 2*time.Minute)).UnixNano()
	recent := time.Now().UnixNano()
	type engine struct {
		env, clusterErr string
		ready, leading  bool
		lastLoop        int64
	}
	for _, tt := range []struct {
		name       string
		fetchLoop  int64
		engines    []engine
		path       string
		wantStatus int
		want       []string
	}{
		{"ready", recent, []engine{{env: "prod", ready: true}}, "/readyz", http.StatusOK, []string{"prod: ok (own cluster)"}},
		{"starting", recent, []engine{{env: "prod", ready: true}, {env: "staging"}}, "/readyz", http.StatusServiceUnavailable, []string{"prod: ok", "staging: not ready: starting"}},
		{"unreachable is ready", recent, []engine{{env: "prod", ready: true}, {env: "edge", clusterErr: "dial tcp: connection refused"}}, "/readyz", http.StatusOK, []string{"prod: ok", "edge: unreachable: dial tcp: connection refused"}},
		{"healthy", recent, []engine{{env: "prod", ready: true, leading: true, lastLoop: recent}}, "/healthz", http.StatusOK, []string{"ok"}},
		{"before the first fetch", 0, []engine{{env: "prod"}}, "/healthz", http.StatusOK, []string{"ok"}},
		{"fetch loop stuck", stuck, []engine{{env: "prod", ready: true, leading: true, lastLoop: recent}}, "/healthz", http.StatusServiceUnavailable, []string{"fetch loop stuck since"}},
		{"engine loop stuck", recent, []engine{{env: "prod", ready: true, leading: true, lastLoop: recent}, {env: "staging", ready: true, leading: true, lastLoop: stuck}}, "/healthz", http.StatusServiceUnavailable, []string{"environment staging: reconcile loop stuck since"}},
		{"stuck but not leading", recent, []engine{{env: "prod", ready: true, lastLoop: stuck}}, "/healthz", http.StatusOK, []string{"ok"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Clusters{opts: Options{Interval: interval}, metrics: newMetrics()}
			c.lastLoop.Store(tt.fetchLoop)
			for _, e := range tt.engines {
				r := &Reconciler{metrics: newMetrics(), apps: map[string]*appState{}}
				r.ready.Store(e.ready)
				r.leading.Store(e.leading)
				r.lastLoop.Store(e.lastLoop)
				r.link = &engineLink{c: c, env: e.env, cluster: ownCluster, clusterErr: e.clusterErr}
				c.sups = append(c.sups, &supervisor{env: e.env, r: r})
			}
			rec := httptest.NewRecorder()
			c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("%s: %d, want %d:\n%s", tt.path, rec.Code, tt.wantStatus, rec.Body)
			}
			for _, w := range tt.want {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("%s: body lacks %q:\n%s", tt.path, w, rec.Body)
				}
			}
		})
	}
}
