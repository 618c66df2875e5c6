package reconcile

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/source"
)

// Several clusters (issue #20).
//
// A Clusters delivers several environments of one repository, each to the
// cluster its deliver.yaml names (environments.<env>.kubeconfigSecret, a
// Secret in the reconciler's own cluster; the reconciler's own cluster
// when it names none). Each environment has an engine of its own: a
// Reconciler with its own cluster session, inventories, locks, drift
// watches, backoff and status ConfigMap (EnvStatusName), running
// independently, so that a cluster that is unreachable or slow holds up
// only its own apps. The repository is fetched once for all of them: each
// engine's fetch takes a Clone of the Clusters' latest snapshot.
//
// A supervisor per environment reads the kubeconfig Secret and asks the
// cluster for its version after every fetch; it starts the engine once
// the cluster answers, restarts it when the Secret's content or the
// environment's kubeconfigSecret changes, and, while the cluster cannot
// be reached before the engine started, marks the environment's apps
// failed in its status with the reason, retrying with the apps' backoff.
// Once started, an engine whose cluster goes away keeps running: its
// runs fail and are retried with backoff like any failed run.

// EnvStatusName is the first page of environment env's status ConfigMap
// when a Clusters delivers it, in the reconciler's own cluster:
// deliver-status.<env> (further pages deliver-status.<env>.1, .2, ...).
func EnvStatusName(env string) string { return StatusConfigMap + "." + env }

// Labels and annotations of an environment's status ConfigMap.
const (
	// LabelStatusEnv names the environment on each page of its status.
	LabelStatusEnv = "deliver.dev/env"
	// AnnotationCluster names the environment's cluster: its kubeconfig
	// Secret, or "own cluster".
	AnnotationCluster = "deliver.dev/cluster"
	// AnnotationClusterError is why that cluster cannot be reached or its
	// kubeconfig read.
	AnnotationClusterError = "deliver.dev/cluster-error"
)

// ownCluster describes the cluster of an environment without a
// kubeconfigSecret.
const ownCluster = "own cluster"

// probeTimeout bounds the request that checks a cluster answers.
const probeTimeout = 10 * time.Second

// Clusters delivers several environments, each to its own cluster. Create
// it with NewClusters, run it with Run.
type Clusters struct {
	opts Options
	log  *slog.Logger
	kube kubernetes.Interface
	hook *webhook
	// metrics has the fetch's metrics and the process's; the engines
	// have the rest, per environment.
	metrics *metrics
	reach   *prometheus.GaugeVec
	trigger chan struct{}
	// forceEngines makes the next fetch wake every engine for a fetch of
	// its own even when the commit did not move: a run request is served
	// after a fetch of its engine (request.go).
	forceEngines atomic.Bool
	// lastLoop is the Unix nanoseconds of the fetch loop's last pass.
	lastLoop atomic.Int64
	sups     []*supervisor

	mu sync.Mutex
	// snap is the latest successful fetch; srcErr the last fetch's error
	// (nil when it worked), which the engines report as their source's.
	snap   *source.Snapshot
	srcErr error
	// fetched is closed once the first fetch ended, whatever its result.
	fetched chan struct{}
}

// supervisor runs one environment's engine.
type supervisor struct {
	env  string
	r    *Reconciler
	link *engineLink
	wake chan struct{}

	// Owned by the supervisor's goroutine.
	running  bool
	digest   string
	cancel   context.CancelFunc
	done     chan error
	failures int
}

// engineLink ties an engine to its Clusters. Its methods are safe on a
// nil link: a lone Reconciler's.
type engineLink struct {
	c   *Clusters
	sup *supervisor
	env string

	mu sync.Mutex
	// ref is the kubeconfigSecret the engine runs with (nil: the own
	// cluster); cluster describes it, clusterErr is why it cannot be used.
	ref        *config.KubeconfigSecretRef
	cluster    string
	clusterErr string
	// invNS is the inventory namespace the engine runs with.
	invNS string
}

