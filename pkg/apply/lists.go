package apply

import (
	"context"
	"sync"
	"time"
)

// SharedLists shares, between the Managers of one run, the metadata lists
// their plans read ahead (Prefetch): each resource and namespace is listed
// once for every app of the run, where each app used to list it for
// itself. A thousand apps spread over ten namespaces make forty lists
// instead of four thousand, and hold one copy of their items instead of a
// hundred.
//
// Its lists are as old as the run, as each app's own would be: they are
// read when the run starts, and a plan under the app's lock trusts them
// only as far as it trusts the rest of what was read ahead (see
// planInventory). Make one per run (pipeline.Run does), never one per
// process. A list that failed is not kept: the next app to ask lists
// again. Safe for concurrent use; the zero value is not: use
// NewSharedLists.
type SharedLists struct {
	mu    sync.Mutex
	lists map[listKey]*sharedList

	// apps are the run's apps, whose inventories the first Prefetch reads
	// for all of them (see Manager.readInventories).
	apps    []string
	inRun   map[string]bool
	invOnce sync.Once
	invDone chan struct{}
	invs    map[string]inventoryRead
}

// sharedList is one list, done when its first asker got an answer.
type sharedList struct {
	done    chan struct{}
	started time.Time
	items   *metaList
	err     error
}

// NewSharedLists returns an empty SharedLists for one run of apps: their
// inventories too are read together, with a list per hundred apps
// instead of a GET each (nil apps: each reads its own).
func NewSharedLists(apps []string) *SharedLists {
	s := &SharedLists{lists: map[listKey]*sharedList{}, apps: apps, inRun: make(map[string]bool, len(apps)), invDone: make(chan struct{})}
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

// get returns the items of k and when their list started, listing them
// with list if no app of the run did yet, or waiting for the app that is
// listing them. The items are shared: nobody may change them.
func (s *SharedLists) get(ctx context.Context, k listKey, list func(context.Context, listKey) (*metaList, error)) (*metaList, time.Time, error) {
	for {
		s.mu.Lock()
		l, ok := s.lists[k]
		if !ok {
			l = &sharedList{done: make(chan struct{}), started: time.Now()}
			s.lists[k] = l
			s.mu.Unlock()
			l.items, l.err = list(ctx, k)
			if l.err != nil {
				// Not kept: an app whose context ended must not fail the
				// apps that ask next.
				s.mu.Lock()
				delete(s.lists, k)
				s.mu.Unlock()
			}
			close(l.done)
			return l.items, l.started, l.err
		}
		s.mu.Unlock()
		select {
		case <-l.done:
			if l.err == nil {
				return l.items, l.started, nil
			}
			// The lister failed; list again (or wait for whoever does).
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
	}
}
