// Package pin holds an app at one revision and takes it back to an
// earlier one: the verbs behind deliver pin, unpin and rollback. A pin is
// stored in annotations of the app's inventory Secret (apply.SetPin), so
// it lives in the cluster: the reconciler delivers the pinned revision of
// the app, and nothing newer, until the pin is removed, across restarts
// and changes of leader. Every pin records who set it (the user the API
// server authenticated), when and why.
package pin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// Options say which app to pin, where it comes from and where it goes.
type Options struct {
	// Pipeline is how the app is delivered, as for deliver apply: Repo
	// (or Path, whose git repository is then the one revisions are
	// resolved against), Auth, CacheDir, ConfigFile, Env, Kube (the
	// cluster of the environment), Apply.InventoryNamespace (default
	// deliver-system), Secrets, Redactor, Log. Ref is where Rollback
	// reads deliver.yaml to find the app's cluster (default: the remote's
	// HEAD). Apps, Snapshot and Config are set by the verbs.
	Pipeline pipeline.Options
	// App is the app's name. Required.
	App string
	// Revision is what Pin pins the app to: a commit SHA (full or
	// abbreviated), a tag or a branch, resolved to a full commit SHA.
	Revision string
	// Reason says why, for the audit trail. Required by Pin and Rollback.
	Reason string
	// Now returns the time recorded with the pin. Default time.Now.
	Now func() time.Time
}

// Result is what a verb did.
type Result struct {
	// App is the app's name.
	App string `json:"app"`
	// Pin is the app's pin now; nil after Unpin.
	Pin *apply.Pin `json:"pin,omitempty"`
	// Previous is the pin it replaced or removed; nil when there was
	// none.
	Previous *apply.Pin `json:"previous,omitempty"`
	// From is the revision the app was at before a rollback.
	From string `json:"from,omitempty"`
	// Apply is the rollback's delivery of the pinned revision.
	Apply *pipeline.Result `json:"apply,omitempty"`
}

// Pin pins opts.App to opts.Revision, which must exist in the repository
// and hold the app: the reconciler then delivers that revision of the
// app, and nothing newer, until Unpin. It replaces a pin the app had. It
// does not apply anything itself: the reconciler does, at once.
func Pin(ctx context.Context, opts Options) (res *Result, err error) {
	opts.defaults()
	defer func() { err = opts.redact(err) }()
	if err := opts.check(true); err != nil {
		return nil, err
	}
	t, err := opts.at(ctx, opts.Revision)
	if err != nil {
		return nil, err
	}
	defer t.close()
	mgr, err := t.manager()
	if err != nil {
		return nil, err
	}
	inv, err := mgr.ReadInventory(ctx, opts.App)
	if err != nil {
		return nil, fmt.Errorf("pin app %s: %w", opts.App, err)
	}
	p, err := opts.set(ctx, mgr, t)
	if err != nil {
		return nil, err
	}
	return &Result{App: opts.App, Pin: p, Previous: inv.Pin}, nil
}

// set pins the app to t's commit as the user of t's cluster.
func (o *Options) set(ctx context.Context, mgr *apply.Manager, t *target) (*apply.Pin, error) {
	who, err := Who(ctx, t.rest)
	if err != nil {
		return nil, fmt.Errorf("pin app %s: %w", o.App, err)
	}
	p := apply.Pin{Revision: t.snap.Commit, By: who, At: o.Now().UTC().Truncate(time.Second), Reason: o.Reason}
	if err := mgr.SetPin(ctx, o.App, p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Pipeline.Redactor == nil {
		o.Pipeline.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	o.Pipeline.ConfigFile = cmp.Or(o.Pipeline.ConfigFile, config.FileName)
	o.Pipeline.Apply.InventoryNamespace = cmp.Or(o.Pipeline.Apply.InventoryNamespace, "deliver-system")
}

// redact masks every secret value the redactor knows in err.
func (o *Options) redact(err error) error {
	if err == nil {
		return nil
	}
	return o.Pipeline.Redactor.Error(err)
}

// check refuses options a verb cannot work with: no app, no reason (an
// audit trail without a why), a pin without a revision.
func (o *Options) check(needRevision bool) error {
	if o.App == "" {
		return errors.New("an app is required")
	}
	if needRevision && o.Revision == "" {
		return fmt.Errorf("pin app %s: a revision is required", o.App)
	}
	if strings.TrimSpace(o.Reason) == "" {
		return fmt.Errorf("app %s: a reason is required: it is recorded with the pin for who comes next", o.App)
	}
	if len(o.Reason) > apply.MaxPinReason {
		return fmt.Errorf("app %s: the reason is %d bytes, more than %d", o.App, len(o.Reason), apply.MaxPinReason)
	}
	return nil
}

// target is a revision of the repository with the app's configuration
// there and the cluster it names.
type target struct {
	snap *source.Snapshot
	cfg  *config.Resolved
	rest *rest.Config
	o    *Options
}

func (t *target) close() { _ = t.snap.Close() }

// manager returns a Manager of the app's inventories in t's cluster.
func (t *target) manager() (*apply.Manager, error) {
	mgr, err := apply.New(t.rest, apply.Options{InventoryNamespace: t.o.inventoryNamespace(t.cfg)})
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", t.o.App, err)
	}
	return mgr, nil
}

// inventoryNamespace is where the app's inventory is: the environment's
// inventoryNamespace in deliver.yaml, which wins over the flag as it does
// for apply and diff (docs/clusters.md), or Apply.InventoryNamespace.
func (o *Options) inventoryNamespace(cfg *config.Resolved) string {
	if cfg != nil && cfg.InventoryNamespace != "" {
		return cfg.InventoryNamespace
	}
	return o.Pipeline.Apply.InventoryNamespace
}

// at resolves ref to a commit of the repository and reads the app's
// configuration there: the commit must exist and deliver.yaml there must
// hold the app. The errors name the app and the revision.
func (o *Options) at(ctx context.Context, ref string) (*target, error) {
	url, err := o.repoURL()
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", o.App, err)
	}
	snap, err := source.Fetch(ctx, source.Options{URL: url, Ref: ref, Auth: o.Pipeline.Auth, CacheDir: o.Pipeline.CacheDir})
	if err != nil {
		if errors.Is(err, source.ErrRefNotFound) {
			return nil, fmt.Errorf("app %s: revision %q not found in the repository: %w", o.App, ref, err)
		}
		return nil, fmt.Errorf("app %s: revision %q: %w", o.App, ref, err)
	}
	po := o.Pipeline
	po.Apps = []string{o.App}
	po.Snapshot, po.Config = nil, nil
	cfg, err := pipeline.LoadConfig(snap, po)
	if err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("app %s: revision %.12s: %w", o.App, snap.Commit, err)
	}
	if o.Pipeline.Kube == nil {
		_ = snap.Close()
		return nil, fmt.Errorf("app %s: no cluster configured", o.App)
	}
	rc, err := o.Pipeline.Kube(cfg.Context)
	if err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("app %s: kubeconfig: %w", o.App, err)
	}
	return &target{snap: snap, cfg: cfg, rest: rc, o: o}, nil
}

// repoURL is the repository revisions are resolved against: Repo, or the
// git repository of the working tree Path, read in place (file://),
// since a working tree as it is on disk has no revision to pin.
func (o *Options) repoURL() (string, error) {
	if o.Pipeline.Repo != "" {
		return o.Pipeline.Repo, nil
	}
	path := cmp.Or(o.Pipeline.Path, ".")
	repo, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", fmt.Errorf("%s: not in a git repository (give --repo): %w", path, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "file://" + wt.Filesystem.Root(), nil
}