// NewClusters checks opts and returns a Clusters delivering envs (at
// least one; opts.Pipeline.Env is ignored). Every engine shares opts but
// for its environment, its target cluster, its status ConfigMap, and, with
// leader election, its Lease (deliver-reconcile.<env>): replicas may lead
// different environments; with sharding, its membership (see Sharding):
// the replicas share each environment's apps among those whose engine of
// it runs.
func NewClusters(opts Options, envs []string) (*Clusters, error) {
	if len(envs) == 0 {
		return nil, errors.New("reconcile: clusters: no environment")
	}
	opts.Pipeline.Env = envs[0]
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := &Clusters{
		opts:    opts,
		log:     opts.Log,
		metrics: newMetrics(),
		trigger: make(chan struct{}, 1),
		fetched: make(chan struct{}),
		reach: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "deliver_reconcile_cluster_reachable", Help: "1 while an environment's cluster answers and its kubeconfig Secret can be read, 0 when not.",
		}, []string{"env", "cluster"}),
	}
	// Leading is per environment: the engines' gauge, labelled.
	c.metrics.reg.Unregister(c.metrics.leader)
	c.metrics.reg.MustRegister(c.reach)
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("reconcile: client: %w", err)
	}
	c.kube = kube
	if opts.WebhookSecretFile != "" {
		secret, err := readSecretFile(opts.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("reconcile: webhook secret: %w", err)
		}
		c.hook = newWebhook(secret, opts.Pipeline.Ref, c.Trigger, opts.Log)
	}
	seen := map[string]bool{}
	for _, env := range envs {
		if seen[env] {
			return nil, fmt.Errorf("reconcile: clusters: environment %s given twice", env)
		}
		seen[env] = true
		if !validEnvName(env) {
			return nil, fmt.Errorf("reconcile: clusters: environment %q: a name must be a DNS label of at most 48 characters (it names the status ConfigMap %s)", env, EnvStatusName(env))
		}
		o := opts
		o.Pipeline.Env = env
		o.Log = opts.Log.With("env", env)
		o.Pipeline.Log = o.Log
		o.StatusName = EnvStatusName(env)
		o.Listen, o.WebhookSecretFile = "", "" // the Clusters serves them
		o.LeaderElection.Name = opts.LeaderElection.Name + "." + env
		if on := opts.OnRun; on != nil {
			// One hook for every engine: each names its environment.
			o.OnRun = func(e RunEvent) { e.Env = env; on(e) }
		}
		r, err := New(o)
		if err != nil {
			return nil, err
		}
		s := &supervisor{env: env, r: r, wake: make(chan struct{}, 1)}
		s.link = &engineLink{c: c, sup: s, env: env}
		r.link = s.link
		c.sups = append(c.sups, s)
	}
	return c, nil
}

func validEnvName(env string) bool {
	if len(env) == 0 || len(env) > 48 {
		return false
	}
	for i, ch := range env {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch == '-' && i > 0 && i < len(env)-1:
		default:
			return false
		}
	}
	return true
}

// Trigger asks for a fetch at once, for every environment.
func (c *Clusters) Trigger() { notify(c.trigger) }

// Statuses returns each environment's status, in the order given to
// NewClusters.
func (c *Clusters) Statuses() []Status {
	out := make([]Status, 0, len(c.sups))
	for _, s := range c.sups {
		out = append(out, s.r.Status())
	}
	return out
}

