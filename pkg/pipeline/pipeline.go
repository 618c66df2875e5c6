// Package pipeline wires deliver's stages for one run: pin the desired state
// (a working tree or a git commit), read deliver.yaml, resolve secrets,
// render every app, then plan or apply each app against the cluster in
// dependsOn order. The CLI, CI and the in-cluster reconciler all go through
// here, so what the laptop diff shows is what CI will do.
package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// Options describe one run.
type Options struct {
	// Path is a local working tree, used as it is on disk. Default ".".
	// Ignored when Repo is set.
	Path string
	// Repo and Ref name a git repository and ref to fetch instead.
	Repo, Ref string
	// Auth are the git credentials for Repo.
	Auth source.Auth
	// CacheDir is the git cache (see source.Options).
	CacheDir string
	// RequireClean refuses a local working tree with uncommitted changes.
	RequireClean bool
	// ConfigFile is deliver.yaml's path inside the repository.
	ConfigFile string
	// Env selects an environment of deliver.yaml.
	Env string
	// Apps limits the run to these apps (and fails on unknown names).
	Apps []string
	// Manifests, when set, delivers this path of plain manifests as one
	// app named App in Namespace, without a deliver.yaml.
	Manifests string
	App       string
	Namespace string

	// Kube returns the client config for a kubeconfig context ("" for the
	// current one). Not needed for Render, nor when Session is set.
	Kube func(kubeContext string) (*rest.Config, error)
	// Session is the cluster session every app of the run applies
	// through: its clients, API discovery and RESTMapper are shared by all
	// the apps. Default: one session made per run, from Kube, and shared
	// by all apps of the run; a process that runs again and again (the
	// reconciler) passes its own, made once, so that it discovers once
	// for its lifetime and not once per run. A Session set is the
	// cluster: deliver.yaml's kubeconfig context is not looked up.
	Session *apply.Session
	// Apply configures the apply stage; DefaultNamespace, Timeout and
	// HookTimeout are set per app from deliver.yaml.
	Apply apply.Options
	// FullDryRun dry-runs every object instead of trusting the inventory.
	// It implies ForceRender.
	FullDryRun bool
	// UnlessDelivered skips, with apply.ErrDelivered as the app's error,
	// an app whose inventory records a successful run of the revision
	// (checked under the app's lock): see apply.PlanOptions.
	UnlessDelivered bool
	// ForceRender renders every app, also those whose inputs (see
	// inputs.go) are those of their last successful run, which are
	// otherwise planned from their inventory without a render.
	ForceRender bool
	// Snapshot, when set, is the pinned source to deliver instead of
	// fetching Path or Repo: the caller fetched it, shares it between runs
	// and closes it after them (the reconciler: one tree, and one hashing
	// of its files, for every app of a revision).
	Snapshot *source.Snapshot
	// Config, when set with Snapshot, is deliver.yaml as LoadConfig read
	// it from Snapshot with these options, Apps aside: the run selects
	// its apps from it instead of reading and parsing the file again (the
	// reconciler's runs of one commit share one). It is not changed.
	Config *config.Resolved
	// Wait, when set, overrides every app's wait setting; Apply.Timeout,
	// when set, every app's wait timeout.
	Wait *bool
	// RollbackOnFailure, when set, overrides every app's setting.
	RollbackOnFailure *bool
	// Parallel bounds the apps delivered at once. Default 16: the
	// session's budget of requests in flight (apply.SessionOptions
	// MaxInFlight) bounds the load on the API server whatever the number
	// of apps, so this only bounds the renders and plans under way.
	Parallel int
	// KubeVersion is the Kubernetes version Helm charts see when rendering
	// offline (Render), as `helm template --kube-version`. Default
	// render.DefaultKubeVersion. Diff and Apply render for the cluster
	// instead: charts see its version and API versions, as with `helm
	// upgrade` (see clusterCaps).
	KubeVersion string
	// APIVersions are added to what Helm charts see in
	// .Capabilities.APIVersions when rendering offline (Render), as `helm
	// template --api-versions`; Diff and Apply see the cluster's.
	APIVersions []string

	// Change windows (docs/windows.md).
	// IgnoreWindows lets Apply deliver apps that a change window of
	// deliver.yaml holds; without it Apply refuses the run, before
	// writing anything, when a window holds any of its apps. Diff never
	// refuses: AppResult.Held notes the holds.
	IgnoreWindows bool
	// Now is the time the windows are checked at. Default time.Now.
	Now func() time.Time

	// RemoveOnly, when set, limits the apps that left deliver.yaml which
	// Remove (with no Apps) and a run with config.PruneApps remove to
	// those it returns true for: a sharded reconciler's own. Default:
	// all.
	RemoveOnly func(app string) bool
	// RemovePolicy, when set, is the deletion policy of Remove and
	// PlanRemove instead of the one each app's inventory records
	// (deliver delete --deletion-policy): an app that left deliver.yaml
	// has no settings left to change. Default: the recorded one.
	RemovePolicy apply.DeletionPolicy

	// Secrets configures SOPS keys and Vault.
	Secrets SecretsOptions
	// Vault, when set, is the Vault login the run uses, shared with
	// other runs (NewVaultSession); the run neither logs in nor closes
	// it. Default nil: a run logs in when VAULT_ADDR is set, and ends
	// that login at its end.
	Vault *VaultSession
	// Redactor masks every secret value in output; one is made if nil.
	Redactor *secrets.Redactor
	// Log receives progress; default: discard.
	Log *slog.Logger
	// TracerProvider receives a trace per run: a span for the run and
	// one per stage, app and apply step (see trace.go). Default:
	// otel.GetTracerProvider(), a no-op unless the program set one.
	TracerProvider trace.TracerProvider
}

