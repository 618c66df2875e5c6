package apply

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// prefetch is what Prefetch read ahead of a plan of one app.
type prefetch struct {
	app  string
	done chan struct{}

	inv        *Inventory
	invVersion string // resourceVersion of the inventory Secret; "" when there is none
	invErr     error
	lists      map[listKey]*metaList // only the lists that succeeded
	// invAt is when the inventory read was answered: every list above
	// started later (see listAhead).
	invAt time.Time
}

// listKey names one list request: a resource in a namespace ("" for all or
// cluster-scoped).
type listKey struct {
	gvr schema.GroupVersionResource
	ns  string
}

// Prefetch starts reading, in the background, what a plan of the app needs
// from the cluster before it can compare anything: the app's inventory,
// API discovery, and the metadata of every kind and namespace the
// inventory lists. The next Plan or Apply of that app waits for it instead
// of making those requests one after the other, so a caller that renders
// meanwhile (the pipeline) hides them behind its CPU work: about 40 ms of
// a 1,000-object diff. Nothing read ahead is trusted blindly: Apply, under
// the app's lock, uses it only if no run of deliver can have changed the
// app since (see planInventory), and a read that failed is made again by
// the plan, whose error is the one reported. With a full dry run only the
// inventory and discovery are read ahead (the plan lists whole objects).
func (m *Manager) Prefetch(ctx context.Context, opts PlanOptions) {
	if m.err != nil {
		return // the plan says why
	}
	p := &prefetch{app: opts.App, done: make(chan struct{}), lists: map[listKey]*metaList{}}
	m.preMu.Lock()
	m.pre = p
	m.preMu.Unlock()
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		// Discovery does not depend on the inventory: both at once.
		wg.Go(func() { _, _, _ = m.gvrFor(schema.GroupKind{Kind: "Namespace"}, "v1") })
		r, ok := m.opts.Lists.inventory(ctx, opts.App, m.readInventories)
		if !ok {
			r.inv, r.version, r.err = m.readInventory(ctx, opts.App)
			r.at = time.Now()
		}
		p.inv, p.invVersion, p.invErr, p.invAt = r.inv, r.version, r.err, r.at
		wg.Wait()
		if p.invErr != nil || opts.FullDryRun {
			return
		}
		keys := map[listKey]bool{}
		mappings := &gvrCache{m: m} // a thousand entries are of a handful of kinds
		for _, e := range p.inv.Entries {
			gvr, namespaced, err := mappings.gvrFor(e.GroupKind(), e.Version)
			if err != nil {
				continue // the plan finds out again, and says why
			}
			ns := e.Namespace
			if !namespaced {
				ns = ""
			}
			keys[listKey{gvr, ns}] = true
		}
		var mu sync.Mutex
		for k := range keys {
			wg.Go(func() {
				items, err := m.listAhead(ctx, k, p.invAt)
				if err != nil {
					return
				}
				mu.Lock()
				p.lists[k] = items
				mu.Unlock()
			})
		}
		wg.Wait()
	}()
}

// listAhead lists the metadata of k for a plan whose inventory was read
// at since: through the run's SharedLists when it has some, which share a
// list with other apps only if it started after since. A list older than
// the inventory may miss what a run recorded in it (an object created),
// and the plan would take it for gone.
func (m *Manager) listAhead(ctx context.Context, k listKey, since time.Time) (*metaList, error) {
	if m.opts.Lists == nil {
		return m.listMeta(ctx, k)
	}
	// As the app's identity: see SharedLists.
	return m.opts.Lists.get(ctx, m.impersonated(), k, since, m.listMeta)
}

// prefetched returns what Prefetch read ahead for app once it is
// complete; nil when nothing was. With take it is also forgotten, for the
// plan that uses it; without, it is left for a plan that may follow (a
// plan from the inventory, which may still give up and render).
func (m *Manager) prefetched(ctx context.Context, app string, take bool) *prefetch {
	m.preMu.Lock()
	p := m.pre
	if take && p != nil && p.app == app {
		m.pre = nil
	}
	m.preMu.Unlock()
	if p == nil || p.app != app {
		return nil
	}
	select {
	case <-p.done:
		return p
	case <-ctx.Done():
		return nil
	}
}

// planInventory returns the inventory a plan starts from, what was listed
// ahead with it, and when it was read (lists the plan makes must be newer
// to be shared: see listAhead). Under the app's lock, what was read ahead
// is used only if no run of deliver can have written since: the inventory
// Secret is still the same version (a run that creates objects writes it
// before its first write, and every run after its last), it records no
// run that was cut short, and the lock was released by its last holder (a
// run that only updates objects writes the inventory at its end only: if
// it was killed, its lock is all that tells). Otherwise the inventory is
// read again and nothing listed ahead is used. An inventory found missing
// ahead needs no check when the lock created the app's Lease: no run
// held the lock before, so none wrote the inventory.
//
// read is the inventory when the caller already read it under the lock
// (Apply with UnlessDelivered): it is not read a third time (ahead, for
// the check, for the plan), and its version is the one compared.
func (m *Manager) planInventory(ctx context.Context, app string, lock *appLock, read *lockedInventory) (*Inventory, map[listKey]*metaList, time.Time, error) {
	p := m.prefetched(ctx, app, true)
	if p != nil && p.invErr == nil {
		if lock == nil {
			return p.inv, p.lists, p.invAt, nil
		}
		if lock.created && p.invVersion == "" {
			// Found missing ahead, and the app's Lease did not exist
			// until this lock created it: no run has written the
			// inventory since (the first apply of a thousand apps read
			// a thousand missing inventories twice).
			return p.inv, p.lists, p.invAt, nil
		}
		if !lock.tookOver && p.inv.Result != ResultApplying {
			var (
				version string
				err     error
			)
			if read != nil {
				version = read.version
			} else {
				version, err = m.inventoryVersion(ctx, app)
			}
			if err == nil && version == p.invVersion {
				return p.inv, p.lists, p.invAt, nil
			}
		}
	}
	if read != nil {
		return read.inv, nil, read.at, nil
	}
	inv, _, err := m.readInventory(ctx, app)
	return inv, nil, time.Now(), err
}
