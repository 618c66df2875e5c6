package ui

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// ViewAuth is who may use a reconciler's view, a closed enum. The zero
// value is ViewAuthToken: a view nobody configured checks tokens.
type ViewAuth int

const (
	// ViewAuthToken checks a bearer token (header or sign-in cookie) with
	// a TokenReview in the reconciler's own cluster, and each app with
	// SubjectAccessReviews in the cluster holding its inventory Secret
	// (TokenGuard): whoever may get the inventory there with kubectl sees
	// the app, and whoever may patch it may act on it.
	ViewAuthToken ViewAuth = iota
	// ViewAuthNone trusts whoever reaches the address (LocalGuard, which
	// answers loopback requests only).
	ViewAuthNone
)

// String names the choice as --ui-auth does.
func (a ViewAuth) String() string {
	switch a {
	case ViewAuthToken:
		return "token"
	case ViewAuthNone:
		return "none"
	}
	return fmt.Sprintf("ViewAuth(%d)", int(a))
}

// ViewOptions configure a ReconcilerView.
type ViewOptions struct {
	// Reconcile are the reconciler's options. Its OnRun must be nil: the
	// view sets it to publish the runs. Its Pipeline.Redactor, when nil,
	// is created, and is the view's too: what a run saw stays masked on
	// the pages.
	Reconcile reconcile.Options
	// Environments, with more than one or with Clusters set, are
	// delivered by a reconcile.Clusters, each to its own cluster, and the
	// view shows them all, each read in its engine's current cluster.
	// Otherwise one Reconciler delivers Reconcile.Pipeline.Env.
	Environments []string
	// Clusters makes even a single environment a reconcile.Clusters'.
	Clusters bool
	// Auth is who may use the view when Guard is nil. Default
	// ViewAuthToken.
	Auth ViewAuth
	// Guard, when set, is used instead of the one Auth names.
	Guard Guard
	// Actions adds the buttons "reconcile now", "pin" and "unpin".
	Actions bool
	// ClusterName names a lone reconciler's cluster on the pages.
	// Default "in-cluster". An environment of a Clusters is named by its
	// cluster's description (its kubeconfig Secret, or "own cluster").
	ClusterName string
	// LocalUser is recorded as who pinned for a user without a name (a
	// LocalGuard's). Default "deliver reconcile --ui-addr".
	LocalUser string
	// PollInterval is Options.PollInterval. Default 2s.
	PollInterval time.Duration
	// Log receives the view's errors. Default: Reconcile.Log.
	Log *slog.Logger
}

// ReconcilerView is a reconciler, or a reconcile.Clusters of several
// environments, and the web view of its apps: the view reads the
// reconcilers' memory (their status, health checks and current target
// clusters) and publishes their runs as they start and end. Create it
// with NewReconcilerView, run both with Run.
type ReconcilerView struct {
	opts     ViewOptions
	one      *reconcile.Reconciler
	clusters *reconcile.Clusters
	engines  []*engineSource
	srv      *Server
	// published is srv once built: the reconcilers' hook reads it from
	// their goroutines, the constructor stores it after they exist.
	published atomic.Pointer[Server]
}

