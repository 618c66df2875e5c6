package reconcile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
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
	if isStatusWrite(r) && t.f.on.Load() {
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

// isStatusWrite reports whether r writes the status ConfigMap (an update,
// an apply, or the create of a ConfigMap, which only the status and the
// control ConfigMap are).
func isStatusWrite(r *http.Request) bool {
	return r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/configmaps") &&
		(strings.HasSuffix(r.URL.Path, "/"+reconcile.StatusConfigMap) || strings.HasSuffix(r.URL.Path, "/configmaps"))
}

// holdStatus holds the first status write that shows an app running
// until another status write was answered (at most holdFor), so that a
// snapshot taken first reaches the API server last unless the writes are
// ordered; and it slows the apply of the ConfigMap slow.
type holdStatus struct {
	held    atomic.Bool
	release chan struct{}
	once    sync.Once
}

const holdFor = 4 * time.Second

func (h *holdStatus) wrap(rt http.RoundTripper) http.RoundTripper { return holdStatusTransport{h, rt} }

type holdStatusTransport struct {
	h    *holdStatus
	next http.RoundTripper
}

func (t holdStatusTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/configmaps/slow") {
		time.Sleep(time.Second)
	}
	if !isStatusWrite(r) || r.Body == nil {
		return t.next.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(`running`)) && t.h.held.CompareAndSwap(false, true) {
		select {
		case <-t.h.release:
		case <-time.After(holdFor):
		}
		return t.next.RoundTrip(r)
	}
	resp, err := t.next.RoundTrip(r)
	if t.h.held.Load() {
		t.h.once.Do(func() { close(t.h.release) })
	}
	return resp, err
}

// TestStatusWritesInOrder: two apps are delivered at once; the status
// written when the first ended (the other still running) is held on its
// way to the API server until the second's was answered. The writes are
// ordered, so the second waits for the first and writes a newer
// snapshot: the status ConfigMap ends with both apps succeeded, although
// the reconciler polls once an hour and nothing else writes it.
func TestStatusWritesInOrder(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ns := env.Namespace(t)
	repo := newGitRepo(t, map[string]string{
		"deliver.yaml": deliverYAML(ns, "- {name: fast, namespace: $NS, manifests: {path: fast}}", "- {name: slow, namespace: $NS, manifests: {path: slow}}"),
		"fast/cm.yaml": configMap("fast", map[string]string{"k": "v"}),
		"slow/cm.yaml": configMap("slow", map[string]string{"k": "v"}),
	})
	hold := &holdStatus{release: make(chan struct{})}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(hold.wrap)
	opts := options(t, repo, cfg)
	opts.Interval = time.Hour
	r, _ := start(t, opts)
	head := repo.Head()
	waitFor(t, 30*time.Second, "both apps delivered", func() bool {
		return appStatus(r, "fast").Result == "succeeded" && appStatus(r, "slow").Result == "succeeded"
	})
	if !hold.held.Load() {
		t.Fatal("no status write showed an app running: the two runs did not overlap")
	}
	inv := opts.Pipeline.Apply.InventoryNamespace
	waitFor(t, 2*holdFor, "the status ConfigMap with both apps succeeded", func() bool {
		got := cmData(t, inv, reconcile.StatusConfigMap)
		for _, app := range []string{"fast", "slow"} {
			var a reconcile.AppStatus
			if json.Unmarshal([]byte(got[app]), &a) != nil || a.Revision != head || a.Result != "succeeded" {
				return false
			}
		}
		return true
	})
}
