package apply

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// TestSharedListsPerIdentity: a list made as one identity is never handed
// to an app of another. Apps of the same identity share one list; deliver
// itself and each ServiceAccount list for themselves, since each may read
// what the others may not.
func TestSharedListsPerIdentity(t *testing.T) {
	ctx := context.Background()
	k := listKey{gvr: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, ns: "team-a"}
	deployer, other := ServiceAccountUser("team-a", "deployer"), ServiceAccountUser("team-a", "other")
	s := NewSharedLists(nil)
	calls := map[string]int{}
	for _, tt := range []struct {
		user string
		want int // lists made as user so far
	}{
		{"", 1},
		{deployer, 1},
		{"", 1},
		{deployer, 1},
		{other, 1},
	} {
		items, err := s.get(ctx, tt.user, k, time.Time{}, func(context.Context, listKey) (*metaList, error) {
			calls[tt.user]++
			return newMetaList(nil), nil
		})
		if err != nil || items == nil {
			t.Fatalf("get as %q: %v, %v", tt.user, items, err)
		}
		if calls[tt.user] != tt.want {
			t.Errorf("after get as %q: %d lists as it, want %d", tt.user, calls[tt.user], tt.want)
		}
	}
	if len(calls) != 3 {
		t.Errorf("lists made as %v, want one per identity", calls)
	}
	// Whole objects (the autoscalers) too.
	objCalls := map[string]int{}
	for _, user := range []string{"", deployer, deployer, ""} {
		if _, err := s.getObjects(ctx, user, k, time.Time{}, func(context.Context, listKey) ([]unstructured.Unstructured, error) {
			objCalls[user]++
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if objCalls[""] != 1 || objCalls[deployer] != 1 {
		t.Errorf("object lists made as %v, want one per identity", objCalls)
	}
}

// TestSessionClientsPerServiceAccount: the session makes one set of
// clients per impersonated user, with watches of its own, and keeps them;
// deliver's own clients are the session's.
func TestSessionClientsPerServiceAccount(t *testing.T) {
	// Nothing is sent: NewSession discovers lazily.
	s, err := NewSession(&rest.Config{Host: "http://127.0.0.1:1"}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := NewManager(s, Options{DefaultNamespace: "team-a", ServiceAccountName: "deployer"})
	a2 := NewManager(s, Options{DefaultNamespace: "team-a", ServiceAccountName: "deployer"})
	b := NewManager(s, Options{DefaultNamespace: "team-b", ServiceAccountName: "deployer"})
	own := NewManager(s, Options{DefaultNamespace: "team-a"})
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	if a.objects != a2.objects {
		t.Error("two apps of one ServiceAccount got different clients")
	}
	if a.objects == b.objects || a.objects.watcher == b.objects.watcher {
		t.Error("ServiceAccounts of two namespaces share clients or watches")
	}
	if own.objects != s.own || a.objects.watcher == s.own.watcher {
		t.Error("an app without a ServiceAccount does not use the session's own clients, or shares its watches with one that has")
	}
	if got, want := a.objects.user, "system:serviceaccount:team-a:deployer"; got != want {
		t.Errorf("impersonated user = %q, want %q", got, want)
	}
	// Bookkeeping stays deliver's own.
	if a.kube != s.kube || a.meta != s.meta {
		t.Error("the inventory and lock clients of an impersonating app are not deliver's own")
	}
}
