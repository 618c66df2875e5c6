package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/object"
)

// ErrNoInventory is returned for an app that has no inventory in the
// inventory namespace: deliver never delivered it there, so it has nothing
// to remove.
var ErrNoInventory = errors.New("no inventory: deliver has not delivered the app here")

// PlanRemove plans the removal of app opts.App (see Remove) without
// writing: every object its inventory lists, as deletions.
func (m *Manager) PlanRemove(ctx context.Context, opts PlanOptions) (*Plan, error) {
	if err := m.hasInventory(ctx, opts.App); err != nil {
		return nil, err
	}
	return m.Plan(ctx, &object.Set{}, removeOptions(opts))
}

// Remove deletes app opts.App from the cluster, as removing an app from
// git means: under the app's lock, the plan of an app with no objects is
// executed, so that every object of its inventory is pruned on the terms
// of any prune (its ownership label, the opt-out annotations, a UID
// precondition; an object another app took over is kept) and its hooks'
// kept runs are deleted; a run of another identity is refused as any run
// is (IdentityError). Then, when nothing failed, its inventory Secret is
// deleted: the app, its history and its pin are gone. Objects an opt-out
// kept stay, as after any prune, and so do those annotated with Argo
// CD's Delete=false.
//
// The deletion policy (opts.DeletionPolicy, else the one the inventory
// records, else Delete) decides first: Orphan deletes nothing but the
// inventory (each object reported Orphaned), WaitForTermination waits
// until each deleted object is gone and keeps in the inventory those
// still there after Options.Timeout (the removal fails).
func (m *Manager) Remove(ctx context.Context, opts PlanOptions) (*Report, error) {
	if opts.App == "" {
		return nil, errors.New("remove: app name is required")
	}
	lock, ctx, err := m.lock(ctx, opts.App)
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	inv, version, err := m.readInventory(ctx, opts.App)
	if err != nil {
		return nil, lock.result(err)
	}
	if version == "" {
		return nil, fmt.Errorf("%s: %w", opts.App, m.noInventory())
	}
	rep, err := m.planAndExecute(ctx, &object.Set{}, removeOptions(opts), lock, &lockedInventory{inv: inv, version: version, at: time.Now()})
	if err == nil && rep.Count(Failed) == 0 {
		err = m.deleteInventory(ctx, opts.App)
	}
	return rep, lock.result(err)
}

// orphan is Remove's execute under DeletionOrphan: the plan checked as
// Execute checks it (identity, pin), and no write; each object the
// plan leaves (Plan.Orphaned) is reported Orphaned. Hooks' kept runs
// stay too.
func (m *Manager) orphan(_ context.Context, p *Plan) (*Report, error) {
	if err := p.ConflictErr(); err != nil {
		return nil, err
	}
	if err := p.pinRefusal(); err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, id := range p.Orphaned {
		rep.Results = append(rep.Results, Result{ID: id, Action: Orphaned})
	}
	return rep, nil
}

// removalPolicy is the deletion policy of a removal's plan (see Remove):
// the caller's, else the one the inventory records, else Delete; "" for
// any other plan.
func (p *Plan) removalPolicy() DeletionPolicy {
	if !p.opts.removal {
		return ""
	}
	return cmp.Or(p.opts.DeletionPolicy, p.inventory.DeletionPolicy).or()
}

// removeOptions are the plan options of a removal: prune, no wait, no
// rollback, no hooks' inputs, no namespace to create, nothing else to
// wait for.
func removeOptions(opts PlanOptions) PlanOptions {
	opts.NoPrune, opts.Wait, opts.RollbackOnFailure, opts.Inputs = false, false, false, nil
	opts.CreateNamespace, opts.WaitFor = "", nil
	opts.removal = true
	return opts
}

// hasInventory returns ErrNoInventory (wrapped) when app has none.
func (m *Manager) hasInventory(ctx context.Context, app string) error {
	version, err := m.inventoryVersion(ctx, app)
	if err != nil {
		return err
	}
	if version == "" {
		return fmt.Errorf("%s: %w", app, m.noInventory())
	}
	return nil
}

func (m *Manager) noInventory() error {
	return fmt.Errorf("inventory namespace %s: %w", m.opts.InventoryNamespace, ErrNoInventory)
}

// deleteInventory deletes app's inventory Secret, at the version the run
// just wrote: a Secret written since (another run) is not deleted.
func (m *Manager) deleteInventory(ctx context.Context, app string) error {
	version, err := m.inventoryVersion(ctx, app)
	if err != nil || version == "" {
		return err
	}
	ns, name := m.opts.InventoryNamespace, InventoryName(app)
	err = m.kube.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &version}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("inventory %s/%s: delete: %w", ns, name, err)
	}
	return nil
}
