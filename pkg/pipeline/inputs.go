package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/deliverhq/deliver/internal/version"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// An app's inputs are what its desired objects are made from: its
// resolved configuration (values, set, environment overrides, namespace,
// strategy...), deliver's own version, the parts of the cluster a Helm
// chart consulted (.Capabilities: the server's version, its API versions;
// see clusterCaps), the versions of the ConfigMaps and Secrets a post-build
// read its variables from (uid and resourceVersion, from their metadata:
// never their data), and the content of every path its render read in the repository (files,
// folder listings, existence checks: render.Reads), SOPS files included
// (their encrypted content). A successful apply records their digest and
// paths in the app's inventory. The next run recomputes the digest from
// those paths in its own snapshot, each hashed once per snapshot whatever
// the number of apps that read it, and an app whose digest is unchanged
// and whose objects are as deliver left them is planned from its inventory
// (apply.Manager.PlanUnchanged): no render, no dry run.
//
// A Vault KV v2 secret the render resolved a ref+vault with counts by its
// path and version number (apply.Inputs.Vault), never by its values: the
// version comes in the same answer as the values the render read (a
// version read apart could be that of a put made meanwhile, whose value
// was not applied, and the next run would skip it), and the next run reads
// each recorded secret's current version from its metadata, once per path
// per run, into the digest it compares. A new version (kv put) renders the
// app; so does a metadata read that fails (no read permission on the
// mount's metadata/ path, Vault down, a deleted current version): any
// doubt renders. The reconciler checks the versions too before it skips an
// app on a new commit (InputsCheck); between commits, its resync interval
// bounds how late a new version is applied.
//
// Whatever the digest cannot see makes the app render every time: a
// secret of a KV v1 mount or of another Vault engine (no version tells
// that it changed), a remote kustomize base, a chart from a repository at
// a version that is not exact. Secret values are never hashed: SOPS files
// count by their encrypted bytes.

// inputsFormat names what the digest covers; changing it makes every
// recorded digest differ, so that nothing recorded before is trusted.
// 2: Vault secret versions. 3: the parts of the cluster's capabilities a
// chart consulted (render.ReadCluster). 4: the versions of the objects a
// post-build read (render.ReadObject).
const inputsFormat = "deliver-inputs/4"

