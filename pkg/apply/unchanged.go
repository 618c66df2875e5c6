package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PlanUnchanged plans an app without rendering it, for a revision whose
// inputs are those of the app's last successful run: same reports whether
// the inventory's Inputs are the revision's (the caller recomputes the
// digest from the paths they list). When they are, and every object of the
// inventory is in the cluster as deliver last applied it, the plan lists
// every object unchanged, from one metadata LIST per kind and namespace:
// no render, no dry run. An object counts as unchanged by the rule of the
// plan's fast path and the reconciler's drift check: the same
// resourceVersion, or, for kinds whose status controllers write, the same
// generation, or, for an object that leaves fields to others (an
// autoscaler's replicas, ignore rules: Entry.Spec), the same object
// without those fields, read whole.
//
// It returns nil, and the caller renders and plans as usual, whenever it
// cannot vouch for that: no inventory inputs or different ones, a last run
// that did not succeed, a recreate in progress, an object gone or changed
// in the cluster (drift, which only a render can revert), a kind no longer
// served, PlanOptions.FullDryRun, an inventory that records no identity or
// another one than PlanOptions.Identity, or is to be adopted.
func (m *Manager) PlanUnchanged(ctx context.Context, opts PlanOptions, same func(*Inputs) bool) (*Plan, error) {
	if opts.App == "" {
		return nil, errors.New("plan: app name is required")
	}
	if m.err != nil {
		return nil, fmt.Errorf("plan: %w", m.err)
	}
	if opts.FullDryRun {
		return nil, nil
	}
	var (
		inv    *Inventory
		listed map[listKey]*metaList
		since  time.Time
	)
	if p := m.prefetched(ctx, opts.App, false); p != nil && p.invErr == nil {
		inv, listed, since = p.inv, p.lists, p.invAt
	} else {
		var err error
		if inv, _, err = m.readInventory(ctx, opts.App); err != nil {
			return nil, err
		}
		since = time.Now()
	}
	if inv.Result != ResultSucceeded || inv.Inputs == nil || len(inv.ScaledDown) > 0 || !same(inv.Inputs) {
		return nil, nil
	}
	if opts.Identity != nil && (inv.Identity == nil || inv.Identity.differs(*opts.Identity) || inv.adopt) {
		// Another deliverer's app, or one to record or adopt: the plan
		// says so, or the run records it.
		return nil, nil
	}
	p := &Plan{App: opts.App, Revision: opts.Revision, inventory: inv, redact: m.opts.Redact, opts: opts}
	mappings := &gvrCache{m: m}
	applied := make([]Entry, 0, len(inv.Entries)) // by change
	for _, e := range inv.Entries {
		if e.Policy == ApplyNever.String() {
			continue // in git, and left alone wherever it is
		}
		if e.ResourceVersion == "" && e.Policy == "" {
			return nil, nil // never confirmed applied
		}
		gvr, namespaced, err := mappings.gvrFor(e.GroupKind(), e.Version)
		if err != nil {
			return nil, nil
		}
		id := e.ID
		if !namespaced {
			id.Namespace = ""
		}
		p.Changes = append(p.Changes, &Change{ID: id, Type: ChangeUnchanged, stage: StageOf(id), gvr: gvr, version: e.Version, digest: e.Digest})
		applied = append(applied, e)
	}
	live, _, err := m.listLive(ctx, p.Changes, false, listed, since)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	for i, c := range p.Changes {
		lm, ok := live[c.ID]
		if owner, _ := otherOwner(lm, opts.App, opts.env()); !ok || lm.GetLabels()[LabelApp] != opts.App || owner != "" {
			return nil, nil
		}
		c.listed = lm.DeletionTimestamp == nil
		e := applied[i]
		switch e.Policy {
		case ApplyIfNotPresent.String():
			continue // it exists, whatever it holds now
		case ApplyPaused.String():
			if !reconcileDisabled(lm.GetAnnotations()) {
				return nil, nil // resumed in the cluster: plan it anew
			}
			continue
		}
		if lm.ResourceVersion != e.ResourceVersion && (e.Generation == 0 || lm.Generation != e.Generation) && !m.onlyIgnoredChanged(ctx, c, e) {
			return nil, nil
		}
	}
	sortChanges(p.Changes)
	if m.planWaitFor(p, opts.WaitFor, mappings) != nil {
		return nil, nil // the plan of a render names the object
	}
	return p, nil
}

// onlyIgnoredChanged reads an object that changed since deliver applied it
// and reports whether only fields it leaves to others changed (Entry.Spec
// is then the same): a scale by an autoscaler, a caBundle injected. One
// GET, only for such objects.
func (m *Manager) onlyIgnoredChanged(ctx context.Context, c *Change, e Entry) bool {
	if e.Spec == "" {
		return false
	}
	live, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
	return err == nil && EntryDigest(e, live) == e.Spec
}
