// Package reconcile keeps a cluster equal to git: the in-cluster,
// long-running form of deliver apply. A Reconciler fetches the repository
// every Interval (or at once when a webhook says a push happened), and runs
// the same pipeline as the CLI for each app whose commit moved, whose live
// objects drifted from what deliver last applied, or whose full resync is
// due. A failed app is retried with capped exponential backoff without
// holding up the others.
//
// A new commit runs only the apps whose inputs it changed: each
// successful run records in the app's inventory a digest of what its
// render read (files, folder listings, its configuration, deliver's
// version), and at a new commit the digest is recomputed from the
// commit's files, hashed once for all apps; an app whose digest is the
// same is delivered at the new commit without a run (status message and
// log reason "unchanged", metric deliver_reconcile_unchanged_total). Every
// run of one commit shares one snapshot of it. A full resync renders
// every app.
//
// The fast path: an app whose commit did not move costs no API request.
// Drift is noticed by metadata informers on the kinds in the apps'
// inventories (label deliver.dev/app), comparing each live object's
// resourceVersion and generation with what the inventory recorded when
// deliver applied it, and, for kinds compared by generation (which a
// label or annotation change does not move), the labels and annotations
// deliver owns in managedFields with what deliver left; a kubectl edit,
// label or annotate of what deliver set triggers a run of that app within
// about a second, and the run reverts it (self-heal, on by default).
//
// With leader election (a coordination.k8s.io Lease) only one of several
// replicas applies. Handler serves the push webhook (GitHub, GitLab,
// Gitea), Prometheus metrics and health probes. Each app's status is kept
// in the ConfigMap deliver-status, readable with kubectl.
package reconcile

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	notifications "github.com/deliverhq/deliver/pkg/notify"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// Options configure a Reconciler. Pipeline.Repo and Config are required;
// every other field has a default.
type Options struct {
	// Pipeline configures each run, as for deliver apply: Repo and Ref
	// (the ref followed; default the remote's HEAD), Env, Auth, CacheDir,
	// Secrets, Apply, Apps (only these apps), Manifests. Pipeline.Ref is
	// replaced by the commit each run delivers, so that every app of one
	// fetch gets the same commit. Pipeline.Kube is set from Config: a
	// reconciler delivers to the cluster it was given, whatever context an
	// environment of deliver.yaml names. Pipeline.Vault defaults to one
	// Vault login shared by every run of the Reconciler; Run ends that
	// login when it returns.
	Pipeline pipeline.Options
	// Config is the cluster to deliver to, watch and elect a leader on.
	Config *rest.Config

	// Interval is how often the repository is fetched (a no-change fetch
	// is one ls-remote). Default 1m.
	Interval time.Duration
	// Jitter spreads the fetches of many reconcilers: each wait is
	// Interval ± Jitter×Interval. Default 0.1; negative for none.
	Jitter float64
	// FullResync runs every app's pipeline this long after its last run
	// even when nothing moved, for what informers cannot see: a secret
	// changed in Vault, an object's label edited. Default 1h; negative
	// disables it.
	FullResync time.Duration
	// InputsInterval is how often the inputs of an app that no commit
	// changes are read again: the versions of the Vault secrets it
	// resolves and of the ConfigMaps and Secrets its helm.valuesFrom and
	// postBuild.substituteFrom read (those labelled LabelWatch are
	// watched as well, and run their readers at once). An app whose
	// inputs changed runs ("inputs outside git changed"), as a Flux
	// Kustomization or HelmRelease reads them again at each of its
	// intervals; the others cost a Vault metadata read per secret and a
	// metadata GET per object, not a render. Only apps delivered at the
	// head with recorded inputs are checked (the others run anyway), and
	// pinned ones are not. Default 10m; negative disables it.
	InputsInterval time.Duration
	// RetryBase and RetryMax bound the backoff of a failed app: the n-th
	// consecutive failure waits RetryBase×2^(n-1), at most RetryMax. A new
	// commit is tried at once whatever the backoff. Defaults 10s and 5m.
	RetryBase, RetryMax time.Duration
	// DisableSelfHeal only reports drift (log, metric, status) instead of
	// reverting it; it is reverted by the next commit or full resync.
	DisableSelfHeal bool
	// DriftSettle is how long a drift waits before it triggers a run, and
	// is then checked again, so that the watch events of deliver's own
	// writes, which may arrive after the run ended, are not taken for
	// drift. Default 1s.
	DriftSettle time.Duration
	// MaxConcurrentRuns bounds the apps delivered at once. Default 16
	// (see pipeline.Options.Parallel: the session's budget of requests in
	// flight bounds the load on the API server).
	MaxConcurrentRuns int
	// StatusNamespace holds the ConfigMap deliver-status and the leader
	// Lease. Default: Pipeline.Apply.InventoryNamespace, or
	// "deliver-system".
	StatusNamespace string

	// WebhookSecretFile holds the shared secret of the push webhook
	// (GitHub/Gitea HMAC key, GitLab token). Without it the webhook
	// endpoint answers 404.
	WebhookSecretFile string
	// Listen is the address Run serves Handler on (/webhook, /metrics,
	// /healthz, /readyz); empty: Run serves nothing.
	Listen string

	// LeaderElection makes several replicas safe: only the holder of a
	// Lease reconciles.
	LeaderElection LeaderElection
	// Sharding makes several replicas share the apps, each delivering its
	// own; not with LeaderElection.
	Sharding Sharding

	// Suspend pauses these apps, SuspendAll every app: no run at all,
	// whatever moved, until the reconciler restarts without them. The
	// annotation AnnotationSuspend on an app's inventory Secret pauses
	// one app without a restart.
	Suspend    []string
	SuspendAll bool

	// DisableEvents records no Kubernetes Events (see ReasonApplied).
	DisableEvents bool

	// Once makes Run fetch once, deliver the apps that are due (a new
	// commit, drift, a full resync), wait for those runs and return, with
	// an error naming the apps that failed: a reconcile pass for CI or a
	// cron job, next to or instead of the long-running reconciler. Not
	// with LeaderElection: the apps' own locks keep it from applying at
	// the same time as a running reconciler.
	Once bool

	// Log receives structured logs; default: discard. Pipeline.Log
	// defaults to it.
	Log *slog.Logger

	// Change windows (docs/windows.md).
	// Clock is the time the windows of deliver.yaml are checked at, and
	// wakes the loop when a window of a held app starts or ends. Default:
	// the real clock.
	Clock clock.WithDelayedExecution

	// Several clusters (issue #20, see Clusters and docs/clusters.md).
	// Target is the cluster delivered to: the runs, the inventories and
	// the drift watches use it, while the status ConfigMap, the control
	// ConfigMap and the Leases stay in Config's cluster. Default: Config.
	Target *rest.Config
	// StatusName is the name of the status ConfigMap's first page.
	// Default StatusConfigMap.
	StatusName string

	// OnRun, when set, is called as each run starts and ends: the web
	// view (pkg/ui) updates its open pages from it. It must not block.
	OnRun func(RunEvent)
}

