// Package apply sends an object.Set to a cluster with server-side apply, in
// stages (CRDs and Namespaces first, workloads after their config), and waits
// for the objects to be ready using kstatus.
package apply

import (
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/health"
)

// DefaultFieldManager is the field manager deliver applies with.
const DefaultFieldManager = "deliver"

// Options configure a Manager. The zero value gives the defaults.
type Options struct {
	// FieldManager names deliver in managedFields. Default "deliver".
	FieldManager string
	// DefaultNamespace is set on namespaced objects that have none, like
	// kubectl's -n. Default "default".
	DefaultNamespace string
	// NoForce makes a conflict with another field manager an error instead
	// of taking the fields over (git is the source of truth, so taking over
	// is the default).
	NoForce bool
	// Concurrency bounds the requests in flight inside one stage. Default
	// 48: against a local API server on 2 cores, once applies became
	// cheaper for the server (YAML, fieldValidation=Ignore), a first apply
	// of 1,000 objects took 1.33 s with 48 against 1.44 s with 32, and 100
	// objects 198 against 207 ms (medians of 7 in the same rounds); the
	// server's priority and fairness queues what it cannot take at once.
	Concurrency int
	// Timeout bounds Wait. Default 5 minutes.
	Timeout time.Duration
	// HookTimeout bounds one hook run unless the hook sets its own.
	// Default 5 minutes.
	HookTimeout time.Duration
	// PollInterval is how often deliver re-reads an object it waits for by
	// polling (a deletion, a rollout's scale-down); Wait watches instead.
	// Default 500ms.
	PollInterval time.Duration
	// InventoryNamespace holds the inventory Secrets. Default
	// "deliver-system"; created when missing.
	InventoryNamespace string
	// Recreate deletes and re-creates any object whose change touches an
	// immutable field. Without it only objects annotated with
	// AnnotationRecreate are re-created; the others fail.
	Recreate bool
	// Redact masks secret values in error messages and diffs. Default: none.
	Redact func(string) string
	// NoCreateDryRun skips the server-side validation (a dry-run apply) of
	// objects that do not exist yet, also for an app that already runs: an
	// object the server rejects then fails in the middle of its stage,
	// after its siblings were written. Without it new objects are
	// validated before the first write, except in an app's first revision
	// (nothing of the app runs yet: see firstRevision), where the dry run
	// would double the requests of the first apply for no safety gained.
	NoCreateDryRun bool
	// LockTimeout is how long Execute waits for another deliver applying
	// the same app (a Lease per app) before failing with ErrLocked.
	// Default 2 minutes.
	LockTimeout time.Duration
	// LockLease is how long the app's lock outlives a run that stopped
	// renewing it (killed, or cut off from the API server): a waiting run
	// takes it over once it has itself seen the lock unchanged for that
	// long. The holder renews it every third of LockLease, and stops
	// before its next write (failing with ErrLockLost) when it could not
	// renew it for two thirds. Whole seconds; default 30s.
	LockLease time.Duration
	// Progress, when set, is told when Execute starts each step of an
	// app, with the number of objects or hooks it concerns.
	Progress func(app string, step Step, n int)
	// Lists, when set, are shared with the other Managers of the run:
	// what Prefetch lists is listed once per resource and namespace for
	// all of them (see SharedLists). Default: each Manager lists for
	// itself.
	Lists *SharedLists

	// ServiceAccountName, when set, is the ServiceAccount in
	// DefaultNamespace (the app's namespace) whose identity every request
	// about the app's objects takes: dry runs, applies, hooks and their
	// Jobs, waits, prunes, and the lists and reads of its live objects,
	// as Flux's spec.serviceAccountName does. The inventory, the app's
	// lock and the status stay with deliver's own identity, which then
	// needs only the right to impersonate the ServiceAccount and access
	// to its inventory namespace. Default: deliver's own identity for
	// everything.
	ServiceAccountName string

	// Health decides the readiness of the objects its rules cover (CEL
	// health checks, see package health) while Wait waits; kstatus
	// decides for the others. Default: none, kstatus for all.
	Health *health.Rules
}

func (o *Options) defaults() {
	if o.FieldManager == "" {
		o.FieldManager = DefaultFieldManager
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 48
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.InventoryNamespace == "" {
		o.InventoryNamespace = "deliver-system"
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 2 * time.Minute
	}
	if o.LockLease <= 0 {
		o.LockLease = DefaultLockLease
	}
	if o.HookTimeout == 0 {
		o.HookTimeout = 5 * time.Minute
	}
	if o.PollInterval == 0 {
		o.PollInterval = 500 * time.Millisecond
	}
}

// Manager applies the object sets of one app (or of a few: see Options)
// to the cluster of its Session. It holds only what is per app; the
// clients, discovery and the RESTMapper are the session's, so a Manager is
// cheap to make: one per app and run, as the pipeline does.
type Manager struct {
	opts Options
	s    *Session
	// meta and kube are deliver's own clients, for its bookkeeping only
	// (inventories, locks); every request about the app's objects goes
	// through objects.
	meta   metadata.Interface
	kube   kubernetes.Interface
	mapper *sharedMapper

	lockOpts lockOptions

	// objects are the clients of the app's objects, with Wait's shared
	// watches: the session's own, or those impersonating the app's
	// ServiceAccount.
	objects *clients
	// err is why the impersonating clients could not be made: every
	// request about the app's objects fails with it.
	err error

	preMu sync.Mutex
	pre   *prefetch // set by Prefetch, taken by the next plan
}

// New returns a Manager for the cluster that cfg points at, with a
// Session of its own: for a process that applies one app. A process that
// applies many makes one Session and a Manager per app with NewManager.
func New(cfg *rest.Config, opts Options) (*Manager, error) {
	s, err := NewSession(cfg, SessionOptions{})
	if err != nil {
		return nil, err
	}
	return NewManager(s, opts), nil
}

// NewManager returns a Manager that applies through s, sharing its
// clients, discovery and RESTMapper with every other Manager of s.
func NewManager(s *Session, opts Options) *Manager {
	opts.defaults()
	m := &Manager{
		opts:   opts,
		s:      s,
		meta:   s.meta,
		kube:   s.kube,
		mapper: s.mapper,

		lockOpts: newLockOptions(opts.LockLease, s.clock),
	}
	// Wait's watches are the session's, per identity: apps waiting at
	// once as the same identity share one watch per resource and
	// namespace.
	m.objects, m.err = s.clientsAs(m.impersonated())
	if m.err != nil {
		m.err = fmt.Errorf("impersonate %s: %w", m.impersonated(), m.err)
	}
	return m
}

// impersonated is the user the app's object requests impersonate; "" for
// deliver's own identity.
func (m *Manager) impersonated() string {
	return ServiceAccountUser(m.opts.DefaultNamespace, m.opts.ServiceAccountName)
}

// RESTMapper returns the RESTMapper of the manager's session.
func (m *Manager) RESTMapper() meta.RESTMapper { return m.mapper }

// Session returns the session the manager applies through.
func (m *Manager) Session() *Session { return m.s }

// Reader returns the RESTMapper and the dynamic client the app's objects
// are read with: as its ServiceAccount when it has one. A Helm chart's
// lookups go through them (render.Lookup), so that a chart sees what its
// app may see, as Flux's helm-controller looks up as the HelmRelease's
// ServiceAccount.
func (m *Manager) Reader() (meta.RESTMapper, dynamic.Interface, error) {
	if m.err != nil {
		return nil, nil, m.err
	}
	return m.mapper, m.objects.dyn, nil
}
