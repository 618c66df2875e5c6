package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/deliverhq/deliver/internal/version"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// An app's inputs are what its desired objects are made from: its
// resolved configuration (values, set, environment overrides, namespace,
// strategy...), deliver's own version, the Kubernetes version charts see,
// and the content of every path its render read in the repository (files,
// folder listings, existence checks: render.Reads), SOPS files included
// (their encrypted content). A successful apply records their digest and
// paths in the app's inventory. The next run recomputes the digest from
// those paths in its own snapshot, each hashed once per snapshot whatever
// the number of apps that read it, and an app whose digest is unchanged
// and whose objects are as deliver left them is planned from its inventory
// (apply.Manager.PlanUnchanged): no render, no dry run.
//
// Whatever the digest cannot see makes the app render every time: a Vault
// secret (its value may change without any commit), a remote kustomize
// base, a chart from a repository at a version that is not exact. Secret
// values are never hashed: SOPS files count by their encrypted bytes.

// inputsFormat names what the digest covers; changing it makes every
// recorded digest differ, so that nothing recorded before is trusted.
const inputsFormat = "deliver-inputs/1"

// appDigest returns the digest of app a's inputs in snap, reading the
// paths recorded by a render.
func appDigest(opts *Options, snap *source.Snapshot, a config.ResolvedApp, paths []string) (string, error) {
	h := sha256.New()
	cfg, err := json.Marshal(struct {
		Format, Version, Commit, KubeVersion string
		App                                  config.ResolvedApp
	}{inputsFormat, version.Version, version.Commit, opts.KubeVersion, a})
	if err != nil {
		return "", fmt.Errorf("inputs of app %s: %w", a.Name, err)
	}
	h.Write(cfg)
	h.Write([]byte{0})
	for _, p := range paths {
		sum, err := snap.InputHash(p)
		if err != nil {
			return "", fmt.Errorf("inputs of app %s: %w", a.Name, err)
		}
		fmt.Fprintf(h, "%s\x00%s\n", p, sum)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// planUnchanged plans, from their inventories, the apps whose inputs are
// those of their last successful run and whose objects are as deliver
// left them, and marks them Unchanged: they are not rendered. Any doubt
// (an error included) leaves an app to be rendered.
func planUnchanged(ctx context.Context, opts *Options, snap *source.Snapshot, ident *apply.Identity, apps []*AppResult) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, opts.Parallel)
	for _, ar := range apps {
		if ar.mgr == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			same := func(in *apply.Inputs) bool {
				d, err := appDigest(opts, snap, ar.app, in.Paths)
				return err == nil && d == in.Digest
			}
			p, err := ar.mgr.PlanUnchanged(ctx, apply.PlanOptions{App: ar.Name, Revision: snap.Commit, Identity: ident}, same)
			if err != nil {
				opts.Log.Debug("render: no unchanged plan", "app", ar.Name, "err", opts.Redactor.Error(err))
				return
			}
			if p != nil {
				ar.Plan, ar.Unchanged = p, true
				opts.Log.Info("inputs unchanged: not rendered", "app", ar.Name, "objects", len(p.Changes))
			}
		}()
	}
	wg.Wait()
}

// recordInputs computes, after rendering, the inputs an apply records for
// each rendered app; none for an app whose render depended on something
// outside the repository, or for a dirty working tree (it may change
// before the next run reads it again).
func recordInputs(opts *Options, snap *source.Snapshot, apps []*AppResult) {
	if snap.Local && snap.Dirty() {
		return
	}
	for _, ar := range apps {
		if ar.Unchanged || ar.reads == nil {
			continue
		}
		if why := ar.reads.UncertainReason(); why != "" {
			opts.Log.Debug("inputs not recorded", "app", ar.Name, "reason", why)
			continue
		}
		paths := ar.reads.Paths()
		d, err := appDigest(opts, snap, ar.app, paths)
		if err != nil {
			opts.Log.Debug("inputs not recorded", "app", ar.Name, "err", err)
			continue
		}
		ar.inputs = &apply.Inputs{Digest: d, Paths: paths}
	}
}

// noteRefs records, in reads, the secret references in v (values, an
// object): a ref+sops file is a path the render read; a ref+vault secret
// may change without a commit, so it makes the inputs uncertain.
func noteRefs(reads *render.Reads, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			noteRefs(reads, e)
		}
	case []any:
		for _, e := range x {
			noteRefs(reads, e)
		}
	case string:
		if !strings.Contains(x, "ref+") {
			return
		}
		refs, err := secrets.FindRefs(x)
		if err != nil {
			reads.Uncertain("a secret reference that does not parse")
			return
		}
		for _, r := range refs {
			switch r.Backend {
			case secrets.BackendSOPS:
				reads.Add(render.ReadFile, strings.TrimPrefix(r.Path, "/"))
			default:
				reads.Uncertain("a " + r.Backend + " secret")
			}
		}
	}
}

// unchangedReport is the report of an apply of an app planned unchanged:
// nothing written, every object unchanged.
func unchangedReport(p *apply.Plan) *apply.Report {
	rep := &apply.Report{Plan: p}
	for _, c := range p.Changes {
		rep.Results = append(rep.Results, apply.Result{ID: c.ID, Origin: c.Origin, Action: apply.Unchanged})
	}
	return rep
}

// InputsUnchanged reports whether the inputs of app a in snap are in, the
// inputs its last successful apply recorded (apply.Inventory.Inputs): a
// render would then produce the objects that run applied. Nil inputs, or
// a path that cannot be hashed, are a change. The reconciler asks this
// for every app of a new revision, from one snapshot whose hashes all
// apps share.
func InputsUnchanged(snap *source.Snapshot, opts Options, a config.ResolvedApp, in *apply.Inputs) bool {
	if in == nil {
		return false
	}
	d, err := appDigest(&opts, snap, a, in.Paths)
	return err == nil && d == in.Digest
}