// appDigest returns the digest of app a's inputs in snap, reading the
// paths recorded by a render, with the given versions of its Vault
// secrets and the capabilities of the cluster (caps) for the parts a chart
// consulted (render.ReadCluster paths). A file the render read whole counts by the blob id it recorded
// while reading (render.Reads.Sum: the bytes it used, and no second read
// of every file); sums is nil before a render.
func appDigest(ctx context.Context, opts *Options, snap *source.Snapshot, caps *clusterCaps, a config.ResolvedApp, paths []string, vault []apply.VaultVersion, sums *render.Reads) (string, error) {
	h := sha256.New()
	// Suspension says whether the app is delivered, not what: resuming
	// an app whose inputs did not change needs no render.
	a.Suspend = false
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
		if obj, ok := strings.CutPrefix(p, render.ReadObject); ok {
			v, ok := sums.Sum(p) // the version the render read
			if !ok {
				var err error
				if v, err = caps.objectVersion(ctx, a, obj); err != nil {
					return "", fmt.Errorf("inputs of app %s: %w", a.Name, err)
				}
			}
			fmt.Fprintf(h, "%s\x00%s\n", p, v)
			continue
		}
		if part, ok := strings.CutPrefix(p, render.ReadCluster); ok {
			v, err := caps.part(ctx, part)
			if err != nil {
				return "", fmt.Errorf("inputs of app %s: %w", a.Name, err)
			}
			fmt.Fprintf(h, "%s\x00%s\n", p, v)
			continue
		}
		sum, ok := sums.Sum(p)
		if !ok {
			var err error
			if sum, err = snap.InputHash(p); err != nil {
				return "", fmt.Errorf("inputs of app %s: %w", a.Name, err)
			}
		}
		fmt.Fprintf(h, "%s\x00%s\n", p, sum)
	}
	for _, v := range vault {
		fmt.Fprintf(h, "vault:%s\x00%d\n", v.Path, v.Version)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// sameInputs reports whether in are the inputs of app a in snap: the
// digest of the recorded paths, hashed in snap, and of the current
// versions of the recorded Vault secrets, read through res, and of the
// parts of the cluster's capabilities (caps) a chart consulted is the
// recorded one. A version or capabilities that cannot be read are a
// change, and so is any Vault secret when res is nil.
func sameInputs(ctx context.Context, opts *Options, snap *source.Snapshot, res *secrets.Resolver, caps *clusterCaps, a config.ResolvedApp, in *apply.Inputs) bool {
	var cur []apply.VaultVersion
	for _, v := range in.Vault {
		if res == nil {
			return false
		}
		n, err := res.CurrentVaultVersion(ctx, v.Path)
		if err != nil {
			opts.Log.Debug("inputs: vault secret version unknown: rendering", "app", a.Name, "path", v.Path, "err", opts.Redactor.Error(err))
			return false
		}
		if n != v.Version {
			opts.Log.Info("inputs: vault secret has a new version: rendering", "app", a.Name, "path", v.Path, "recorded", v.Version, "current", n)
		}
		cur = append(cur, apply.VaultVersion{Path: v.Path, Version: n})
	}
	d, err := appDigest(ctx, opts, snap, caps, a, in.Paths, cur, nil)
	if err != nil {
		opts.Log.Debug("inputs: rendering", "app", a.Name, "err", opts.Redactor.Error(err))
	}
	return err == nil && d == in.Digest
}

// planUnchanged plans, from their inventories, the apps whose inputs are
// those of their last successful run and whose objects are as deliver
// left them, and marks them Unchanged: they are not rendered. Any doubt
// (an error included) leaves an app to be rendered.
func planUnchanged(ctx context.Context, opts *Options, snap *source.Snapshot, sec *runSecrets, caps *clusterCaps, ident *apply.Identity, apps []*AppResult) {
	var g errgroup.Group
	g.SetLimit(opts.Parallel)
	for _, ar := range apps {
		if ar.mgr == nil {
			continue
		}
		g.Go(func() error {
			same := func(in *apply.Inputs) bool {
				return sameInputs(ctx, opts, snap, sec.resolver, caps, ar.app, in)
			}
			p, err := ar.mgr.PlanUnchanged(ctx, apply.PlanOptions{App: ar.Name, Revision: snap.Commit, Identity: ident, WaitFor: waitForObjects(ar.app)}, same)
			if err != nil {
				opts.Log.Debug("render: no unchanged plan", "app", ar.Name, "err", opts.Redactor.Error(err))
				return nil // any doubt renders the app
			}
			if p != nil {
				ar.Plan, ar.Unchanged = p, true
			}
			return nil
		})
	}
	_ = g.Wait()
	for _, ar := range apps {
		if ar.Unchanged {
			opts.Log.Info("inputs unchanged: not rendered", "app", ar.Name, "objects", len(ar.Plan.Changes))
		}
	}
}

// recordInputs computes, after rendering, the inputs an apply records for
// each rendered app (appInputs); an app whose post-build took variables
// from a dependency's render gets them from runInputs once that
// dependency is applied.
func recordInputs(ctx context.Context, opts *Options, snap *source.Snapshot, sec *runSecrets, caps *clusterCaps, apps []*AppResult) {
	for _, ar := range apps {
		if len(ar.runVars) == 0 {
			ar.inputs = appInputs(ctx, opts, snap, sec, caps, ar)
		}
	}
}

// appInputs are the inputs of rendered app ar, with the version of each
// Vault secret its refs were resolved from (sec) and the cluster its
// charts saw (caps); none for an app planned from its inventory, one whose
// render depended on something outside the repository that has no
// version, or for a dirty working tree (it may change before the next run
// reads it again).
func appInputs(ctx context.Context, opts *Options, snap *source.Snapshot, sec *runSecrets, caps *clusterCaps, ar *AppResult) *apply.Inputs {
	if snap.Local && snap.Dirty() || ar.Unchanged || ar.reads == nil {
		return nil
	}
	if why := ar.reads.UncertainReason(); why != "" {
		opts.Log.Debug("inputs not recorded", "app", ar.Name, "reason", why)
		return nil
	}
	vault, ok := vaultVersions(sec, ar.vault.paths())
	if !ok {
		opts.Log.Debug("inputs not recorded", "app", ar.Name, "reason", "a vault secret without versions (not kv v2)")
		return nil
	}
	paths := ar.reads.Paths()
	d, err := appDigest(ctx, opts, snap, caps, ar.app, paths, vault, ar.reads)
	if err != nil {
		opts.Log.Debug("inputs not recorded", "app", ar.Name, "err", err)
		return nil
	}
	return &apply.Inputs{Digest: d, Paths: paths, Vault: vault}
}

// runInputs records, before app ar is applied and after its dependencies
// were, the inputs of an app whose post-build took variables from objects
// its dependencies rendered (ar.runVars): each object is read now, as the
// app's identity, and counts by the version read, as if the post-build had
// read it, when its variables are those the render used. Otherwise (an
// object another writer changed, or gave more keys) no inputs are
// recorded, and the next run renders the app.
func runInputs(ctx context.Context, opts *Options, snap *source.Snapshot, sec *runSecrets, caps *clusterCaps, ar *AppResult) {
	lookup := sec.lookup(ar.mgr)
	if lookup == nil || ar.reads == nil {
		return
	}
	for _, rv := range ar.runVars {
		u, data, err := liveData(ctx, lookup.Client, rv.obj, sec)
		if err != nil || !maps.Equal(data, rv.vars) {
			opts.Log.Debug("inputs not recorded", "app", ar.Name, "object", rv.obj.String(),
				"reason", "not as app "+rv.app+" rendered it", "err", opts.Redactor.Error(err))
			return
		}
		ar.reads.AddObject(rv.obj.String(), render.ObjectVersion(string(u.GetUID()), u.GetResourceVersion()))
	}
	ar.inputs = appInputs(ctx, opts, snap, sec, caps, ar)
}

// vaultVersions returns the versions of the Vault secrets at paths whose
// values the render resolved refs with; false when one has no version.
func vaultVersions(sec *runSecrets, paths []string) ([]apply.VaultVersion, bool) {
	var out []apply.VaultVersion
	for _, p := range paths {
		n, ok := sec.resolver.VaultVersion(p)
		if !ok {
			return nil, false
		}
		out = append(out, apply.VaultVersion{Path: p, Version: n})
	}
	return out, true
}

// vaultRefs are the Vault paths an app's refs name. The zero value is
// ready; a nil *vaultRefs records nothing. It is safe for concurrent use.
type vaultRefs struct {
	mu sync.Mutex
	m  map[string]bool
}

func (v *vaultRefs) add(p string) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]bool{}
	}
	v.m[strings.Trim(p, "/")] = true
}