// Run fetches every Options.Interval (or at once on Trigger or a
// webhook) and runs each environment's engine until ctx is cancelled,
// then waits for the engines to stop. With Options.Once it fetches once,
// runs each engine once and returns the environments' failures joined.
func (c *Clusters) Run(ctx context.Context) error {
	if c.opts.Listen != "" {
		ln, err := net.Listen("tcp", c.opts.Listen)
		if err != nil {
			return fmt.Errorf("reconcile: listen: %w", err)
		}
		srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("http server stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		c.log.Info("serving", "addr", ln.Addr().String())
	}
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.snap != nil {
			_ = c.snap.Close() // the engines hold clones of their own
			c.snap = nil
		}
	}()
	errs := make([]error, len(c.sups))
	var wg sync.WaitGroup
	for i, s := range c.sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.supervise(ctx, s)
		}()
	}
	c.log.Info("reconciling clusters", "repo", c.opts.Pipeline.Repo, "ref", c.opts.Pipeline.Ref, "envs", len(c.sups), "interval", c.opts.Interval)
	for first := true; ; first = false {
		c.lastLoop.Store(time.Now().UnixNano())
		c.fetch(ctx, first)
		if c.opts.Once {
			break
		}
		timer := time.NewTimer(jittered(c.opts.Interval, c.opts.Jitter))
		select {
		case <-ctx.Done():
		case <-c.trigger:
		case <-timer.C:
		}
		timer.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fetch fetches the followed ref once for every environment and wakes
// the supervisors and engines when anything changed.
func (c *Clusters) fetch(ctx context.Context, first bool) {
	po := c.opts.Pipeline
	// Taken as the fetch starts: a request that comes during it is
	// served by the next, which its trigger asks for.
	force := c.forceEngines.Swap(false)
	start := time.Now()
	snap, err := source.Fetch(ctx, source.Options{URL: po.Repo, Ref: po.Ref, Auth: po.Auth, CacheDir: po.CacheDir})
	c.metrics.fetchDuration.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() != nil {
		if first {
			close(c.fetched)
		}
		return
	}
	c.mu.Lock()
	changed := first || force || (err == nil) != (c.srcErr == nil)
	if err != nil {
		c.metrics.fetchErrors.Inc()
		c.srcErr = err
		c.log.Warn("fetch failed", "err", po.Redactor.Error(err))
	} else {
		c.srcErr = nil
		if c.snap == nil || c.snap.Commit != snap.Commit {
			if c.snap != nil {
				_ = c.snap.Close()
			}
			c.snap, changed = snap, true
		} else {
			_ = snap.Close()
		}
	}
	c.mu.Unlock()
	if first {
		close(c.fetched)
	}
	for _, s := range c.sups {
		// A supervisor checks its cluster after every fetch; an engine
		// reads the new commit only when there is one.
		notify(s.wake)
		if changed {
			notify(s.r.trigger)
		}
	}
}

// latest returns a clone of the latest fetch, once there was one, or
// that fetch's error.
func (c *Clusters) latest(ctx context.Context) (*source.Snapshot, error) {
	select {
	case <-c.fetched:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.srcErr != nil:
		return nil, c.srcErr
	case c.snap == nil:
		return nil, errors.New("no fetch yet")
	}
	return c.snap.Clone()
}

// envConfig reads deliver.yaml for env at the latest fetch.
func (c *Clusters) envConfig(ctx context.Context, env string) (*config.Resolved, string, error) {
	snap, err := c.latest(ctx)
	if err != nil {
		return nil, "", err
	}
	defer snap.Close()
	po := c.opts.Pipeline
	po.Env = env
	res, err := pipeline.LoadConfig(snap, po)
	if err != nil {
		return nil, snap.Commit, fmt.Errorf("revision %.12s: %w", snap.Commit, err)
	}
	return res, snap.Commit, nil
}

// supervise runs env's engine until ctx is cancelled (see Clusters).
func (c *Clusters) supervise(ctx context.Context, s *supervisor) error {
	defer s.stop()
	select {
	case <-c.fetched:
	case <-ctx.Done():
		return nil
	}
	log := s.r.log
	var retry *time.Timer
	for {
		err := c.converge(ctx, s)
		if c.opts.Once {
			if err != nil {
				return fmt.Errorf("environment %s: %w", s.env, err)
			}
			err := <-s.done
			s.running = false
			if err != nil {
				return fmt.Errorf("environment %s: %w", s.env, err)
			}
			return nil
		}
		var retryC <-chan time.Time
		if err != nil {
			wait := backoff(s.failures, c.opts.RetryBase, c.opts.RetryMax)
			log.Warn("cluster not ready", "err", err, "failures", s.failures, "retry_in", wait.Round(time.Millisecond))
			retry = time.NewTimer(wait)
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-retryC:
		case err := <-s.done:
			// The engine stopped by itself (it could not start): again,
			// after the backoff of a failure.
			s.running = false
			s.failures++
			log.Warn("engine stopped", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff(s.failures, c.opts.RetryBase, c.opts.RetryMax)):
			}
		}
		if retry != nil {
			retry.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// converge reads env's cluster at the latest fetch, checks that it
// answers and runs the engine on it; an error says why it cannot.
func (c *Clusters) converge(ctx context.Context, s *supervisor) error {
	r := s.r
	redact := r.opts.Pipeline.Redactor
	res, rev, err := c.envConfig(ctx, s.env)
	if err != nil {
		if !s.running {
			// No engine to report it: say it here. A running engine
			// reports the same error from its own fetch.
			r.mu.Lock()
			r.head, r.sourceErr = rev, redact.Error(err).Error()
			r.mu.Unlock()
			r.writeStatus(ctx)
			if c.opts.Once {
				return redact.Error(err)
			}
			s.failures++
		}
		return nil
	}
	target, desc, digest, err := c.resolve(ctx, res.KubeconfigSecret)
	if err == nil {
		err = probe(ctx, target)
	}
	// The engine restarts when the environment's inventory namespace
	// changes too: its inventories, locks and watches are there.
	invNS := cmp.Or(res.InventoryNamespace, c.opts.Pipeline.Apply.InventoryNamespace)
	if digest != "" {
		digest += "\x00inventories in " + invNS
	}
	s.link.mu.Lock()
	s.link.cluster = desc
	s.link.clusterErr = ""
	if err != nil {
		err = redact.Error(fmt.Errorf("cluster of environment %s (%s): %w", s.env, desc, err))
		s.link.clusterErr = err.Error()
	}
	s.link.mu.Unlock()
	c.reach.DeletePartialMatch(prometheus.Labels{"env": s.env})
	if err != nil {
		c.reach.WithLabelValues(s.env, desc).Set(0)
		s.failures++
		switch {
		case s.running && digest != s.digest && digest != "":
			// The environment's cluster changed and cannot be used: the
			// engine must not go on delivering to the former one.
			s.stop()
		case s.running:
			r.writeStatus(ctx) // the engine goes on; its status says why
			return err
		}
		c.failApps(ctx, s, res, rev, err)
		return err
	}
	c.reach.WithLabelValues(s.env, desc).Set(1)
	s.failures = 0
	if s.running && digest == s.digest {
		r.writeStatus(ctx) // a cluster error cleared, if there was one
		return nil
	}
	if s.running {
		r.log.Info("cluster changed: restarting", "cluster", desc)
		s.stop()
	}
	s.start(ctx, target, res.KubeconfigSecret, invNS, digest)
	return nil
}

// resolve returns the cluster of an environment whose kubeconfigSecret
// is ref: a description for status and metrics, and a digest of what
// the engine would run with, which changes with the Secret's content.
// The Secret's values are registered with the redactor before anything
// may quote them.
func (c *Clusters) resolve(ctx context.Context, ref *config.KubeconfigSecretRef) (cfg *rest.Config, desc, digest string, err error) {
	if ref == nil {
		return c.opts.Config, ownCluster, ownCluster, nil
	}
	ns := ref.Namespace
	if ns == "" {
		ns = c.opts.StatusNamespace
	}
	full := *ref
	full.Namespace = ns
	desc = full.String()
	sctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	sec, err := c.kube.CoreV1().Secrets(ns).Get(sctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, desc, "", fmt.Errorf("read kubeconfig: %w", err)
	}
	redact := c.opts.Pipeline.Redactor
	for _, v := range sec.Data {
		redact.Add(string(v))
	}
	data, ok := sec.Data[ref.SecretKey()]
	if !ok || len(data) == 0 {
		return nil, desc, "", fmt.Errorf("read kubeconfig: Secret %s/%s has no key %s", ns, ref.Name, ref.SecretKey())
	}
	sum := sha256.Sum256(append([]byte(desc+"\x00"), data...))
	digest = hex.EncodeToString(sum[:])
	// The parser's message may quote the content: not shown.
	cfg, perr := clientcmd.RESTConfigFromKubeConfig(data)
	if perr != nil {
		return nil, desc, digest, fmt.Errorf("read kubeconfig: key %s of Secret %s/%s is no usable kubeconfig", ref.SecretKey(), ns, ref.Name)
	}
	redact.Add(cfg.BearerToken, cfg.Password, string(cfg.CertData), string(cfg.KeyData), string(cfg.CAData))
	// The reconciler's client limits, not the kubeconfig's defaults.
	cfg.QPS, cfg.Burst = c.opts.Config.QPS, c.opts.Config.Burst
	return cfg, desc, digest, nil
}

// probe asks the cluster for its version: one small request that any
// authenticated client may make.
func probe(ctx context.Context, cfg *rest.Config) error {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = probeTimeout
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := kc.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	return nil
}

// failApps marks every app of the environment failed because of its
// cluster, with the retry due, in the status of an engine that does not
// run.
func (c *Clusters) failApps(ctx context.Context, s *supervisor, res *config.Resolved, rev string, err error) {
	r := s.r
	now := time.Now()
	next := now.Add(backoff(s.failures, c.opts.RetryBase, c.opts.RetryMax))
	r.mu.Lock()
	r.head, r.sourceErr = rev, ""
	r.order = r.order[:0]
	for _, a := range res.Apps {
		if len(r.opts.Pipeline.Apps) > 0 && !slices.Contains(r.opts.Pipeline.Apps, a.Name) {
			continue
		}
		st := r.apps[a.Name]
		if st == nil {
			st = &appState{AppStatus: AppStatus{App: a.Name}}
			r.apps[a.Name] = st
		}
		r.order = append(r.order, a.Name)
		st.Result, st.Message = apply.ResultFailed, err.Error()
		st.Failures, st.NextRetry, st.LastRun = s.failures, next, now
	}
	r.mu.Unlock()
	r.writeStatus(ctx)
}

// start runs the engine on target.
func (s *supervisor) start(ctx context.Context, target *rest.Config, ref *config.KubeconfigSecretRef, invNS, digest string) {
	r := s.r
	// A fresh start: the apps' states come from the new cluster's
	// inventories, not from the failures noted while it was away.
	r.mu.Lock()
	r.apps, r.order, r.head, r.sourceErr = map[string]*appState{}, nil, "", ""
	r.opts.Target = target
	r.opts.Pipeline.Apply.InventoryNamespace = invNS
	r.mu.Unlock()
	s.link.mu.Lock()
	s.link.ref, s.link.invNS = ref, invNS
	s.link.mu.Unlock()
	ectx, cancel := context.WithCancel(ctx)
	s.cancel, s.done, s.running, s.digest = cancel, make(chan error, 1), true, digest
	r.log.Info("engine starting", "cluster", s.link.describeCluster())
	go func() { s.done <- r.Run(ectx) }()
}

// stop stops the engine, if it runs, and waits for its runs to end.
func (s *supervisor) stop() {
	if !s.running {
		return
	}
	s.cancel()
	<-s.done
	s.running = false
}

func (l *engineLink) describeCluster() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cluster
}

// fetch is the engine's fetch: a clone of its Clusters' latest, or, for
// a lone Reconciler, a fetch of its own.
func (l *engineLink) fetch(ctx context.Context, o source.Options) (*source.Snapshot, error) {
	if l == nil {
		return source.Fetch(ctx, o)
	}
	return l.c.latest(ctx)
}

func (l *engineLink) trigger() { l.c.Trigger() }

// triggerEngines asks for a fetch after which every engine fetches too,
// whether or not the commit moved.
func (l *engineLink) triggerEngines() {
	l.c.forceEngines.Store(true)
	l.c.Trigger()
}

// describe adds the environment and its cluster to st.
func (l *engineLink) describe(st *Status) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st.Env, st.Cluster, st.ClusterError = l.env, l.cluster, l.clusterErr
}

// checkCluster refuses a commit whose environment names another cluster
// than the one delivered to: a lone Reconciler delivers to its own
// cluster and reads no kubeconfigSecret, and an engine whose
// environment's kubeconfigSecret changed waits for its supervisor to
// restart it on the new cluster.
//
// It refuses as well a commit whose environment keeps its inventories in
// another namespace (inventoryNamespace) than the engine's, invNS: a lone
// Reconciler's is --inventory-namespace, and an engine waits for its
// supervisor to restart it on the new namespace.
func (l *engineLink) checkCluster(cfg *config.Resolved, invNS string) error {
	if l == nil {
		if cfg.KubeconfigSecret != nil {
			return fmt.Errorf("environment %s names kubeconfigSecret %s, which this reconciler does not read: deliver it with deliver reconcile --clusters", cfg.Environment, cfg.KubeconfigSecret)
		}
		if cfg.InventoryNamespace != "" && cfg.InventoryNamespace != invNS {
			return fmt.Errorf("environment %s keeps its inventories in namespace %s (inventoryNamespace), not in %s: run this reconciler with --inventory-namespace %s, or deliver it with deliver reconcile --clusters", cfg.Environment, cfg.InventoryNamespace, invNS, cfg.InventoryNamespace)
		}
		return nil
	}
	l.mu.Lock()
	same := (l.ref == nil) == (cfg.KubeconfigSecret == nil) && (l.ref == nil || *l.ref == *cfg.KubeconfigSecret)
	sameNS := cmp.Or(cfg.InventoryNamespace, l.c.opts.Pipeline.Apply.InventoryNamespace) == l.invNS
	l.mu.Unlock()
	if !same {
		notify(l.sup.wake)
		return fmt.Errorf("environment %s: its cluster changed: switching over", cfg.Environment)
	}
	if !sameNS {
		notify(l.sup.wake)
		return fmt.Errorf("environment %s: its inventory namespace changed: switching over", cfg.Environment)
	}
	return nil
}

// statusLabels label the status ConfigMap, with the environment when a
// Clusters delivers it.
func (r *Reconciler) statusLabels() map[string]string {
	l := map[string]string{"app.kubernetes.io/managed-by": "deliver"}
	if r.link != nil {
		l[LabelStatusEnv] = r.link.env
	}
	return l
}

// clusterAnnotations adds the environment's cluster to the status
// ConfigMap's annotations.
func clusterAnnotations(st Status, ann map[string]string) {
	if st.Cluster != "" {
		ann[AnnotationCluster] = st.Cluster
	}
	if st.ClusterError != "" {
		ann[AnnotationClusterError] = st.ClusterError
	}
}

// eventsClient is the client Events are recorded with: the target
// cluster's, where the inventory Secrets they are about live.
func (r *Reconciler) eventsClient() kubernetes.Interface {
	if r.opts.Target == r.opts.Config {
		return r.kube
	}
	kc, err := kubernetes.NewForConfig(r.opts.Target)
	if err != nil {
		return r.kube
	}
	return kc
}

// Handler serves the Clusters' endpoints, as Reconciler.Handler does:
//
//	POST /webhook  push events: one fetch for every environment
//	GET  /metrics  every engine's metrics with an env label, the fetch's,
//	               and deliver_reconcile_cluster_reachable{env,cluster}
//	GET  /healthz  200 unless the fetch loop or an engine's loop is stuck
//	GET  /readyz   200 once every environment's engine whose cluster
//	               answers has done its first pass; 503 while one starts.
//	               The body has a line per environment either way. An
//	               unreachable cluster does not make the reconciler
//	               unready: it is the cluster's fault, which status and
//	               metrics report, and an unready pod would take the
//	               webhook away from every other environment.
func (c *Clusters) Handler() http.Handler {
	mux := http.NewServeMux()
	if c.hook != nil {
		mux.Handle("POST /webhook", c.hook)
	}
	gs := prometheus.Gatherers{c.metrics.reg}
	for _, s := range c.sups {
		gs = append(gs, envGatherer{env: s.env, g: s.r.metrics.reg})
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gs, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		stuck := 3*c.opts.Interval + time.Minute
		if last := time.Unix(0, c.lastLoop.Load()); !c.opts.Once && c.lastLoop.Load() != 0 && time.Since(last) > stuck {
			http.Error(w, fmt.Sprintf("fetch loop stuck since %s", last.UTC().Format(time.RFC3339)), http.StatusServiceUnavailable)
			return
		}
		for _, s := range c.sups {
			r := s.r
			if n := r.lastLoop.Load(); r.leading.Load() && n != 0 && time.Since(time.Unix(0, n)) > stuck {
				http.Error(w, fmt.Sprintf("environment %s: reconcile loop stuck since %s", s.env, time.Unix(0, n).UTC().Format(time.RFC3339)), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		ready := true
		for _, s := range c.sups {
			st := s.r.Status()
			switch {
			case st.ClusterError != "":
				fmt.Fprintf(&b, "%s: unreachable: %s\n", s.env, st.ClusterError)
			case !s.r.ready.Load():
				ready = false
				fmt.Fprintf(&b, "%s: not ready: starting\n", s.env)
			default:
				fmt.Fprintf(&b, "%s: ok (%s)\n", s.env, st.Cluster)
			}
		}
		if !ready {
			http.Error(w, b.String(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, b.String())
	})
	return mux
}

// envGatherer gathers an engine's metrics with the label env added, less
// those the Clusters has once for all (the fetch's, the process's).
type envGatherer struct {
	env string
	g   prometheus.Gatherer
}

func (e envGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := e.g.Gather()
	out := mfs[:0]
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "deliver_git_fetch_") {
			continue
		}
		for _, m := range mf.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("env"), Value: proto.String(e.env)})
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		out = append(out, mf)
	}
	return out, err
}

// Engines returns the environments' engines, in the order given to
// NewClusters: for a view of them (pkg/ui), which reads each engine's
// Status and Target.
func (c *Clusters) Engines() []*Reconciler {
	out := make([]*Reconciler, 0, len(c.sups))
	for _, s := range c.sups {
		out = append(out, s.r)
	}
	return out
}

// Target returns the cluster this reconciler delivers to and the
// namespace of its inventories, as of now. A lone Reconciler's never
// change. An engine of a Clusters gets them from its supervisor: nil and
// "" until its environment's cluster first answered, and new ones when
// the environment's kubeconfigSecret or inventoryNamespace changes, so a
// caller reads them per use rather than once.
func (r *Reconciler) Target() (*rest.Config, string) {
	if r.link != nil {
		r.link.mu.Lock()
		started := r.link.invNS != ""
		r.link.mu.Unlock()
		if !started {
			return nil, ""
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts.Target, r.opts.Pipeline.Apply.InventoryNamespace
}

// StatusLocation returns the cluster and namespace of this reconciler's
// status and control ConfigMaps, and the name of its status's first page:
// the reconciler's own cluster (Options.Config), whatever cluster it
// delivers to.
func (r *Reconciler) StatusLocation() (cfg *rest.Config, namespace, name string) {
	return r.opts.Config, r.opts.StatusNamespace, r.opts.StatusName
}