// RunEvent is a run's start or end, for Options.OnRun.
type RunEvent struct {
	// Env is the environment of the engine that ran the app when a
	// Clusters runs it; "" for a lone Reconciler, whose environment is
	// its Options.Pipeline.Env.
	Env string
	// App is the app; Revision the commit the run delivers.
	App, Revision string
	// Reason says why the run started ("revision abc", "drift of 1
	// objects", ...).
	Reason string
	// Ended is false at the start of the run, true at its end.
	Ended bool
	// Result and Message are the app's status after the run (Ended
	// only); Duration is the run's.
	Result, Message string
	Duration        time.Duration
	// Plan is the run's plan, nil when it got none (Ended only).
	Plan *apply.Plan
}

// LeaderElection configures the Lease that elects the one replica that
// reconciles.
type LeaderElection struct {
	// Enabled turns leader election on.
	Enabled bool
	// Namespace and Name of the Lease. Defaults: Options.StatusNamespace
	// and "deliver-reconcile".
	Namespace, Name string
	// Identity names this replica in the Lease. Default: the host name
	// and a random suffix.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's: a
	// standby takes over at most LeaseDuration after the leader stopped
	// renewing. Defaults 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

func (o *Options) defaults() error {
	if o.Pipeline.Repo == "" {
		return errors.New("reconcile: a repository (Pipeline.Repo) is required")
	}
	if o.Config == nil {
		return errors.New("reconcile: a cluster (Config) is required")
	}
	if o.Once && o.LeaderElection.Enabled {
		return errors.New("reconcile: once and leader election do not go together")
	}
	if o.Sharding.Enabled && (o.Once || o.LeaderElection.Enabled) {
		return errors.New("reconcile: sharding goes with neither once nor leader election")
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Jitter == 0 {
		o.Jitter = 0.1
	}
	if o.FullResync == 0 {
		o.FullResync = time.Hour
	}
	if o.InputsInterval == 0 {
		o.InputsInterval = 10 * time.Minute
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 10 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.DriftSettle <= 0 {
		o.DriftSettle = time.Second
	}
	if o.MaxConcurrentRuns <= 0 {
		o.MaxConcurrentRuns = 16
	}
	if o.Pipeline.Apply.InventoryNamespace == "" {
		o.Pipeline.Apply.InventoryNamespace = "deliver-system"
	}
	if o.StatusNamespace == "" {
		o.StatusNamespace = o.Pipeline.Apply.InventoryNamespace
	}
	if o.StatusName == "" {
		o.StatusName = StatusConfigMap
	}
	if o.Target == nil {
		o.Target = o.Config
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Pipeline.Log == nil {
		o.Pipeline.Log = o.Log
	}
	if o.Pipeline.Redactor == nil {
		// One redactor for every run, so a value seen once stays masked
		// in the status and logs of later runs too.
		o.Pipeline.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	}
	if o.Pipeline.Vault == nil {
		// One Vault login for every run and inputs check of the
		// process, not one per run (see pipeline.VaultSession).
		o.Pipeline.Vault = pipeline.NewVaultSession(o.Pipeline)
	}
	le := &o.LeaderElection
	if le.Namespace == "" {
		le.Namespace = o.StatusNamespace
	}
	if le.Name == "" {
		le.Name = "deliver-reconcile"
	}
	if le.Identity == "" {
		host, _ := os.Hostname()
		le.Identity = fmt.Sprintf("%s_%08x", host, rand.Uint32())
	}
	if le.LeaseDuration <= 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline <= 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod <= 0 {
		le.RetryPeriod = 2 * time.Second
	}
	sh := &o.Sharding
	if sh.Namespace == "" {
		sh.Namespace = o.StatusNamespace
	}
	if sh.Group == "" {
		sh.Group = "deliver-reconcile"
	}
	if sh.Identity == "" {
		sh.Identity = le.Identity
	}
	if sh.LeaseDuration <= 0 {
		sh.LeaseDuration = 15 * time.Second
	}
	return nil
}

// Results of AppStatus.Result besides apply's succeeded and failed.
const (
	// ResultPending: the app has not been delivered by this reconciler yet.
	ResultPending = "pending"
	// ResultRunning: a run is under way.
	ResultRunning = "running"
	// ResultWaiting: the app waits for a dependency to be delivered at the
	// same commit.
	ResultWaiting = "waiting"
)

// AppStatus is what the reconciler knows of one app.
type AppStatus struct {
	// App is the app's name.
	App string `json:"app"`
	// Revision is the last commit delivered successfully.
	Revision string `json:"revision,omitempty"`
	// Result is "succeeded" or "failed" (of the last run), or one of
	// ResultPending, ResultRunning, ResultWaiting.
	Result string `json:"result"`
	// Message explains a failed or waiting result, or says why the last
	// run ran, or, "unchanged: ...", that the current commit did not
	// change the app's inputs, so it was not run for it.
	Message string `json:"message,omitempty"`
	// LastRun is when the last run ended, LastSuccess when the last
	// successful one did; Duration is the last run's.
	LastRun     time.Time     `json:"lastRun,omitzero"`
	LastSuccess time.Time     `json:"lastSuccess,omitzero"`
	Duration    time.Duration `json:"duration,omitempty"`
	// Failures counts the consecutive failed runs; NextRetry is when the
	// next is due.
	Failures  int       `json:"failures,omitempty"`
	NextRetry time.Time `json:"nextRetry,omitzero"`
	// Suspended is set while the app is paused (Options.Suspend or the
	// annotation AnnotationSuspend): it is not delivered.
	Suspended bool `json:"suspended,omitempty"`
	// Pin is the app's pin (see pin.go): it is delivered at Pin.Revision
	// and nothing newer until unpinned.
	Pin *apply.Pin `json:"pin,omitempty"`
	// Drift lists objects seen changed in the cluster since deliver
	// applied them and not reverted yet.
	Drift []string `json:"drift,omitempty"`
	// Change windows (docs/windows.md).
	// Held says which window holds a due run of the app and until when;
	// HeldUntil is that time (zero: no opening within a year).
	Held      string    `json:"held,omitempty"`
	HeldUntil time.Time `json:"heldUntil,omitzero"`
	// Notified is the last outcome deliver.yaml's notifications told of
	// the app (issue 20). It is kept in the status ConfigMap, which a
	// reconciler reads when it starts leading, so that a restart or a new
	// leader does not tell a failure again; it changes only when a
	// notification is sent, so it adds no write. Nil when none was.
	Notified *Notified `json:"notified,omitempty"`
	// LastHandledRequest is the last value of the app's annotation
	// AnnotationReconcileRequestedAt that a run served: the run that
	// started after the request was seen has ended, with Result (Flux's
	// status.lastHandledReconcileAt). Empty when none was.
	LastHandledRequest string `json:"lastHandledRequest,omitempty"`
	// UpToDateChecks counts the fetches that found the app up to date,
	// so no run. Not written to the status ConfigMap, which changes only
	// when a run ends.
	UpToDateChecks int64 `json:"-"`
}

// Notified is an outcome told by the notifications: the same for every
// provider of the app, each of which keeps only the events it wants.
type Notified struct {
	// Result is succeeded or failed.
	Result notifications.Result `json:"result"`
	// Revision is the commit the outcome was at.
	Revision string `json:"revision"`
}

// Status is the reconciler's view of the repository and its apps.
type Status struct {
	// Revision is the commit of the last successful fetch.
	Revision string `json:"revision,omitempty"`
	// SourceError is why the last fetch, or reading deliver.yaml at
	// Revision, failed; empty when it worked.
	SourceError string `json:"sourceError,omitempty"`
	// Leader reports whether this replica is reconciling.
	Leader bool `json:"leader"`
	// PausedAll is set while ControlConfigMap pauses every app.
	PausedAll bool `json:"pausedAll,omitempty"`
	// Apps are in deliver.yaml order.
	Apps []AppStatus `json:"apps"`

	// Several clusters (issue #20): Env and Cluster name the environment
	// and its cluster when a Clusters delivers it; ClusterError is why
	// that cluster cannot be reached or its kubeconfig read, empty when
	// it can.
	Env          string `json:"env,omitempty"`
	Cluster      string `json:"cluster,omitempty"`
	ClusterError string `json:"clusterError,omitempty"`
}

// appState is an app's status plus the scheduling state behind it.
type appState struct {
	AppStatus
	dependsOn []string
	running   bool
	// recheckInputs: its inputs were unchanged at the head's fetch, but
	// its post-build reads ConfigMaps or Secrets and an app it depends
	// on runs at the head, which may change them: its run checks its
	// inputs again once that app is delivered (leaderLoop.recheck).
	recheckInputs bool
	// waitOnly is the head at which the app's inputs were found
	// unchanged while it has waitFor objects: it runs all the same, as
	// Flux checks a Kustomization's healthChecks at every reconciliation,
	// but plans from its inventory (no render when its objects are as
	// applied) and waits for them, and its dependents wait for that.
	waitOnly string
	// failedRev is the commit of the last failed run: a new commit is
	// tried at once, the same one only after the backoff.
	failedRev string
	// drift holds the objects that looked changed, since driftSince.
	drift      map[string]bool
	driftSince time.Time
	// app is the app's configuration at the current commit; inputs are
	// those its inventory recorded when last read (nil: unknown), for
	// telling a new commit that does not change the app.
	app    config.ResolvedApp
	inputs *apply.Inputs
	// inputMoved says why the app must run for an input outside git
	// that changed since its last run started: a ConfigMap or Secret it
	// reads, labelled LabelWatch (inputwatch.go), or any of them or a
	// Vault secret, read again every InputsInterval (checkInputs).
	inputMoved string
	// serving is the run request the run under way serves; handled the
	// last one served, as the annotation said (LastHandledRequest is it
	// redacted), and suspendedRequest one told to wait for a resume
	// (request.go).
	serving, handled, suspendedRequest string
}

// Reconciler keeps the cluster equal to git. Create it with New, run it
// with Run.
type Reconciler struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	hook    *webhook
	kube    kubernetes.Interface
	// recorder records Events; nil with Options.DisableEvents.
	recorder record.EventRecorder
	// notifier sends deliver.yaml's notifications while Run runs.
	notifier *notifications.Notifier
	// inv watches the inventory Secrets while leading, ctl the
	// ControlConfigMap.
	inv atomic.Pointer[inventories]
	// shards is this replica's view of its shard group; nil without
	// Options.Sharding.
	shards *shards
	ctl    atomic.Pointer[control]

	// trigger asks the loop for a fetch now; wake for a scheduling pass.
	trigger chan struct{}
	wake    chan struct{}

	leading atomic.Bool
	ready   atomic.Bool
	// fetchStarts counts the fetches started, fetchesDone is the number
	// of the last that ended: a run request is served after a fetch that
	// started once it was seen (request.go).
	fetchStarts, fetchesDone atomic.Uint64
	// membersChanged is set when the shard group's members changed:
	// apps may have moved here with requests served elsewhere.
	membersChanged atomic.Bool
	// lastLoop is the Unix nanoseconds of the loop's last pass, for
	// /healthz.
	lastLoop atomic.Int64

	mu        sync.Mutex
	head      string
	sourceErr string
	order     []string
	apps      map[string]*appState
	// written is the content of each page of the status last written
	// (see writeStatusOnce).
	written []map[string]string
	// statusMu guards statusBusy (a status write is in flight) and
	// statusAgain (a change came in meanwhile: write once more).
	statusMu    sync.Mutex
	statusBusy  bool
	statusAgain bool
	// statusFailures counts the failed writes of the status ConfigMap
	// since the last one that succeeded; statusRetry is when the loop
	// writes it again (zero: nothing to retry).
	statusFailures int
	statusRetry    time.Time

	// windowWake wakes the loop when a window of a held app starts or
	// ends (windows.go); guarded by mu.
	windowWake windowWake

	// link ties an engine to the Clusters that runs it: the shared
	// fetch, triggers, the cluster's state; nil for a lone Reconciler.
	link *engineLink
}

// New checks opts and returns a Reconciler. It reads the webhook secret
// file, if any, but does not touch the cluster or the repository.
func New(opts Options) (*Reconciler, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	r := &Reconciler{
		opts:    opts,
		log:     opts.Log,
		metrics: newMetrics(),
		trigger: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		apps:    map[string]*appState{},
	}
	r.metrics.held = newHeldGauge(r.metrics.reg)
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("reconcile: client: %w", err)
	}
	r.kube = kube
	r.metrics.reg.MustRegister(r.pinnedGauge())
	if opts.WebhookSecretFile != "" {
		secret, err := readSecretFile(opts.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("reconcile: webhook secret: %w", err)
		}
		r.hook = newWebhook(secret, opts.Pipeline.Ref, r.requestFetch, opts.Log)
	}
	return r, nil
}

// Trigger asks for a fetch, and the runs it calls for, at once rather
// than at the next interval. It never blocks; triggers that come while one
// is pending are merged.
func (r *Reconciler) Trigger() {
	if r.link != nil {
		r.link.trigger() // the Clusters fetches, for every engine
		return
	}
	notify(r.trigger)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Status returns a copy of the current status.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Revision: r.head, SourceError: r.sourceErr, Leader: r.leading.Load(), PausedAll: r.ctl.Load().pausedAll()}
	r.link.describe(&st)
	for _, name := range r.order {
		st.Apps = append(st.Apps, r.apps[name].snapshot())
	}
	return st
}

func (s *appState) snapshot() AppStatus {
	a := s.AppStatus
	a.Drift = nil
	for id := range s.drift {
		a.Drift = append(a.Drift, id)
	}
	slices.Sort(a.Drift)
	return a
}

// backoff returns the wait after the n-th consecutive failure.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// jittered spreads d by ±j×d.
func jittered(d time.Duration, j float64) time.Duration {
	if j <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
}

// invs returns the inventory watcher, nil while not leading.
func (r *Reconciler) invs() *inventories { return r.inv.Load() }
