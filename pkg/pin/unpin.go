package pin

import (
	"context"
	"errors"
	"fmt"

	"github.com/deliverhq/deliver/pkg/apply"
)

// Unpin removes opts.App's pin: the reconciler then delivers the app at
// the head of the followed ref again. The cluster is Kube("") of
// opts.Pipeline, the current kubeconfig context: no revision is read.
// Result.Previous is the pin removed, nil when the app had none (not an
// error).
func Unpin(ctx context.Context, opts Options) (res *Result, err error) {
	opts.defaults()
	defer func() { err = opts.redact(err) }()
	if opts.App == "" {
		return nil, errors.New("an app is required")
	}
	if opts.Pipeline.Kube == nil {
		return nil, fmt.Errorf("unpin app %s: no cluster configured", opts.App)
	}
	rc, err := opts.Pipeline.Kube("")
	if err != nil {
		return nil, fmt.Errorf("unpin app %s: kubeconfig: %w", opts.App, err)
	}
	mgr, err := apply.New(rc, apply.Options{InventoryNamespace: opts.Pipeline.Apply.InventoryNamespace})
	if err != nil {
		return nil, fmt.Errorf("unpin app %s: %w", opts.App, err)
	}
	old, err := mgr.ClearPin(ctx, opts.App)
	if err != nil {
		return nil, err
	}
	return &Result{App: opts.App, Previous: old}, nil
}
