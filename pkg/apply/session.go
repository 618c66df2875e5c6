package apply

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
)

// SessionOptions configure a Session. The zero value gives the defaults.
type SessionOptions struct {
	// QPS and Burst bound the requests of the whole session, every app of
	// it together: one token bucket shared by all its clients, where each
	// Manager used to have its own (a thousand apps had a thousand times
	// the limit). Default: the rest.Config's, and client-go's defaults
	// (5 and 10) when it sets none. A negative QPS sets no limit. Ignored
	// when the rest.Config carries its own RateLimiter, which is shared
	// then.
	QPS   float32
	Burst int
	// MaxInFlight bounds the requests in flight of the whole session, every
	// app together; watches, which stay open, do not count. Apps then run
	// in parallel as far as this budget goes, and the number of apps at
	// once no longer decides the load on the API server. Default
	// DefaultMaxInFlight; negative: no bound.
	MaxInFlight int
}

// DefaultMaxInFlight is SessionOptions.MaxInFlight's default: the
// concurrency of one app's stage (Options.Concurrency, 48) and a third
// more, so that one big app runs as before and many small ones share it.
const DefaultMaxInFlight = 64

// Session is deliver's connection to one cluster, made once per process
// (or per pipeline run) and shared by the Managers of every app: with a
// thousand apps, one set of clients, one API discovery and one RESTMapper
// instead of a thousand.
//
// It owns what does not depend on the app:
//   - the clients (dynamic, metadata, typed) and the rate limit they share;
//   - API discovery and the RESTMapper built on it (RESTMapper), discovered
//     once, again when a run creates CRDs (every app then sees the new
//     kinds), and again when a lookup misses in a cache older than a few
//     seconds; safe for apps running at once (see sharedMapper);
//   - the watches Wait shares between apps waiting at once, one per
//     resource and namespace, stopped a few seconds after the last waiter;
//   - the clients through which every Manager reads and writes the
//     inventories and takes the apps' Lease locks, and the clock those
//     locks are timed with;
//   - the clients of each ServiceAccount an app impersonates (see
//     Options.ServiceAccountName), made once per ServiceAccount, with
//     their own shared watches: they share the rate limit, the budget of
//     requests in flight and the RESTMapper, never what they read.
//
// What is per app (namespace defaults, timeouts, redaction, progress, the
// lock's lease) stays in the Manager's Options. A Session is safe for
// concurrent use; a Manager made from it is as cheap as a struct.
type Session struct {
	meta   metadata.Interface
	kube   kubernetes.Interface
	mapper *sharedMapper
	clock  clock.PassiveClock
	// own are deliver's own clients (meta and kube above are its) with
	// the watches of the apps that impersonate nobody.
	own *clients

	// cfg is the configuration the clients were made with (rate limiter
	// and in-flight budget included), copied for impersonating clients.
	cfg *rest.Config

	asMu sync.Mutex
	as   map[string]*impersonated // by impersonated user name

	// gzips are the gzip writers inventory writes reuse: a new writer
	// allocates and clears about 800 kB of tables, which for the two
	// inventory writes of each of a thousand small apps was most of the
	// reconciler's garbage.
	gzips sync.Pool
}

// clients are the clients of one identity, deliver's own or a
// ServiceAccount's, and Wait's shared watches made with them (see
// statusWatcher): a watch is shared only by apps of the same identity, so
// an app never sees an object through a watch its ServiceAccount could not
// have made.
type clients struct {
	// user is the impersonated user name; "" for deliver's own identity.
	user    string
	dyn     dynamic.Interface
	meta    metadata.Interface
	kube    kubernetes.Interface
	watcher *statusWatcher
}

// impersonated are the clients of a ServiceAccount, and when they were
// last asked for.
type impersonated struct {
	*clients
	used time.Time
}

// impersonatedIdle is how long a Session keeps the clients of a
// ServiceAccount that nothing asks for: a reconciler delivering an app per
// pull request, each in its namespace as its own ServiceAccount, would
// otherwise keep a set for every namespace it ever delivered to.
const impersonatedIdle = time.Hour