// SecretsOptions say where secret keys come from.
type SecretsOptions struct {
	// AgeKeyFiles and PGPKeyFiles hold private keys for SOPS.
	AgeKeyFiles []string
	PGPKeyFiles []string
	// Getenv reads SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and the VAULT_*
	// variables; nil means os.Getenv.
	Getenv func(string) string
	// VaultAuth logs in to Vault; the zero value uses VAULT_TOKEN or
	// ~/.vault-token. Vault is used when VAULT_ADDR is set.
	VaultAuth secrets.VaultAuth
}

// Result is the outcome of a run.
type Result struct {
	// Revision is the commit delivered; Dirty is set for a working tree
	// with uncommitted changes.
	Revision string `json:"revision"`
	Dirty    bool   `json:"dirty,omitempty"`
	// Environment is the deliver.yaml environment used.
	Environment string `json:"environment,omitempty"`
	// Apps are in deliver.yaml order.
	Apps []*AppResult `json:"apps"`
}

// AppResult is the outcome for one app.
type AppResult struct {
	Name      string        `json:"name"`
	Namespace string        `json:"namespace"`
	Set       *object.Set   `json:"-"`
	Plan      *apply.Plan   `json:"plan,omitempty"`
	Report    *apply.Report `json:"report,omitempty"`
	Error     string        `json:"error,omitempty"`
	Skipped   string        `json:"skipped,omitempty"`
	// Suspended reports an app that deliver.yaml suspends (suspend: true):
	// not rendered nor planned; Skipped says so, and its dependents are
	// skipped naming it, without an error.
	Suspended bool `json:"suspended,omitempty"`
	// Removed reports an app that left deliver.yaml, removed from the
	// cluster (Remove, or a run with config.PruneApps) or, in a diff,
	// planned to be: its Plan deletes its objects.
	Removed bool `json:"removed,omitempty"`
	// Unchanged reports an app whose inputs were those of its last
	// successful run and whose objects were as deliver left them: it
	// was planned from its inventory, not rendered.
	Unchanged bool          `json:"unchanged,omitempty"`
	Duration  time.Duration `json:"duration"`
	err       error
	app       config.ResolvedApp
	mgr       *apply.Manager // made before rendering, to read the cluster meanwhile
	steps     *stepSpans
	reads     *render.Reads // what its render read
	vault     *vaultRefs    // the Vault secrets its refs name
	inputs    *apply.Inputs // recorded by a successful apply
	// deps are the apps of the run it depends on, directly or not.
	deps []*AppResult
	// runVars are the post-build variables it took from the renders of
	// deps (postBuild): its inputs are recorded once they are applied.
	runVars []runVars

	// Change windows (docs/windows.md).
	// Held says which window holds the app and until when: Apply refused
	// the run, or applied with Options.IgnoreWindows; Diff only notes it.
	Held string `json:"held,omitempty"`
}

