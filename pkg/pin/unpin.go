package pin

import (
	"context"
	"errors"
	"fmt"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/source"
)

// Unpin removes opts.App's pin: the reconciler then delivers the app at
// the head of the followed ref again. Result.Previous is the pin removed,
// nil when the app had none (not an error).
//
// The cluster is the environment's, as for pin, rollback and apply: with
// opts.Pipeline.Env (or Repo), the kubeconfig context deliver.yaml at
// opts.Pipeline.Ref (default: the remote's HEAD) names for it; otherwise,
// or when it names none, Kube(""), the current kubeconfig context. An
// explicit --context wins, as everywhere. The app need not be in
// deliver.yaml any more: a pin of an app that left must still go.
func Unpin(ctx context.Context, opts Options) (res *Result, err error) {
	opts.defaults()
	defer func() { err = opts.redact(err) }()
	if opts.App == "" {
		return nil, errors.New("an app is required")
	}
	if opts.Pipeline.Kube == nil {
		return nil, fmt.Errorf("unpin app %s: no cluster configured", opts.App)
	}
	var cfg *config.Resolved
	if opts.Pipeline.Env != "" || opts.Pipeline.Repo != "" {
		if cfg, err = opts.environment(ctx); err != nil {
			return nil, fmt.Errorf("unpin app %s: %w", opts.App, err)
		}
	}
	kubeContext := ""
	if cfg != nil {
		kubeContext = cfg.Context
	}
	rc, err := opts.Pipeline.Kube(kubeContext)
	if err != nil {
		return nil, fmt.Errorf("unpin app %s: kubeconfig: %w", opts.App, err)
	}
	mgr, err := apply.New(rc, apply.Options{InventoryNamespace: opts.inventoryNamespace(cfg)})
	if err != nil {
		return nil, fmt.Errorf("unpin app %s: %w", opts.App, err)
	}
	old, err := mgr.ClearPin(ctx, opts.App)
	if err != nil {
		return nil, err
	}
	return &Result{App: opts.App, Previous: old}, nil
}

// environment is deliver.yaml at Pipeline.Ref resolved for Pipeline.Env:
// its kubeconfig context and inventory namespace.
func (o *Options) environment(ctx context.Context) (*config.Resolved, error) {
	url, err := o.repoURL()
	if err != nil {
		return nil, err
	}
	snap, err := source.Fetch(ctx, source.Options{URL: url, Ref: o.Pipeline.Ref, Auth: o.Pipeline.Auth, CacheDir: o.Pipeline.CacheDir})
	if err != nil {
		return nil, fmt.Errorf("deliver.yaml: %w", err)
	}
	defer snap.Close()
	po := o.Pipeline
	po.Apps, po.Snapshot, po.Config = nil, nil, nil
	cfg, err := pipeline.LoadConfig(snap, po)
	if err != nil {
		return nil, fmt.Errorf("revision %.12s: %w", snap.Commit, err)
	}
	return cfg, nil
}
