package apply_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// sequence records the requests of a Manager in the order they were
// answered ("GET /api/v1/...").
type sequence struct {
	mu   sync.Mutex
	reqs []string
}

type sequenceTransport struct {
	s    *sequence
	next http.RoundTripper
}

func (t sequenceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	t.s.mu.Lock()
	t.s.reqs = append(t.s.reqs, r.Method+" "+r.URL.Path)
	t.s.mu.Unlock()
	return resp, err
}

func (s *sequence) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// afterLock returns the requests from the one that took app's lock on.
func afterLock(reqs []string, app string) []string {
	for i, r := range reqs {
		if (strings.HasPrefix(r, "PUT ") && strings.HasSuffix(r, "/leases/deliver-lock-"+app)) ||
			(strings.HasPrefix(r, "POST ") && strings.HasSuffix(r, "/leases")) {
			return reqs[i+1:]
		}
	}
	return nil
}

// count counts the requests of reqs with method whose path ends with
// suffix.
func count(reqs []string, method, suffix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, method+" ") && strings.HasSuffix(r, suffix) {
			n++
		}
	}
	return n
}

// TestUnlessDeliveredReadsInventoryOnce: Apply with UnlessDelivered (a
// reconciler shard's run for a new revision) reads the app's inventory
// Secret once under the app's lock, whole or its metadata, and the plan
// starts from that read. With a prefetch, what was listed ahead is used
// when the inventory did not change since (no list under the lock), and
// not when another run applied the app meanwhile: that run's object,
// which left git, is pruned. A revision already delivered is refused with
// ErrDelivered before anything is written.
func TestUnlessDeliveredReadsInventoryOnce(t *testing.T) {
	tests := []struct {
		name      string
		prefetch  bool
		changed   bool   // another run applies the app after the prefetch
		revision  string // c1 is delivered
		delivered bool
		lists     int // of ConfigMaps under the lock
	}{
		{name: "new revision", revision: "c2", lists: 1},
		{name: "new revision, prefetched", prefetch: true, revision: "c2", lists: 0},
		{name: "new revision, changed since the prefetch", prefetch: true, changed: true, revision: "c3", lists: 1},
		{name: "delivered", revision: "c1", delivered: true},
		{name: "delivered, prefetched", prefetch: true, revision: "c1", delivered: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			other := newManager(t, apply.Options{})
			if _, err := other.Apply(ctx, objects(t, ns, cms("a=1")), apply.PlanOptions{App: ns, Revision: "c1"}); err != nil {
				t.Fatal(err)
			}
			seq := &sequence{}
			cfg := rest.CopyConfig(env.Config)
			cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return sequenceTransport{seq, rt} })
			m, err := apply.New(cfg, apply.Options{})
			if err != nil {
				t.Fatal(err)
			}
			opts := apply.PlanOptions{App: ns, Revision: tt.revision, UnlessDelivered: true}
			if tt.prefetch {
				m.Prefetch(ctx, opts)
				// Done once the ConfigMaps the inventory lists were listed.
				if _, ok := testenv.Until(30*time.Second, 5*time.Millisecond, func() bool {
					return count(seq.all(), "GET", "/namespaces/"+ns+"/configmaps") == 1
				}); !ok {
					t.Fatalf("prefetch: requests %q", seq.all())
				}
			}
			if tt.changed {
				if _, err := other.Apply(ctx, objects(t, ns, cms("a=1", "x=1")), apply.PlanOptions{App: ns, Revision: "c2"}); err != nil {
					t.Fatal(err)
				}
			}
			secret, err := env.Client().CoreV1().Secrets("deliver-system").Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}

			rep, err := m.Apply(ctx, objects(t, ns, cms("a=2")), opts)
			locked := afterLock(seq.all(), ns)
			if locked == nil {
				t.Fatalf("no lock taken: requests %q", seq.all())
			}
			if n := count(locked, "GET", "/secrets/"+apply.InventoryName(ns)); n != 1 {
				t.Errorf("%d reads of the inventory Secret under the lock, want 1: %q", n, locked)
			}
			if tt.delivered {
				if !errors.Is(err, apply.ErrDelivered) {
					t.Fatalf("apply of a delivered revision: err = %v, want ErrDelivered", err)
				}
				after, gerr := env.Client().CoreV1().Secrets("deliver-system").Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
				level, _ := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "a", metav1.GetOptions{})
				if gerr != nil || after.ResourceVersion != secret.ResourceVersion || level.Data["k"] != "1" {
					t.Errorf("apply of a delivered revision wrote: inventory %s -> %s (%v), a = %v", secret.ResourceVersion, after.ResourceVersion, gerr, level.Data)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := count(locked, "GET", "/namespaces/"+ns+"/configmaps"); n != tt.lists {
				t.Errorf("%d lists of ConfigMaps under the lock, want %d: %q", n, tt.lists, locked)
			}
			if got := actions(rep)["ConfigMap/"+ns+"/a"]; got != apply.Configured {
				t.Errorf("a: %q, want %q (report %v)", got, apply.Configured, actions(rep))
			}
			if tt.changed {
				if got := actions(rep)["ConfigMap/"+ns+"/x"]; got != apply.Deleted {
					t.Errorf("x, applied by the other run after the prefetch: %q, want %q (report %v)", got, apply.Deleted, actions(rep))
				}
				if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "x", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("x left git but was not pruned: get: %v", err)
				}
			}
			inv, err := m.ReadInventory(ctx, ns)
			if err != nil || inv.Revision != tt.revision || inv.Result != apply.ResultSucceeded {
				t.Errorf("inventory %s %s, %v; want %s succeeded", inv.Revision, inv.Result, err, tt.revision)
			}
		})
	}
}
