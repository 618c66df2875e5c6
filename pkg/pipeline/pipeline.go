// Package pipeline wires deliver's stages for one run: read the desired
// state, render it, plan it against the cluster, and apply it. The CLI, CI
// and (later) the in-cluster reconciler all go through here, so what the
// laptop diff shows is what CI will do.
package pipeline

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/render"
)

// Options describe one run.
type Options struct {
	// Root is the local folder holding the desired state (a working tree or
	// a fetched snapshot).
	Root string
	// Path is the manifests' file or folder relative to Root.
	Path string
	// App names the app: its objects carry the app label and its inventory
	// is kept under this name. Default "default".
	App string
	// Revision is the git commit being delivered, recorded in the inventory.
	Revision string
	// Apply configures the apply stage.
	Apply apply.Options
	// FullDryRun dry-runs every object instead of trusting the inventory.
	FullDryRun bool
	// Wait waits for every applied object to be ready (kstatus Current)
	// before post-apply hooks run.
	Wait bool
	// Strategy is rolling (default) or recreate.
	Strategy apply.Strategy
}

func (o Options) plan() apply.PlanOptions {
	return apply.PlanOptions{App: o.App, Revision: o.Revision, FullDryRun: o.FullDryRun, Strategy: o.Strategy, Wait: o.Wait}
}

func (o *Options) defaults() {
	if o.App == "" {
		o.App = "default"
	}
}

// Render reads and renders the desired state without touching a cluster.
func Render(ctx context.Context, opts Options) (*object.Set, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opts.defaults()
	return render.Plain(render.PlainOptions{Root: opts.Root, Path: opts.Path, App: opts.App})
}

// Diff renders the desired state and plans it against the cluster cfg
// points at. It never writes to the cluster.
func Diff(ctx context.Context, cfg *rest.Config, opts Options) (*apply.Plan, error) {
	opts.defaults()
	set, err := Render(ctx, opts)
	if err != nil {
		return nil, err
	}
	m, err := apply.New(cfg, opts.Apply)
	if err != nil {
		return nil, err
	}
	return m.Plan(ctx, set, opts.plan())
}

// Apply renders the desired state, applies it to the cluster cfg points at,
// prunes what left git and waits for readiness. The report is returned also
// when applying failed part way.
func Apply(ctx context.Context, cfg *rest.Config, opts Options) (*apply.Report, error) {
	opts.defaults()
	set, err := Render(ctx, opts)
	if err != nil {
		return nil, err
	}
	m, err := apply.New(cfg, opts.Apply)
	if err != nil {
		return nil, err
	}
	rep, err := m.Apply(ctx, set, opts.plan())
	if err != nil {
		return rep, fmt.Errorf("%s: %w", opts.App, err)
	}
	return rep, nil
}
