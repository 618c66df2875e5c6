package reconcile_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// failStatus fails the writes of the status ConfigMap while on is set,
// and counts those it failed.
type failStatus struct {
	on     atomic.Bool
	failed atomic.Int32
}

// wrap is a rest.Config WrapTransport: every client of the reconciler
// goes through f.
func (f *failStatus) wrap(rt http.RoundTripper) http.RoundTripper {
	return failStatusTransport{f, rt}
}

type failStatusTransport struct {
	f    *failStatus
	next http.RoundTripper
}

func (t failStatusTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	write := r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/configmaps") &&
		(strings.HasSuffix(r.URL.Path, "/"+reconcile.StatusConfigMap) || strings.HasSuffix(r.URL.Path, "/configmaps"))
	if write && t.f.on.Load() {
		t.f.failed.Add(1)
		return nil, errors.New("injected: status write refused")
	}
	return t.next.RoundTrip(r)
}

// TestStatusWriteRetried: the status ConfigMap cannot be written while an
// app is delivered (the API server refuses, or times out under load). The
// reconciler polls once an hour, so no fetch comes to write it again: it
// retries the write itself, with the backoff of a failed app, and the
// status shows the delivered commit once writes succeed again.
func TestStatusWriteRetried(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	repo := webRepo(t, ns)
	fail := &failStatus{}
	fail.on.Store(true)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(fail.wrap)
	opts := options(t, repo, cfg)
	opts.Interval = time.Hour
	r, _ := start(t, opts)
	head := repo.Head()
	waitFor(t, 30*time.Second, "web delivered, its status write refused", func() bool {
		a := appStatus(r, "web")
		return a.Revision == head && a.Result == "succeeded" && fail.failed.Load() >= 2 && cmData(t, ns, "web")["color"] == "blue"
	})
	fail.on.Store(false)
	inv := opts.Pipeline.Apply.InventoryNamespace
	waitFor(t, 10*time.Second, "the status ConfigMap written", func() bool {
		var a reconcile.AppStatus
		return json.Unmarshal([]byte(cmData(t, inv, reconcile.StatusConfigMap)["web"]), &a) == nil && a.Revision == head && a.Result == "succeeded"
	})
}
