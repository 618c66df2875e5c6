package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/deliverhq/deliver/pkg/apply"
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
// Removing apps is a decision: no run of Apply or the reconciler deletes
// an app, only this.
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
	listed := map[string]bool{}
	for _, a := range cfg.Apps {
		listed[a.Name] = true
	}
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
	ao := opts.Apply
	ao.Redact = opts.Redactor.Redact
	mgr := apply.NewManager(sess, ao)
	ident := runIdentity(snap, opts, cfg.Environment)
	if len(names) == 0 {
		if names, err = orphans(ctx, mgr, ident, listed); err != nil {
			return nil, err
		}
	}
	res = &Result{Revision: snap.Commit, Environment: cfg.Environment}
	for _, name := range names {
		ar := &AppResult{Name: name}
		res.Apps = append(res.Apps, ar)
		start := time.Now()
		po := apply.PlanOptions{App: name, Revision: snap.Commit, Identity: ident}
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
	return res, nil
}

// orphans are the apps of the inventory namespace that ident delivered,
// by the identity their inventory records, and that are not listed: apps
// that left this deliver.yaml. Only a complete identity counts: a run
// from a checkout without a known repository finds none.
func orphans(ctx context.Context, mgr *apply.Manager, ident *apply.Identity, listed map[string]bool) ([]string, error) {
	if ident.Repository == "" {
		return nil, errors.New("remove: the repository is not known (a checkout without an origin remote): name the apps to remove")
	}
	invs, err := mgr.ListInventories(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for app, inv := range invs {
		if !listed[app] && inv.Identity != nil && *inv.Identity == *ident {
			out = append(out, app)
		}
	}
	slices.Sort(out)
	return out, nil
}
