package apply

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// SharedLists shares, between the Managers of one run, the metadata lists
// their plans read (ahead, with Prefetch, and when planning): each
// resource and namespace is listed once for the apps of the run, where
// each app used to list it for itself. A thousand apps spread over ten
// namespaces make forty lists instead of four thousand, and hold one copy
// of their items instead of a hundred. Their inventories too are read
// together (see NewSharedLists).
//
// A list is shared only by apps of the same identity: an app that
// impersonates a ServiceAccount (Options.ServiceAccountName) lists as it,
// and never sees a list made by deliver or another ServiceAccount, which
// may read what its own may not.
//
// A plan uses a shared list only if it started after the plan's inventory
// was read, as the app's own list would have: a list older than the
// inventory may miss an object a run of the app created and recorded in
// between. An older list is listed again, and the newer one shared from
// then on. Under the app's lock, what was read ahead is trusted as far as
// planInventory trusts the inventory it came with. Make one per run
// (pipeline.Run does), never one per process. A list that failed is not
// kept: the next app to ask lists again. Safe for concurrent use; the
// zero value is not: use NewSharedLists.
type SharedLists struct {
	mu    sync.Mutex
	lists map[sharedKey]*sharedList[*metaList]
	// objects are whole objects, for the kinds a plan reads more than the
	// metadata of: the autoscalers, whose spec names their targets.
	objects map[sharedKey]*sharedList[[]unstructured.Unstructured]

	// apps are the run's apps, whose inventories the first Prefetch reads
	// for all of them (see Manager.readInventories).
	apps    []string
	inRun   map[string]bool
	invOnce sync.Once
	invDone chan struct{}
	invs    map[string]inventoryRead
}

// sharedKey names a shared list: who lists (the impersonated user, "" for
// deliver itself), what and where.
type sharedKey struct {
	user string
	listKey
}

// sharedList is one list, done when its first asker got an answer.
type sharedList[T any] struct {
	done    chan struct{}
	started time.Time
	items   T
	err     error
}

// NewSharedLists returns an empty SharedLists for one run of apps: their
// inventories too are read together, with a list per hundred apps
// instead of a GET each (nil apps: each reads its own).
func NewSharedLists(apps []string) *SharedLists {
	s := &SharedLists{lists: map[sharedKey]*sharedList[*metaList]{}, objects: map[sharedKey]*sharedList[[]unstructured.Unstructured]{}, apps: apps, inRun: make(map[string]bool, len(apps)), invDone: make(chan struct{})}
	for _, a := range apps {
		s.inRun[a] = true
	}
	return s
}

// inventory returns app's inventory as read for every app of the run by
// the first app to ask, with read; false when app is not one of the run's.
func (s *SharedLists) inventory(ctx context.Context, app string, read func(context.Context, []string) map[string]inventoryRead) (inventoryRead, bool) {
	if s == nil || !s.inRun[app] {
		return inventoryRead{}, false
	}
	s.invOnce.Do(func() {
		go func() {
			defer close(s.invDone)
			s.invs = read(ctx, s.apps)
		}()
	})
	select {
	case <-s.invDone:
		r, ok := s.invs[app]
		return r, ok
	case <-ctx.Done():
		return inventoryRead{}, false
	}
}

// get returns the items of k, listing them as user with list unless an
// app of the run listed them as user, or is listing them, with a list
// started at
// notBefore or later. A list started earlier is not used, and the newer
// one replaces it for the apps that ask next: a plan may only trust a list
// at least as new as the inventory it starts from (see planInventory).
// The items are shared: nobody may change them.
func (s *SharedLists) get(ctx context.Context, user string, k listKey, notBefore time.Time, list func(context.Context, listKey) (*metaList, error)) (*metaList, error) {
	return share(ctx, &s.mu, s.lists, sharedKey{user, k}, notBefore, list)
}

// getObjects is get for lists of whole objects.
func (s *SharedLists) getObjects(ctx context.Context, user string, k listKey, notBefore time.Time, list func(context.Context, listKey) ([]unstructured.Unstructured, error)) ([]unstructured.Unstructured, error) {
	return share(ctx, &s.mu, s.objects, sharedKey{user, k}, notBefore, list)
}

// share is get over the lists of one type, guarded by mu.
func share[T any](ctx context.Context, mu *sync.Mutex, lists map[sharedKey]*sharedList[T], k sharedKey, notBefore time.Time, list func(context.Context, listKey) (T, error)) (T, error) {
	for {
		mu.Lock()
		l, ok := lists[k]
		if !ok || l.started.Before(notBefore) {
			l = &sharedList[T]{done: make(chan struct{}), started: time.Now()}
			lists[k] = l
			mu.Unlock()
			l.items, l.err = list(ctx, k.listKey)
			if l.err != nil {
				// Not kept: an app whose context ended must not fail the
				// apps that ask next.
				mu.Lock()
				if lists[k] == l {
					delete(lists, k)
				}
				mu.Unlock()
			}
			close(l.done)
			return l.items, l.err
		}
		mu.Unlock()
		select {
		case <-l.done:
			if l.err == nil {
				return l.items, nil
			}
			// The lister failed; list again (or wait for whoever does).
		case <-ctx.Done():
			var none T
			return none, ctx.Err()
		}
	}
}