// NewSession connects to the cluster that cfg points at. Nothing is sent
// yet: discovery happens on the first lookup.
func NewSession(cfg *rest.Config, opts SessionOptions) (*Session, error) {
	cfg = rest.CopyConfig(cfg)
	if opts.QPS != 0 {
		cfg.QPS = opts.QPS
	}
	if opts.Burst != 0 {
		cfg.Burst = opts.Burst
	}
	// Discovery keeps the limiter client-go gives it (a burst of 300, for
	// servers without aggregated discovery, asked once per group): it runs
	// once per session, not per app.
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: discovery: %w", err)
	}
	if cfg.RateLimiter == nil && cfg.QPS >= 0 {
		// As client-go would for each client, once for all of them.
		qps, burst := cfg.QPS, cfg.Burst
		if qps == 0 {
			qps = rest.DefaultQPS
		}
		if burst == 0 {
			burst = rest.DefaultBurst
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(qps, burst)
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxInFlight > 0 {
		sem := semaphore.NewWeighted(int64(opts.MaxInFlight))
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &inFlight{next: rt, sem: sem} })
	}
	clk := clock.RealClock{}
	mapper := newSharedMapper(parallelDiscovery{dc}, clk)
	own, err := newClients(cfg, "", mapper)
	if err != nil {
		return nil, err
	}
	return &Session{
		meta:   own.meta,
		kube:   own.kube,
		mapper: mapper,
		clock:  clk,
		own:    own,
		cfg:    cfg,
		as:     map[string]*impersonated{},
	}, nil
}

// newClients makes the clients of cfg, impersonating user unless it is "".
func newClients(cfg *rest.Config, user string, mapper meta.RESTMapper) (*clients, error) {
	if user != "" {
		// The copy keeps cfg's RateLimiter and transport wrappers (the
		// in-flight budget): an impersonating client draws on the
		// session's limits like the others.
		cfg = rest.CopyConfig(cfg)
		// The user name alone, as Flux and kubectl --as do: the API
		// server adds a ServiceAccount's groups (system:serviceaccounts
		// and system:serviceaccounts:<namespace>) itself.
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: client: %w", err)
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: client: %w", err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: client: %w", err)
	}
	return &clients{user: user, dyn: dyn, meta: mc, kube: kc, watcher: newStatusWatcher(dyn, mapper)}, nil
}

// ServiceAccountUser is the user name of the ServiceAccount name in
// namespace, the one deliver impersonates for it; "" (deliver's own
// identity, as clientsAs and ReadersAs take it) for an app without one.
func ServiceAccountUser(namespace, name string) string {
	if name == "" {
		return ""
	}
	return "system:serviceaccount:" + namespace + ":" + name
}

// clientsAs returns the clients that impersonate user, made on first use
// and kept while they are asked for: a process delivers for a few
// ServiceAccounts, not for a new one per run. "" is deliver's own. The
// clients of a user nothing asked for in impersonatedIdle, and whose
// watches no wait uses, are let go when another user's are made (whoever
// still holds them, a drift informer, keeps them working).
func (s *Session) clientsAs(user string) (*clients, error) {
	if user == "" {
		return s.own, nil
	}
	s.asMu.Lock()
	defer s.asMu.Unlock()
	now := s.clock.Now()
	if c, ok := s.as[user]; ok {
		c.used = now
		return c.clients, nil
	}
	for u, c := range s.as {
		if now.Sub(c.used) >= impersonatedIdle && c.watcher.refs() == 0 {
			delete(s.as, u)
		}
	}
	c, err := newClients(s.cfg, user, s.mapper)
	if err != nil {
		return nil, err
	}
	s.as[user] = &impersonated{clients: c, used: now}
	return c, nil
}

// RESTMapper returns the session's RESTMapper, shared by its Managers.
// Reset makes its next lookup discover again.
func (s *Session) RESTMapper() meta.ResettableRESTMapper { return s.mapper }

// Metadata returns the session's metadata client, for the informers of a
// process that runs on the session (the reconciler's drift tracker and
// its watch of inventories): their lists share the session's rate limit
// and budget of requests in flight (their watches are not counted).
func (s *Session) Metadata() metadata.Interface { return s.meta }

// ReadersAs returns the metadata and dynamic clients that impersonate
// user ("" for deliver's own, ServiceAccountUser for an app's), for a
// process that watches an app's objects on the app's behalf: the
// reconciler's drift informers of an app with a ServiceAccount read as
// that ServiceAccount, so the reconciler itself needs no read access to
// the tenants' namespaces.
func (s *Session) ReadersAs(user string) (metadata.Interface, dynamic.Interface, error) {
	c, err := s.clientsAs(user)
	if err != nil {
		return nil, nil, fmt.Errorf("impersonate %s: %w", user, err)
	}
	return c.meta, c.dyn, nil
}

// inFlight holds a request until the session's budget has room for it
// (SessionOptions.MaxInFlight). A round tripper, because the budget is
// the whole session's, across the dynamic, metadata and typed clients;
// the counting itself is golang.org/x/sync/semaphore's.
type inFlight struct {
	next http.RoundTripper
	sem  *semaphore.Weighted
}

// RoundTrip counts the request from its start until its response
// headers arrived (the server's work is done by then); a watch is not
// counted.
func (t *inFlight) RoundTrip(req *http.Request) (*http.Response, error) {
	if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
		return t.next.RoundTrip(req)
	}
	if err := t.sem.Acquire(req.Context(), 1); err != nil {
		return nil, err
	}
	defer t.sem.Release(1)
	return t.next.RoundTrip(req)
}
