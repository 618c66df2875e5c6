package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/source"
)

// Remove deletes from the cluster apps that left deliver.yaml: the apps
// Options.Apps names, or, when it names none, every app whose inventory
// records this run's identity (this environment of this deliver.yaml of
// this repository) and that deliver.yaml at the revision no longer lists
// (an environment's disabled apps included). Each app's objects are
// pruned as objects that left git are (apply.Manager.Remove: the
// ownership label, the opt-outs, an object another app took over is
// kept), then its inventory is deleted. An app deliver.yaml still lists is
// refused: the next run would deliver it again; remove it from git first.
// Without config.PruneApps removing apps is a decision: no run of Apply
// or the reconciler deletes an app, only this.
func Remove(ctx context.Context, opts Options) (*Result, error) {
	return remove(ctx, opts, modeApply)
}

// PlanRemove is Remove without writing: each app's plan lists its
// deletions, as a diff does.
func PlanRemove(ctx context.Context, opts Options) (*Result, error) {
	return remove(ctx, opts, modeDiff)
}

func remove(ctx context.Context, opts Options, m mode) (res *Result, err error) {
	opts.defaults()
	defer func() {
		if err != nil {
			err = opts.Redactor.Error(err)
		}
	}()
	if opts.Manifests != "" {
		return nil, errors.New("remove: apps of a deliver.yaml only (an app of -f is removed with its folder emptied: deliver apply -f prunes it)")
	}
	snap := opts.Snapshot
	if snap == nil {
		snap, err = source.Fetch(ctx, fetchOptions(&opts))
		if err != nil {
			return nil, err
		}
		defer snap.Close()
	}
	names := slices.Clone(opts.Apps)
	opts.Apps = nil
	cfg, err := loadConfig(snap, opts)
	if err != nil {
		return nil, err
	}
	listed := listedApps(cfg)
	for _, n := range names {
		if listed[n] {
			return nil, fmt.Errorf("remove app %s: %s lists it at %.12s: remove it there first, or the next run delivers it again", n, opts.ConfigFile, snap.Commit)
		}
	}
	if cfg.InventoryNamespace != "" {
		opts.Apply.InventoryNamespace = cfg.InventoryNamespace
	}
	sess, err := session(&opts, cfg.Context)
	if err != nil {
		return nil, err
	}
	mgr := apply.NewManager(sess, removeManagerOptions(&opts))
	ident := runIdentity(snap, opts, cfg.Environment)
	if len(names) == 0 {
		if names, err = orphans(ctx, mgr, ident, listed, opts.RemoveOnly); err != nil {
			return nil, fmt.Errorf("remove: %w", err)
		}
	}
	res = &Result{Revision: snap.Commit, Environment: cfg.Environment}
	res.Apps = removeApps(ctx, &opts, mgr, snap.Commit, ident, names, m)
	return res, nil
}

// removeApps removes the apps names (plans their removal in diff mode) in
// order, each an AppResult marked Removed with its own error.
func removeApps(ctx context.Context, opts *Options, mgr *apply.Manager, revision string, ident *apply.Identity, names []string, m mode) []*AppResult {
	out := make([]*AppResult, 0, len(names))
	for _, name := range names {
		ar := &AppResult{Name: name, Removed: true}
		out = append(out, ar)
		start := time.Now()
		po := apply.PlanOptions{App: name, Revision: revision, Identity: ident, DeletionPolicy: opts.RemovePolicy}
		if m == modeApply {
			ar.Report, ar.err = mgr.Remove(ctx, po)
			if ar.Report != nil {
				opts.Log.Info("removed", "app", name, "report", ar.Report.Summary())
			}
		} else {
			ar.Plan, ar.err = mgr.PlanRemove(ctx, po)
			if ar.err == nil {
				ar.err = ar.Plan.ConflictErr()
			}
		}
		ar.Duration = time.Since(start)
		if ar.err != nil {
			ar.err = opts.Redactor.Error(fmt.Errorf("remove app %s: %w", name, ar.err))
			ar.Error = ar.err.Error()
		}
	}
	return out
}

// errUnknownRepository: the run's repository is not known, so the apps
// it delivered cannot be told from others'.
var errUnknownRepository = errors.New("the repository is not known (a checkout without an origin remote): name the apps to remove")

// orphans are the apps of the inventory namespace that ident delivered,
// by the identity their inventory records, that are not listed and that
// keep passes (nil: all): apps that left this deliver.yaml. The names come
// from one metadata list; only the inventories of apps not listed are
// read. Only a complete identity counts: a run from a checkout without a
// known repository finds none.
func orphans(ctx context.Context, mgr *apply.Manager, ident *apply.Identity, listed map[string]bool, keep func(string) bool) ([]string, error) {
	if ident.Repository == "" {
		return nil, errUnknownRepository
	}
	apps, err := mgr.InventoryApps(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, app := range apps {
		if listed[app] || keep != nil && !keep(app) {
			continue
		}
		inv, err := mgr.ReadInventory(ctx, app)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if inv.Identity != nil && *inv.Identity == *ident {
			out = append(out, app)
		}
	}
	return out, errors.Join(errs...)
}

// listedApps are the names of the apps cfg lists.
func listedApps(cfg *config.Resolved) map[string]bool {
	listed := make(map[string]bool, len(cfg.Apps))
	for _, a := range cfg.Apps {
		listed[a.Name] = true
	}
	return listed
}

// removeManagerOptions are the apply options of the removal of apps: the
// run's, with its redaction.
func removeManagerOptions(opts *Options) apply.Options {
	ao := opts.Apply
	ao.Redact = opts.Redactor.Redact
	return ao
}