// paths returns the paths, sorted.
func (v *vaultRefs) paths() []string {
	if v == nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]string, 0, len(v.m))
	for p := range v.m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// noteRefs records the secret references in v (values, an object): a
// ref+sops file is a path the render read, in reads; a ref+vault secret
// may change without a commit, so its path goes to vault, and the inputs
// recorded after the render hold the version the render read.
func noteRefs(reads *render.Reads, vault *vaultRefs, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			noteRefs(reads, vault, e)
		}
	case []any:
		for _, e := range x {
			noteRefs(reads, vault, e)
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
			case secrets.BackendVault:
				vault.add(r.Path)
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

// InputsCheck tells, for the apps of one snapshot, whether the inputs
// their last successful apply recorded (apply.Inventory.Inputs) are still
// theirs: a render would then produce the objects that run applied. The
// reconciler asks it for every app of a new revision: the snapshot's
// hashes are shared by all apps, and so is the current version of each
// Vault secret, read once per check, through one Vault login made when
// the first app that needs it asks. It is safe for concurrent use; Close
// it when done.
type InputsCheck struct {
	snap *source.Snapshot
	opts Options
	caps *clusterCaps

	once  sync.Once
	vault *secrets.Vault
	res   *secrets.Resolver
}

// NewInputsCheck returns a check of inputs against snap, for apps of
// opts (its Secrets settings say where Vault is, its Session the cluster
// whose capabilities Helm apps see; without one, a Helm app that
// recorded the cluster's is a change).
func NewInputsCheck(snap *source.Snapshot, opts Options) *InputsCheck {
	opts.defaults()
	caps := newClusterCaps(opts.Session)
	if caps != nil {
		caps.versions = map[[2]string]string{} // one point in time for every app
		caps.fresh = true
	}
	return &InputsCheck{snap: snap, opts: opts, caps: caps}
}

// Unchanged reports whether in are the inputs of app a. Nil inputs, a
// path that cannot be hashed, a Vault secret whose version cannot be read
// (Vault not configured or failing included) are a change.
func (c *InputsCheck) Unchanged(ctx context.Context, a config.ResolvedApp, in *apply.Inputs) bool {
	if in == nil {
		return false
	}
	if len(in.Vault) > 0 {
		c.once.Do(func() {
			v, owned, err := runVault(ctx, c.opts)
			if err != nil {
				c.opts.Log.Debug("inputs: vault: rendering the apps that read it", "err", c.opts.Redactor.Error(err))
			}
			if owned {
				c.vault = v // closed with the check
			}
			c.res = secrets.NewResolver(secrets.ResolverOptions{Vault: v, Redactor: c.opts.Redactor})
		})
	}
	return sameInputs(ctx, &c.opts, c.snap, c.res, c.caps, a, in)
}

// OutsideGit reports whether in, the recorded inputs of app a, hold any
// that no commit changes: Vault secret versions, ConfigMaps and Secrets
// read from the cluster, the parts of the cluster's capabilities a chart
// consulted. Only such apps can need a run between two commits.
func OutsideGit(a config.ResolvedApp, in *apply.Inputs) bool {
	if in == nil {
		return false
	}
	if len(in.Vault) > 0 || len(a.ClusterRefs()) > 0 {
		return true
	}
	return slices.ContainsFunc(in.Paths, func(p string) bool {
		return strings.HasPrefix(p, render.ReadCluster) || strings.HasPrefix(p, render.ReadObject)
	})
}

// Close ends the Vault login the check made, if any (see
// secrets.Vault.Close).
func (c *InputsCheck) Close() {
	if c.vault != nil {
		c.vault.Close()
	}
}