// Err joins the errors of every app.
func (r *Result) Err() error {
	var errs []error
	for _, a := range r.Apps {
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	return errors.Join(errs...)
}

// HasChanges reports whether any app's plan would change the cluster.
func (r *Result) HasChanges() bool {
	for _, a := range r.Apps {
		if a.Plan != nil && (a.Plan.HasChanges() || hooksWouldRun(a.Plan)) {
			return true
		}
	}
	return false
}

func hooksWouldRun(p *apply.Plan) bool {
	for _, h := range p.Hooks {
		if h.Run {
			return true
		}
	}
	return false
}

func (o *Options) defaults() {
	if o.Path == "" {
		o.Path = "."
	}
	if o.ConfigFile == "" {
		o.ConfigFile = config.FileName
	}
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.Secrets.Getenv == nil {
		o.Secrets.Getenv = os.Getenv
	}
	if o.Redactor == nil {
		o.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.App == "" {
		o.App = "default"
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
}

// mode is what a run does after rendering.
type mode int

const (
	modeRender mode = iota
	modeDiff
	modeApply
)

// Render renders every app without touching a cluster.
func Render(ctx context.Context, opts Options) (*Result, error) { return run(ctx, opts, modeRender) }

// Diff renders every app and plans it against the cluster. It never writes.
func Diff(ctx context.Context, opts Options) (*Result, error) { return run(ctx, opts, modeDiff) }

// Apply renders and applies every app in dependsOn order: hooks, strategy,
// prune and wait as deliver.yaml says. A failed app stops the apps that
// depend on it; independent apps still finish.
func Apply(ctx context.Context, opts Options) (*Result, error) { return run(ctx, opts, modeApply) }

func run(ctx context.Context, opts Options, m mode) (res *Result, err error) {
	opts.defaults()
	ctx, span := startSpan(ctx, &opts, "deliver."+m.String())
	defer func() { endRun(span, opts.Redactor, res, err) }()
	defer func() {
		// Whatever failed, no secret value leaves in an error.
		if err != nil {
			err = opts.Redactor.Error(err)
		}
	}()
	snap := opts.Snapshot
	if snap == nil {
		fctx, fspan := startSpan(ctx, &opts, "fetch")
		snap, err = source.Fetch(fctx, fetchOptions(&opts))
		endSpan(fspan, opts.Redactor, err)
		if err != nil {
			return nil, err
		}
		defer snap.Close()
	}
	cfg, err := loadConfig(snap, opts)
	if err != nil {
		return nil, err
	}
	res = &Result{Revision: snap.Commit, Environment: cfg.Environment}
	if cfg.InventoryNamespace != "" {
		// The environment keeps its inventories apart (docs/clusters.md).
		opts.Apply.InventoryNamespace = cfg.InventoryNamespace
	}
	// Who delivers the apps, recorded in their inventories: a run of
	// another environment or repository does not take them over.
	ident := runIdentity(snap, opts, cfg.Environment)
	span.SetAttributes(runAttributes(res, len(cfg.Apps))...)
	opts.Log.Info("source pinned", "revision", snap.Commit, "apps", len(cfg.Apps))

	dctx, dspan := startSpan(ctx, &opts, "decrypt")
	sec, err := newSecrets(dctx, opts, snap.Dir)
	endSpan(dspan, opts.Redactor, err)
	if err != nil {
		return nil, err
	}
	defer sec.close()

	// Render everything first: bad input anywhere means nothing is applied.
	sess := opts.Session
	if m != modeRender {
		if sess, err = session(&opts, cfg.Context); err != nil {
			return nil, err
		}
	}
	byName := map[string]*AppResult{}
	for _, a := range cfg.Apps {
		ar := &AppResult{Name: a.Name, Namespace: a.Namespace, app: a}
		res.Apps = append(res.Apps, ar)
		byName[a.Name] = ar
	}
	for _, ar := range res.Apps {
		for _, d := range cfg.Dependencies(ar.Name) {
			ar.deps = append(ar.deps, byName[d])
		}
	}
	// Suspended apps and those that depend on them are neither rendered
	// nor planned (render mode renders them: it writes nothing).
	active := res.Apps
	if m != modeRender {
		active = suspend(res.Apps)
	}
	if err := checkWindows(&opts, cfg, active, m); err != nil {
		return nil, err
	}
	if m != modeRender {
		// What a plan reads before it can compare (inventory, discovery,
		// lists) is read while rendering. Apps that depend on others are
		// planned after those were applied, so they read when planned.
		// Apps that share namespaces share their lists.
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		names := make([]string, 0, len(active))
		for _, ar := range active {
			if len(ar.app.DependsOn) == 0 {
				names = append(names, ar.Name)
			}
		}
		lists := apply.NewSharedLists(names)
		for _, ar := range active {
			ar.steps = newStepSpans(&opts)
			ao := appManagerOptions(opts, ar, sec.redact, ar.steps)
			ao.Lists = lists
			// Checked when deliver.yaml was parsed; compiled again for
			// the list resolved with the defaults.
			if ao.Health, err = health.Compile("app "+strconv.Quote(ar.Name)+": healthChecks", ar.app.HealthChecks); err != nil {
				return nil, err
			}
			ar.mgr = apply.NewManager(sess, ao)
			if len(ar.app.DependsOn) == 0 {
				ar.mgr.Prefetch(pctx, apply.PlanOptions{App: ar.Name, FullDryRun: opts.FullDryRun})
			}
		}
	}
	caps := newClusterCaps(sess) // nil for render: offline, as helm template
	if m != modeRender && !opts.ForceRender && !opts.FullDryRun {
		planUnchanged(ctx, &opts, snap, sec, caps, ident, active)
	}
	err = renderAll(ctx, opts, snap.Dir, sec, caps, newDigestKey(ctx, &opts, active, m), active)
	if err == nil && m == modeApply {
		recordInputs(ctx, &opts, snap, sec, caps, active)
	}
	// The working tree's status was checked while rendering.
	res.Dirty = snap.Dirty()
	span.SetAttributes(attribute.Bool(attrDirty, res.Dirty))
	opts.Log.Info("rendered", "apps", len(res.Apps), "dirty", res.Dirty)
	if err != nil {
		return res, err
	}
	if m == modeRender {
		return res, nil
	}

	for _, level := range cfg.Levels() {
		var g errgroup.Group
		g.SetLimit(opts.Parallel)
		for _, a := range level {
			ar := byName[a.Name]
			if ar.Skipped != "" { // suspended
				traceSkipped(ctx, &opts, ar)
				continue
			}
			if dep := failedDependency(a, byName); dep != "" {
				ar.Skipped = fmt.Sprintf("dependency %s failed", dep)
				ar.err = fmt.Errorf("app %s: skipped: %s", a.Name, ar.Skipped)
				ar.Error = ar.err.Error()
				traceSkipped(ctx, &opts, ar)
				continue
			}
			g.Go(func() error {
				start := time.Now()
				if m == modeApply && len(ar.runVars) > 0 {
					// Its dependencies are applied now.
					runInputs(ctx, &opts, snap, sec, caps, ar)
				}
				ar.err = deliverApp(ctx, opts, snap.Commit, ident, ar, m)
				ar.Duration = time.Since(start)
				if ar.err != nil {
					ar.err = opts.Redactor.Error(fmt.Errorf("app %s: %w", a.Name, ar.err))
					ar.Error = ar.err.Error()
				}
				return nil // each app's error is its own: the others go on
			})
		}
		_ = g.Wait()
	}
	if cfg.PruneApps && len(opts.Apps) == 0 && opts.Manifests == "" && res.Err() == nil {
		// Apps that left deliver.yaml go once every listed app was
		// delivered (planned, in a diff): an object one of them moved
		// to a listed app has been taken over by then, and is kept.
		mgr := apply.NewManager(sess, removeManagerOptions(&opts))
		names, err := orphans(ctx, mgr, ident, listedApps(cfg), opts.RemoveOnly)
		switch {
		case errors.Is(err, errUnknownRepository):
			opts.Log.Warn("pruneApps: apps that left deliver.yaml are not removed", "reason", err)
		case err != nil:
			return res, fmt.Errorf("pruneApps: %w", err)
		}
		res.Apps = append(res.Apps, removeApps(ctx, &opts, mgr, snap.Commit, ident, names, m)...)
	}
	return res, nil
}

// fetchOptions are the source options of a run that fetches its source.
func fetchOptions(opts *Options) source.Options {
	return source.Options{
		URL: cmp.Or(opts.Repo, opts.Path), Ref: opts.Ref, Auth: opts.Auth,
		CacheDir: opts.CacheDir, RequireClean: opts.RequireClean,
	}
}

// session is the cluster session of a run: Options.Session, or one made
// from Options.Kube for the kubeconfig context kubeContext.
func session(opts *Options, kubeContext string) (*apply.Session, error) {
	if opts.Session != nil {
		return opts.Session, nil
	}
	if opts.Kube == nil {
		return nil, errors.New("no cluster configured")
	}
	restCfg, err := opts.Kube(kubeContext)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return apply.NewSession(restCfg, apply.SessionOptions{})
}

func failedDependency(a config.ResolvedApp, byName map[string]*AppResult) string {
	for _, d := range a.DependsOn {
		if dep, ok := byName[d]; ok && dep.err != nil {
			return d
		}
	}
	return ""
}

// deliverApp plans (and in apply mode executes) one app as ident.
func deliverApp(ctx context.Context, opts Options, revision string, ident *apply.Identity, ar *AppResult, m mode) (err error) {
	ctx, span := startApp(ctx, &opts, ar)
	defer func() { endApp(span, opts.Redactor, ar, err) }()
	wait, rollback := ar.app.Wait, ar.app.RollbackOnFailure
	if opts.Wait != nil {
		wait = *opts.Wait
	}
	if opts.RollbackOnFailure != nil {
		rollback = *opts.RollbackOnFailure
	}
	steps := ar.steps
	steps.ctx = ctx
	mgr := ar.mgr
	if ar.Unchanged {
		// Planned from the inventory: every object is as the last
		// successful run left it, and that run's inputs are this one's.
		if m == modeApply {
			ar.Report = unchangedReport(ar.Plan)
			opts.Log.Info("unchanged", "app", ar.Name, "report", ar.Report.Summary())
			return mgr.WaitUnchanged(ctx, ar.Plan)
		}
		return nil
	}
	strategy, err := apply.ParseStrategy(ar.app.Strategy)
	if err != nil {
		return err
	}
	deletion, err := apply.ParseDeletionPolicy(ar.app.DeletionPolicy, ar.app.Prune)
	if err != nil {
		return err
	}
	po := apply.PlanOptions{
		App: ar.Name, Revision: revision, FullDryRun: opts.FullDryRun, Strategy: strategy, Wait: wait,
		RollbackOnFailure: rollback && wait, NoPrune: !ar.app.Prune, DeletionPolicy: deletion, UnlessDelivered: opts.UnlessDelivered,
		Identity: ident,
		Inputs:   ar.inputs,
		Ignore:   ignoreRules(ar.app.IgnoreDifferences),
	}
	if ar.app.CreateNamespace {
		po.CreateNamespace = ar.app.Namespace
	}
	po.WaitFor = waitForObjects(ar.app)
	if m != modeApply {
		pctx, pspan := startSpan(ctx, &opts, "diff")
		ar.Plan, err = mgr.Plan(pctx, ar.Set, po)
		if err == nil {
			// The diff shows the conflicts; the run fails as apply would.
			err = ar.Plan.ConflictErr()
		}
		endSpan(pspan, opts.Redactor, err)
		return err
	}
	// Plan and execute under the app's lock, so that a run of CI and one
	// of the reconciler never interleave.
	opts.Log.Info("applying", "app", ar.Name)
	steps.begin()
	rep, err := mgr.Apply(ctx, ar.Set, po)
	steps.end(err)
	ar.Report = rep
	if rep != nil {
		if rep.AdoptedFrom != nil {
			opts.Log.Info("adopted", "app", ar.Name, "from", rep.AdoptedFrom.String(), "by", ident.String())
		}
		opts.Log.Info("applied", "app", ar.Name, "report", rep.Summary(), "duration", rep.Duration.Round(time.Millisecond))
	}
	return err
}

// ignoreRules are an app's ignore rules (the defaults' and its own, as
// config.ForEnvironment resolved them) as the plan takes them.
func ignoreRules(rules []config.IgnoreRule) []apply.IgnoreRule {
	out := make([]apply.IgnoreRule, len(rules))
	for i, r := range rules {
		out[i] = apply.IgnoreRule{Group: r.Group, Kind: r.Kind, Name: r.Name, Namespace: r.Namespace, JSONPointers: r.JSONPointers}
	}
	return out
}

// appManagerOptions are the apply options of one app: the run's, with the
// app's namespace and timeouts, the run's redaction and the app's spans.
func appManagerOptions(opts Options, ar *AppResult, redact func(string) string, steps *stepSpans) apply.Options {
	ao := opts.Apply
	ao.DefaultNamespace = ar.app.Namespace
	if ao.Timeout == 0 {
		ao.Timeout = ar.app.WaitTimeout
	}
	ao.HookTimeout = ar.app.HookTimeout
	// force: true in deliver.yaml, or --recreate for the whole run.
	ao.Recreate = ao.Recreate || ar.app.Force
	// Per-app identity: the app's objects are requested as its
	// ServiceAccount, in its namespace (DefaultNamespace above).
	ao.ServiceAccountName = ar.app.ServiceAccountName
	ao.Redact = redact
	ao.Progress = steps.progress(ao.Progress)
	return ao
}

// waitForObjects are the objects of app a's waitFor, in its namespace
// unless they name one (apply clears it for a cluster-scoped kind).
func waitForObjects(a config.ResolvedApp) []*object.Object {
	var out []*object.Object
	for _, r := range a.WaitFor {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(r.APIVersion)
		u.SetKind(r.Kind)
		u.SetName(r.Name)
		u.SetNamespace(cmp.Or(r.Namespace, a.Namespace))
		out = append(out, &object.Object{Unstructured: u, Origin: object.Origin{App: a.Name, File: "deliver.yaml"}})
	}
	return out
}