// NewReconcilerView returns the reconciler(s) of opts and their view; it
// starts nothing.
func NewReconcilerView(opts ViewOptions) (*ReconcilerView, error) {
	if opts.Reconcile.OnRun != nil {
		return nil, errors.New("ui: reconciler view: Reconcile.OnRun is the view's")
	}
	if opts.Reconcile.Pipeline.Redactor == nil {
		opts.Reconcile.Pipeline.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	opts.ClusterName = cmp.Or(opts.ClusterName, "in-cluster")
	opts.LocalUser = cmp.Or(opts.LocalUser, "deliver reconcile --ui-addr")
	if opts.Log == nil {
		opts.Log = opts.Reconcile.Log
	}
	v := &ReconcilerView{opts: opts}
	ro := opts.Reconcile
	ro.OnRun = v.onRun
	if opts.Clusters || len(opts.Environments) > 1 {
		if len(opts.Environments) == 0 {
			return nil, errors.New("ui: reconciler view: several clusters need the environments to deliver")
		}
		c, err := reconcile.NewClusters(ro, opts.Environments)
		if err != nil {
			return nil, err
		}
		v.clusters = c
		for i, r := range c.Engines() {
			v.engines = append(v.engines, &engineSource{r: r, env: opts.Environments[i]})
		}
	} else {
		if len(opts.Environments) == 1 {
			ro.Pipeline.Env = opts.Environments[0]
		}
		r, err := reconcile.New(ro)
		if err != nil {
			return nil, err
		}
		v.one = r
		v.engines = []*engineSource{{r: r, env: ro.Pipeline.Env, name: opts.ClusterName}}
	}
	var src interface {
		Source
		Actions
	}
	if len(v.engines) == 1 && v.clusters == nil {
		src = v.engines[0]
	} else {
		envs := make([]EnvSource, 0, len(v.engines))
		for _, e := range v.engines {
			envs = append(envs, EnvSource{Environment: e.env, Source: e, Actions: e})
		}
		s, err := NewSources(envs...)
		if err != nil {
			return nil, err
		}
		src = s
	}
	guard := opts.Guard
	if guard == nil {
		var err error
		if guard, err = v.guard(); err != nil {
			return nil, err
		}
	}
	so := Options{
		Guard: guard, Source: src, Redactor: ro.Pipeline.Redactor,
		LocalUser: opts.LocalUser, PollInterval: opts.PollInterval, Log: opts.Log,
	}
	if opts.Actions {
		so.Actions = src
	}
	srv, err := New(so)
	if err != nil {
		return nil, err
	}
	v.srv = srv
	v.published.Store(srv)
	return v, nil
}

// guard is the Guard opts.Auth names.
func (v *ReconcilerView) guard() (Guard, error) {
	switch v.opts.Auth {
	case ViewAuthNone:
		return LocalGuard{}, nil
	case ViewAuthToken:
		cs, err := kubernetes.NewForConfig(v.opts.Reconcile.Config)
		if err != nil {
			return nil, fmt.Errorf("ui: token guard: %w", err)
		}
		to := TokenGuardOptions{Client: cs}
		if v.clusters != nil {
			// The inventory Secret whose rights decide is in the
			// environment's cluster: that cluster is asked.
			to.Reviewer = v.reviewer
		}
		return NewTokenGuard(to)
	}
	return nil, fmt.Errorf("ui: reconciler view: auth %s", v.opts.Auth)
}

// reviewer is the client of the cluster holding app's inventory.
func (v *ReconcilerView) reviewer(_ context.Context, app AppRef) (kubernetes.Interface, string, error) {
	e := v.engine(app.Environment)
	if e == nil {
		return nil, "", fmt.Errorf("no environment %q", app.Environment)
	}
	c, err := e.cluster()
	if err != nil {
		return nil, "", err
	}
	return c.kube, c.opts.Config.Host, nil
}

// engine returns the engineSource of env, nil when none.
func (v *ReconcilerView) engine(env string) *engineSource {
	i := slices.IndexFunc(v.engines, func(e *engineSource) bool { return e.env == env })
	if i < 0 {
		return nil
	}
	return v.engines[i]
}

// onRun is the reconcilers' OnRun: the run published as an app of its
// engine's environment, in the inventory namespace it runs with now.
func (v *ReconcilerView) onRun(e reconcile.RunEvent) {
	s := v.published.Load()
	if s == nil {
		return // no run starts before the view exists; kept safe anyway
	}
	eng := v.engines[0]
	if v.clusters != nil {
		if eng = v.engine(e.Env); eng == nil {
			return
		}
	}
	_, invNS := eng.r.Target()
	s.ReconcilerHook(eng.env, invNS)(e)
}

// Handler is the view, for a caller that serves it itself (Run serves
// it on a listener).
func (v *ReconcilerView) Handler() http.Handler { return v.srv }

// Server is the view's Server.
func (v *ReconcilerView) Server() *Server { return v.srv }

// Reconcilers returns the reconciler, or the engines of the
// environments in the order given.
func (v *ReconcilerView) Reconcilers() []*reconcile.Reconciler {
	if v.clusters != nil {
		return v.clusters.Engines()
	}
	return []*reconcile.Reconciler{v.one}
}

// Statuses returns each environment's status (one for a lone
// reconciler).
func (v *ReconcilerView) Statuses() []reconcile.Status {
	if v.clusters != nil {
		return v.clusters.Statuses()
	}
	return []reconcile.Status{v.one.Status()}
}

// Run runs the reconciler(s) and serves the view on ln, with its live
// updates, until ctx is done, or until the reconciler returns (with
// Reconcile.Once): the view goes with it. With a nil ln it runs the live
// updates (Server.Watch) only, for a caller that serves Handler itself.
func (v *ReconcilerView) Run(ctx context.Context, ln net.Listener) error {
	g, gctx := errgroup.WithContext(ctx)
	gctx, cancel := context.WithCancel(gctx)
	defer cancel()
	g.Go(func() error {
		if ln == nil {
			v.srv.Watch(gctx)
			return nil
		}
		return v.srv.Serve(gctx, ln)
	})
	g.Go(func() error {
		defer cancel()
		if v.clusters != nil {
			return v.clusters.Run(gctx)
		}
		return v.one.Run(gctx)
	})
	return g.Wait()
}

// engineSource is the Source and Actions of one reconciler's apps: a
// Cluster on the cluster and inventory namespace it delivers to now,
// built again when they change (an engine of a Clusters restarts on
// another when its environment's kubeconfigSecret or inventoryNamespace
// changes), with the reconciler's memory as live status and its health
// checks.
type engineSource struct {
	r   *reconcile.Reconciler
	env string
	// name names the cluster on the pages; "": the engine's description
	// of it.
	name string

	mu    sync.Mutex
	cfg   *rest.Config
	invNS string
	cur   *Cluster
}

// errNoTarget: the engine's cluster never answered yet.
var errNoTarget = errors.New("its cluster has not answered yet")

// cluster returns the Cluster of the engine's current target.
func (e *engineSource) cluster() (*Cluster, error) {
	cfg, invNS := e.r.Target()
	if cfg == nil {
		return nil, fmt.Errorf("environment %s: %w", e.env, errNoTarget)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != nil && e.cfg == cfg && e.invNS == invNS {
		return e.cur, nil
	}
	scfg, sns, sname := e.r.StatusLocation()
	name := e.name
	if name == "" {
		name = cmp.Or(e.r.Status().Cluster, cfg.Host)
	}
	c, err := NewCluster(ClusterOptions{
		Config: cfg, Environment: e.env, ClusterName: name, InventoryNamespace: invNS,
		StatusConfig: scfg, StatusNamespace: sns, StatusName: sname,
		Live: e.r.Status, Health: e.r.HealthRules,
	})
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", e.env, err)
	}
	e.cfg, e.invNS, e.cur = cfg, invNS, c
	return c, nil
}

// Apps reads the engine's apps in its cluster. When that cluster cannot
// be read, the engine's own status still lists them, with the problem.
func (e *engineSource) Apps(ctx context.Context) ([]AppRow, error) {
	st := e.r.Status()
	var problems []string
	if st.ClusterError != "" {
		problems = append(problems, fmt.Sprintf("environment %s: %s", e.env, st.ClusterError))
	}
	c, err := e.cluster()
	var rows []AppRow
	if err == nil {
		if rows, err = c.apps(ctx, &st); err != nil {
			err = fmt.Errorf("environment %s: %w", e.env, err)
		}
	}
	if err != nil {
		if st.ClusterError == "" {
			problems = append(problems, err.Error())
		}
		rows = e.statusRows(st)
	}
	if len(problems) > 0 {
		return rows, &PartialError{Problems: problems}
	}
	return rows, nil
}

// statusRows are the apps of the engine's status alone, for a cluster
// that cannot be read.
func (e *engineSource) statusRows(st reconcile.Status) []AppRow {
	_, invNS := e.r.Target()
	if invNS == "" {
		_, invNS, _ = e.r.StatusLocation()
	}
	name := cmp.Or(e.name, st.Cluster)
	out := make([]AppRow, 0, len(st.Apps))
	for _, a := range st.Apps {
		out = append(out, AppRow{
			AppRef:  AppRef{Environment: e.env, Name: a.App, InventoryNamespace: invNS, InventoryName: inventoryName(a.App)},
			Cluster: name, Revision: a.Revision, Result: a.Result, Message: a.Message,
			Health: healthOf(a.Result, a.Drift), Drift: a.Drift, Pin: a.Pin, Held: a.Held, HeldUntil: a.HeldUntil,
			Suspended: a.Suspended || st.PausedAll, LastRun: a.LastRun, Duration: a.Duration,
		})
	}
	return out
}

// App reads ref in the engine's cluster; when that cluster cannot be
// read, the page has the app's status and says why nothing more.
func (e *engineSource) App(ctx context.Context, ref AppRef, red *secrets.Redactor) (*AppDetail, error) {
	c, err := e.cluster()
	if err == nil {
		return c.App(ctx, ref, red)
	}
	rows := e.statusRows(e.r.Status())
	i := slices.IndexFunc(rows, func(r AppRow) bool { return r.Name == ref.Name })
	if i < 0 {
		return nil, fmt.Errorf("app %s: %w", ref.Name, ErrNotFound)
	}
	return &AppDetail{AppRow: rows[i], Problems: []string{err.Error()}}, nil
}

// RequestReconcile asks the engine's reconciler to run (the control
// ConfigMap is in the reconciler's own cluster).
func (e *engineSource) RequestReconcile(ctx context.Context, ref AppRef) error {
	c, err := e.cluster()
	if err != nil {
		return fmt.Errorf("request reconcile of app %s: %w", ref.Name, err)
	}
	return c.RequestReconcile(ctx, ref)
}

// Pin pins ref in the engine's cluster.
func (e *engineSource) Pin(ctx context.Context, ref AppRef, by, reason string) error {
	c, err := e.cluster()
	if err != nil {
		return fmt.Errorf("pin app %s: %w", ref.Name, err)
	}
	return c.Pin(ctx, ref, by, reason)
}

// Suspend suspends or resumes ref in the engine's cluster.
func (e *engineSource) Suspend(ctx context.Context, ref AppRef, suspend bool) error {
	c, err := e.cluster()
	if err != nil {
		return fmt.Errorf("suspend app %s: %w", ref.Name, err)
	}
	return c.Suspend(ctx, ref, suspend)
}

// Unpin unpins ref in the engine's cluster.
func (e *engineSource) Unpin(ctx context.Context, ref AppRef) error {
	c, err := e.cluster()
	if err != nil {
		return fmt.Errorf("unpin app %s: %w", ref.Name, err)
	}
	return c.Unpin(ctx, ref)
}
