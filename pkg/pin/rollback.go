package pin

import (
	"context"
	"fmt"

	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/window"
)

// Rollback pins opts.App to its previous successful revision, the one
// before its current revision in its inventory history
// (apply.Inventory.PreviousRevision), and applies it at once through the
// normal pipeline: that revision's deliver.yaml, render, hooks and
// strategy, as deliver apply --ref REV --app APP would. The pin is set
// first, so that the reconciler does not deliver the newer revision
// again meanwhile; it stays when the apply fails (the error says so), and
// the reconciler retries the pinned revision.
//
// The app's cluster is found through deliver.yaml at opts.Pipeline.Ref
// (the head by default), where the app must be. Its change windows hold
// a rollback as they hold an apply: inside a deny window (or outside an
// allow window) nothing is pinned or applied, and the error wraps
// pipeline.ErrHeld, unless opts.Pipeline.IgnoreWindows.
func Rollback(ctx context.Context, opts Options) (res *Result, err error) {
	opts.defaults()
	defer func() { err = opts.redact(err) }()
	if err := opts.check(false); err != nil {
		return nil, err
	}
	head, err := opts.at(ctx, opts.Pipeline.Ref)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	defer head.close()
	mgr, err := head.manager()
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	inv, err := mgr.ReadInventory(ctx, opts.App)
	if err != nil {
		return nil, fmt.Errorf("rollback app %s: %w", opts.App, err)
	}
	prev, err := inv.PreviousRevision()
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	// A rollback is a change like any other: a change window of the
	// policy in force, deliver.yaml at the head (the older revision may
	// predate the freeze), refuses it before anything is written, unless
	// IgnoreWindows (docs/windows.md).
	if !opts.Pipeline.IgnoreWindows {
		d := window.Check(head.cfg.Windows, opts.App, head.cfg.Environment, opts.Now())
		if msg := pipeline.HoldMessage(d); msg != "" {
			return nil, fmt.Errorf("rollback app %s: %w: %s: nothing pinned or applied (--ignore-windows rolls back anyway)", opts.App, pipeline.ErrHeld, opts.Pipeline.Redactor.Redact(msg))
		}
	}
	t, err := opts.at(ctx, prev.Revision)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	defer t.close()
	p, err := opts.set(ctx, mgr, t)
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	res = &Result{App: opts.App, Pin: p, Previous: inv.Pin, From: inv.Revision}

	po := opts.Pipeline
	po.Apps = []string{opts.App}
	// The pinned revision's tree and deliver.yaml, as read to check it.
	po.Snapshot, po.Config = t.snap, nil
	po.Ref = t.snap.Commit
	// The windows were checked above, against the head's deliver.yaml.
	po.IgnoreWindows = true
	res.Apply, err = pipeline.Apply(ctx, po)
	if err == nil {
		err = res.Apply.Err()
	}
	if err != nil {
		return res, fmt.Errorf("rollback app %s to %.12s: pinned, but the apply failed (the reconciler retries it): %w", opts.App, t.snap.Commit, err)
	}
	return res, nil
}
