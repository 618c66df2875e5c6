// Package pipeline wires deliver's stages for one run: read the desired
// state, render it, and apply it. The CLI, CI and (later) the in-cluster
// reconciler all go through here, so they behave the same.
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
	// App names the set in origins and reports. Default "default".
	App string
	// Apply configures the apply stage.
	Apply apply.Options
	// Wait waits for every applied object to be ready (kstatus Current).
	Wait bool
}

// Render reads and renders the desired state without touching a cluster.
func Render(ctx context.Context, opts Options) (*object.Set, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.App == "" {
		opts.App = "default"
	}
	return render.Plain(render.PlainOptions{Root: opts.Root, Path: opts.Path, App: opts.App})
}

// Apply renders the desired state and applies it to the cluster cfg points
// at. The report is returned also when applying failed part way.
func Apply(ctx context.Context, cfg *rest.Config, opts Options) (*apply.Report, error) {
	set, err := Render(ctx, opts)
	if err != nil {
		return nil, err
	}
	m, err := apply.New(cfg, opts.Apply)
	if err != nil {
		return nil, err
	}
	rep, err := m.Apply(ctx, set)
	if err != nil {
		return rep, err
	}
	if opts.Wait {
		if err := m.Wait(ctx, set.Objects); err != nil {
			return rep, fmt.Errorf("%s: %w", opts.App, err)
		}
	}
	return rep, nil
}
