package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/source"
)

// Run reconciles until ctx is cancelled, serving Handler on
// Options.Listen if set. With leader election it stands by until it holds
// the Lease. A cancelled ctx lets the runs under way end (each is
// cancelled through its context), then releases the Lease; Run then
// returns nil. It returns an error only when it cannot start.
func (r *Reconciler) Run(ctx context.Context) error {
	defer r.startNotify()() // issue 20, notify: stopped last, after the runs
	defer r.opts.Pipeline.Vault.Close()
	if r.opts.Listen != "" {
		ln, err := net.Listen("tcp", r.opts.Listen)
		if err != nil {
			return fmt.Errorf("reconcile: listen: %w", err)
		}
		srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("http server stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		r.log.Info("serving", "addr", ln.Addr().String())
	}
	if !r.opts.DisableEvents {
		b, rec := r.newRecorder()
		r.recorder = rec
		// Shutdown stops the broadcaster's goroutine after the runs
		// ended, so the last run's Events are queued first.
		defer b.Shutdown()
	}
	switch {
	case r.opts.LeaderElection.Enabled:
		return r.runElected(ctx)
	case r.opts.Sharding.Enabled:
		return r.runSharded(ctx)
	}
	return r.lead(ctx)
}

// runSharded joins the shard group and delivers this replica's share of
// the apps until ctx is cancelled; its Lease is deleted only after its
// runs ended, so that no other replica takes an app over mid-run.
func (r *Reconciler) runSharded(ctx context.Context) error {
	if err := ensureNamespace(ctx, r.kube, r.opts.Sharding.Namespace); err != nil {
		return fmt.Errorf("reconcile: shard namespace %s: %w", r.opts.Sharding.Namespace, err)
	}
	env := ""
	if r.link != nil {
		env = r.link.env
	}
	r.shards = newShards(r.kube, r.opts.Sharding, env, r.log.With("shard_group", r.opts.Sharding.Group, "identity", r.opts.Sharding.Identity),
		func() {
			r.membersChanged.Store(true) // see takeOverRequests
			notify(r.wake)
		})
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r.shards.run(sctx, started)
	}()
	select {
	case <-started:
	case <-ctx.Done():
		stop()
		<-done
		return nil
	}
	err := r.lead(ctx)
	stop()
	<-done
	return err
}

// lead is the reconcile loop of the replica that holds the lease (or of
// the only one). It returns once ctx is cancelled and every run ended.
func (r *Reconciler) lead(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	r.leading.Store(true)
	r.metrics.leader.Set(1)
	defer func() {
		r.leading.Store(false)
		r.metrics.leader.Set(0)
		r.ready.Store(r.opts.LeaderElection.Enabled) // a standby again, or stopping
	}()
	// The informers stop with ctx, and their factories' Shutdown waits
	// for that: each stop below cancels first, for a loop that ends by
	// itself (Options.Once) or on an error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One cluster session for every run while leading: one discovery and
	// RESTMapper, and one rate limit, for all the apps (see apply.Session).
	sess, err := apply.NewSession(r.opts.Target, apply.SessionOptions{})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	mgr := apply.NewManager(sess, apply.Options{InventoryNamespace: r.opts.Pipeline.Apply.InventoryNamespace})
	tr := newTracker(ctx, sess, r.noteDrift)
	tr.log = r.log
	defer func() { cancel(); tr.stop() }()
	iv, err := newInventories(sess, r.opts.Pipeline.Apply.InventoryNamespace, r.fetchStarts.Load, r.inventoryChanged)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	iv.start(ctx)
	r.inv.Store(iv)
	defer func() {
		cancel()
		r.inv.Store(nil)
		iv.stop()
	}()
	ctl, err := newControl(r.opts.Config, r.opts.StatusNamespace, r.controlChanged)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	ctl.start(ctx)
	r.ctl.Store(ctl)
	defer func() {
		cancel()
		r.ctl.Store(nil)
		ctl.stop()
	}()
	inputs := newInputWatch(ctx, sess, r.inputChanged)
	defer func() { cancel(); inputs.stop() }()
	l := &leaderLoop{r: r, mgr: mgr, tr: tr, inputs: inputs}
	l.notified, l.handled = r.readPrior(ctx)
	defer func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		l.cur.release()
	}()
	defer l.runs.Wait() // runs end (their ctx is ours) before the lease may be released
	r.log.Info("reconciling", "repo", r.opts.Pipeline.Repo, "ref", r.opts.Pipeline.Ref, "env", r.opts.Pipeline.Env, "interval", r.opts.Interval)

	var nextFetch time.Time
	fetchNow := true
	// A single pass reads every input anyway; a loop reads the inputs
	// outside git again from one interval after it starts (its first
	// fetch reads them for the apps a new head runs).
	checksInputs := r.opts.InputsInterval > 0 && !r.opts.Once
	nextInputs := time.Now().Add(jittered(r.opts.InputsInterval, r.opts.Jitter))
	for {
		r.lastLoop.Store(time.Now().UnixNano())
		if r.opts.Once && !nextFetch.IsZero() {
			fetchNow, nextFetch = false, time.Now().Add(time.Hour) // one fetch only
		}
		if fetchNow || !time.Now().Before(nextFetch) {
			l.fetch(ctx)
			nextFetch = time.Now().Add(jittered(r.opts.Interval, r.opts.Jitter))
			fetchNow = false
			r.ready.Store(true)
		}
		if checksInputs && !time.Now().Before(nextInputs) {
			l.checkInputs(ctx)
			nextInputs = time.Now().Add(jittered(r.opts.InputsInterval, r.opts.Jitter))
		}
		if _, due := r.statusRetryDue(); due {
			sctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
			r.writeStatus(sctx)
			cancel()
		}
		l.takeOverRequests(ctx)
		untilStatus, _ := r.statusRetryDue()
		wait := min(l.schedule(ctx), time.Until(nextFetch), untilStatus)
		if checksInputs {
			wait = min(wait, time.Until(nextInputs))
		}
		if r.opts.Once && !r.busy() && !l.pruneBusy() {
			return errors.Join(r.onceResult(), l.pruneErr())
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-r.trigger:
			fetchNow = true
		case <-r.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// leaderLoop holds what the loop of the leading replica uses.
type leaderLoop struct {
	r      *Reconciler
	mgr    *apply.Manager
	tr     *tracker
	inputs *inputWatch
	runs   sync.WaitGroup
	// justFetched marks a scheduling pass right after a fetch, which
	// counts the up-to-date checks.
	justFetched bool
	// cur is the snapshot of the current head, which every run of that
	// commit delivers from; guarded by r.mu.
	cur *sharedSnap
	// notified is the last outcome told of each app, as the status
	// ConfigMap held it when this loop started (notify.go); guarded by
	// r.mu.
	notified map[string]*Notified
	// handled is each app's AppStatus.LastHandledRequest as the status
	// ConfigMap held it when this loop started (request.go), so that a
	// new leader serves no request twice.
	handled map[string]string
	// prune is the removal of the apps that left deliver.yaml
	// (prune.go); guarded by r.mu.
	prune appPruning
}

// sharedSnap is a snapshot shared by the runs of one commit: its tree is
// pinned and read once, and the hashes of its files, which tell apps with
// unchanged inputs, are computed once for every app. It is closed when
// the loop moved to another commit and the last run using it ended.
type sharedSnap struct {
	snap *source.Snapshot
	// config is deliver.yaml at that commit, read once for every run:
	// each run of a thousand apps parsing the thousand apps' deliver.yaml
	// was 14 ms, 14 s of CPU for a first delivery.
	config *config.Resolved
	refs   atomic.Int32
}

func newSharedSnap(s *source.Snapshot, cfg *config.Resolved) *sharedSnap {
	sh := &sharedSnap{snap: s, config: cfg}
	sh.refs.Store(1) // the loop's
	return sh
}

func (s *sharedSnap) acquire() *sharedSnap {
	s.refs.Add(1)
	return s
}

func (s *sharedSnap) release() {
	if s != nil && s.refs.Add(-1) == 0 {
		_ = s.snap.Close()
	}
}

// fetch pins the followed ref to a commit and reads the app list there.
// A new app's state starts from its inventory, so a restarted reconciler
// does not redeliver what is already delivered.
func (l *leaderLoop) fetch(ctx context.Context) {
	r := l.r
	// A run request seen before this point is served after this fetch
	// (request.go), whatever its outcome.
	defer r.fetchesDone.Store(r.fetchStarts.Add(1))
	po := r.opts.Pipeline
	start := time.Now()
	snap, err := r.link.fetch(ctx, source.Options{URL: po.Repo, Ref: po.Ref, Auth: po.Auth, CacheDir: po.CacheDir})
	r.metrics.fetchDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() == nil {
			r.metrics.fetchErrors.Inc()
			l.sourceFailed(ctx, po.Redactor.Error(err).Error())
		}
		return
	}
	apps, cfg, err := readApps(snap, po)
	if err == nil {
		err = r.link.checkCluster(cfg, po.Apply.InventoryNamespace)
	}
	if err != nil {
		snap.Close()
		l.sourceFailed(ctx, po.Redactor.Error(fmt.Errorf("revision %.12s: %w", snap.Commit, err)).Error())
		return
	}

	r.mu.Lock()
	moved := r.head != snap.Commit
	r.head, r.sourceErr = snap.Commit, ""
	if moved {
		// A pass of an earlier head is over: its failure is not this
		// head's (reconcile --once reports pruneErr).
		l.prune.due, l.prune.failures, l.prune.notBefore, l.prune.err = "", 0, time.Time{}, nil
		if cfg.PruneApps {
			l.prune.due = snap.Commit
		}
	}
	if l.cur == nil || l.cur.snap.Commit != snap.Commit {
		l.cur.release()
		l.cur = newSharedSnap(snap, cfg)
	} else {
		snap.Close() // the same commit: the runs keep the tree they have
	}
	var added []string
	seen := map[string]bool{}
	watchNS := map[string]bool{} // namespaces of the objects apps read
	r.order = r.order[:0]
	for _, a := range apps {
		seen[a.Name] = true
		r.order = append(r.order, a.Name)
		s, ok := r.apps[a.Name]
		if !ok {
			s = &appState{AppStatus: AppStatus{App: a.Name, Result: ResultPending, Notified: l.notified[a.Name],
				LastHandledRequest: l.handled[a.Name]}, handled: l.handled[a.Name]}
			r.apps[a.Name] = s
			added = append(added, a.Name)
		}
		s.dependsOn = a.DependsOn
		s.app = a.app
		for _, ref := range a.app.ClusterRefs() {
			watchNS[ref.Namespace] = true
		}
	}
	for name, s := range r.apps {
		// An app that left deliver.yaml is forgotten, its objects left in
		// place: deleting a whole app is a decision for a person
		// (deliver delete), or for deliver.yaml's pruneApps (prune.go).
		if !seen[name] && !s.running {
			delete(r.apps, name)
			r.metrics.forget(name)
			l.tr.setInventory(name, "", nil)
		}
	}
	r.mu.Unlock()
	l.inputs.ensure(watchNS)
	if moved {
		r.log.Info("revision", "revision", snap.Commit, "subject", snap.Subject, "apps", len(apps))
	}

	// One list per hundred apps, not a GET each: a reconciler starting on
	// a thousand apps read their inventories one after the other for 3 s.
	invs, err := l.mgr.ReadInventories(ctx, added)
	if err != nil {
		r.log.Warn("read inventory", "err", err)
	}
	for _, name := range added {
		inv, ok := invs[name]
		if !ok {
			continue
		}
		l.tr.setInventory(name, r.userOf(name), inv)
		r.mu.Lock()
		if s := r.apps[name]; s != nil && inv.Result == apply.ResultSucceeded {
			s.Revision, s.Result, s.LastRun, s.LastSuccess = inv.Revision, inv.Result, inv.Time, inv.Time
			s.inputs = inv.Inputs
		}
		r.mu.Unlock()
	}
	if len(added) > 0 {
		// The initial list of new informers is checked against the
		// inventories just read: drift while no reconciler ran shows now.
		l.tr.ensureKinds(ctx, true)
	}
	if moved || len(added) > 0 {
		l.skipUnchanged(ctx)
	}
	l.justFetched = true
	r.writeStatus(ctx)
}

// skipUnchanged marks the apps whose inputs did not change in the new
// head as delivered at it, without a run: a render would produce what
// their last successful run applied, and the informers keep checking that
// their objects stay so (drift still triggers a run). The hashes of the
// head's files are computed once and shared by every app, and so is the
// current version of each Vault secret their inputs name.
func (l *leaderLoop) skipUnchanged(ctx context.Context) {
	r := l.r
	var cands []inputsCandidate
	r.mu.Lock()
	head, sh := r.head, l.cur
	if sh != nil {
		sh.acquire()
		defer sh.release()
		for _, name := range r.order {
			s := r.apps[name]
			if s.running || s.Revision == head || s.Result != apply.ResultSucceeded || s.Failures > 0 || len(s.drift) > 0 || s.inputs == nil || r.pinOf(name) != nil {
				continue
			}
			if r.shards != nil && !r.shards.owns(name) {
				// Another replica's: its runs, and so its inputs, are
				// not seen here. Taken over, it runs for the head.
				continue
			}
			cands = append(cands, inputsCandidate{name, s.Revision, s.app, s.inputs})
		}
	}
	r.mu.Unlock()
	same, _ := l.compareInputs(ctx, sh, cands)
	r.mu.Lock()
	defer r.mu.Unlock()
	skipped := map[string]bool{}
	for _, c := range same {
		skipped[c.name] = true
	}
	for _, c := range same {
		s := r.apps[c.name]
		// Skipped if anything moved meanwhile: a run started, another
		// head, drift.
		if s == nil || s.running || r.head != head || s.Revision != c.rev || s.inputs != c.inputs || len(s.drift) > 0 {
			continue
		}
		if len(c.app.WaitFor) > 0 {
			// Runs, from its inventory, to wait for them (see waitOnly).
			s.waitOnly = head
			r.log.Info("inputs unchanged, waiting for its waitFor objects", "app", c.name, "revision", short(head))
			continue
		}
		if dep := l.runningDependency(sh.config, c.app, head, skipped); dep != "" {
			// dep may change the ConfigMaps and Secrets its post-build
			// reads: it runs after dep, and checks its inputs then.
			s.recheckInputs = true
			r.log.Info("inputs unchanged, checked again after a dependency", "app", c.name, "dependency", dep, "revision", short(head))
			continue
		}
		r.markUnchanged(s, head, c.rev)
	}
}

// markUnchanged marks s, whose inputs at head are those of its last
// successful run at rev, delivered at head without a run. Called with
// r.mu held.
func (r *Reconciler) markUnchanged(s *appState, head, rev string) {
	s.Revision, s.Message = head, "unchanged: inputs as of "+short(rev)
	r.metrics.unchanged.WithLabelValues(s.App).Inc()
	r.log.Info("unchanged", "app", s.App, "revision", short(head), "reason", "unchanged")
}

// runningDependency returns an app that app a depends on (directly or
// not) and that runs at head, when a's post-build reads variables from
// the cluster (which that app may deliver): neither skipped as unchanged
// nor delivered at head already. "" otherwise. Called with r.mu held.
func (l *leaderLoop) runningDependency(cfg *config.Resolved, a config.ResolvedApp, head string, skipped map[string]bool) string {
	if !a.ReadsClusterVars() || cfg == nil {
		return ""
	}
	for _, d := range cfg.Dependencies(a.Name) {
		ds, ok := l.r.apps[d]
		if ok && !skipped[d] && ds.Revision != head {
			return d
		}
	}
	return ""
}

// recheckOutcome is what recheck decided for a run.
type recheckOutcome int

const (
	// recheckRun: the run goes on and renders.
	recheckRun recheckOutcome = iota
	// recheckDelivered: the inputs were unchanged, the app is marked
	// delivered without a run.
	recheckDelivered
	// recheckWait: the inputs were unchanged, but the app has waitFor
	// objects: the run plans from its inventory and waits for them.
	recheckWait
)

// recheck checks again, in the run that its dependencies' delivery at
// rev allowed, the inputs of an app marked recheckInputs: unchanged (the
// ConfigMaps and Secrets its post-build reads are as they were), it is
// marked delivered at rev without a run, as skipUnchanged does, or, with
// waitFor objects, runs only to wait for them.
func (l *leaderLoop) recheck(ctx context.Context, name, rev, reason string, sh *sharedSnap) recheckOutcome {
	r := l.r
	r.mu.Lock()
	s := r.apps[name]
	if s == nil || !s.recheckInputs {
		r.mu.Unlock()
		return recheckRun
	}
	s.recheckInputs = false
	app, inputs, prev, requested := s.app, s.inputs, s.Revision, s.serving != ""
	r.mu.Unlock()
	if !strings.HasPrefix(reason, "revision ") || requested || inputs == nil || rev != sh.snap.Commit {
		return recheckRun // a request, or anything but a new revision, runs
	}
	same := false
	l.inputsCheck(sh, func(check *pipeline.InputsCheck) {
		same = check.Unchanged(ctx, app, inputs)
	})
	if !same {
		return recheckRun
	}
	if len(app.WaitFor) > 0 {
		return recheckWait
	}
	r.mu.Lock()
	if s := r.apps[name]; s != nil && s.inputs == inputs && len(s.drift) == 0 {
		s.running, s.serving = false, ""
		s.Result = apply.ResultSucceeded
		r.markUnchanged(s, rev, prev)
	} else {
		r.mu.Unlock()
		return recheckRun
	}
	r.mu.Unlock()
	r.writeStatus(ctx)
	notify(r.wake)
	return recheckDelivered
}

// inputsCheck calls f with a check of inputs against sh's revision,
// closed after f: the hashes of its files are computed once for every
// app f checks. The session's discovery tells what a Helm chart sees of
// the cluster, as in the runs.
func (l *leaderLoop) inputsCheck(sh *sharedSnap, f func(*pipeline.InputsCheck)) {
	po := l.r.opts.Pipeline
	po.Session = l.mgr.Session()
	check := pipeline.NewInputsCheck(sh.snap, po)
	defer check.Close()
	f(check)
}

func (l *leaderLoop) sourceFailed(ctx context.Context, msg string) {
	r := l.r
	r.log.Warn("fetch failed", "err", msg)
	r.mu.Lock()
	r.sourceErr = msg
	r.mu.Unlock()
	r.writeStatus(ctx)
}

// appRef is an app's name and dependencies, and its configuration.
type appRef struct {
	Name      string
	DependsOn []string
	app       config.ResolvedApp
}

// readApps reads the app list from deliver.yaml, or the one app of
// Options.Manifests.
func readApps(snap *source.Snapshot, po pipeline.Options) ([]appRef, *config.Resolved, error) {
	res, err := pipeline.LoadConfig(snap, po)
	if err != nil {
		return nil, nil, err
	}
	out := make([]appRef, 0, len(res.Apps))
	for _, a := range res.Apps {
		out = append(out, appRef{Name: a.Name, DependsOn: a.DependsOn, app: a})
	}
	return out, res, nil
}

// schedule starts the runs that are due and whose dependencies are
// delivered at the current commit, and returns how long until the next
// one may become due without an event.
func (l *leaderLoop) schedule(ctx context.Context) time.Duration {
	r := l.r
	counted := l.justFetched
	l.justFetched = false
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	next := r.opts.Interval
	later := func(t time.Time) {
		if d := t.Sub(now); d < next {
			next = d
		}
	}
	running := 0
	for _, s := range r.apps {
		if s.running {
			running++
		}
	}
	for _, name := range r.order {
		s := r.apps[name]
		if s.running || r.head == "" {
			continue
		}
		if suspended := r.suspended(s); suspended != s.Suspended {
			s.Suspended = suspended
			if suspended {
				msg := "suspended: no run until resumed"
				if s.app.Suspend {
					msg = "suspended in deliver.yaml: no run until a commit resumes it"
				}
				r.log.Info("suspended", "app", name, "inGit", s.app.Suspend)
				r.event(name, corev1.EventTypeNormal, ReasonSuspended, "%s", msg)
			} else {
				r.log.Info("resumed", "app", name)
				r.event(name, corev1.EventTypeNormal, ReasonResumed, "resumed")
			}
		}
		r.notePin(s)
		if r.shards != nil && !r.shards.owns(name) {
			continue // another replica's
		}
		req := r.pendingRequest(s)
		if s.Suspended {
			r.requestSuspended(s, req)
			continue
		}
		reason, at := r.due(s, now, l.tr)
		if reason == "" && req != "" {
			reason = "requested at " + r.opts.Pipeline.Redactor.Redact(req)
		}
		if l.holdByWindow(s, reason) {
			continue
		}
		if reason == "" {
			if !at.IsZero() {
				later(at)
			}
			if counted && s.Result == apply.ResultSucceeded && len(s.drift) == 0 {
				s.UpToDateChecks++
				r.metrics.upToDate.WithLabelValues(name).Inc()
			}
			continue
		}
		if dep := r.blockedBy(s); dep != "" {
			s.Result, s.Message = ResultWaiting, fmt.Sprintf("waiting for %s to be delivered at %.12s", dep, r.head)
			if r.suspended(r.apps[dep]) {
				s.Message += " (it is suspended)"
			}
			continue
		}
		if running >= r.opts.MaxConcurrentRuns {
			continue // woken when a run ends
		}
		running++
		s.running, s.Result, s.Message = true, ResultRunning, reason
		s.inputMoved = "" // this run reads it anew
		s.serving = req
		rev := r.target(s)
		// Only the run of the head that found its inputs unchanged
		// plans from the inventory; a retry or a request renders.
		fromInventory := s.waitOnly == rev && req == "" && strings.HasPrefix(reason, "revision ")
		s.waitOnly = ""
		sh := l.cur.acquire()
		l.runs.Add(1)
		go func() {
			defer l.runs.Done()
			defer sh.release()
			l.run(ctx, name, rev, reason, sh, fromInventory)
		}()
	}
	if at := l.schedulePrune(ctx, now); !at.IsZero() {
		later(at)
	}
	return next
}

// due says why s must run now, or else when it may be due (zero: only
// on an event).
func (r *Reconciler) due(s *appState, now time.Time, tr *tracker) (reason string, at time.Time) {
	backingOff := s.Failures > 0 && now.Before(s.NextRetry)
	head := r.target(s)
	switch {
	case s.Revision != head && s.failedRev != head:
		return "revision " + short(head), time.Time{}
	case backingOff:
		return "", s.NextRetry
	case s.Revision != head:
		return fmt.Sprintf("retry %d of revision %s", s.Failures, short(head)), time.Time{}
	case s.Failures > 0:
		return fmt.Sprintf("retry %d", s.Failures), time.Time{}
	}
	if len(s.drift) > 0 {
		// A single pass has none of its own writes to wait out.
		if settled := s.driftSince.Add(r.opts.DriftSettle); now.Before(settled) && !r.opts.Once {
			return "", settled
		}
		// Check again: the watch events of deliver's own last writes may
		// have arrived since.
		for id := range s.drift {
			if !tr.drifted(s.App, id) {
				delete(s.drift, id)
			}
		}
		if len(s.drift) > 0 && !r.opts.DisableSelfHeal {
			return fmt.Sprintf("drift of %d objects", len(s.drift)), time.Time{}
		}
	}
	if s.inputMoved != "" {
		return s.inputMoved, time.Time{}
	}
	if r.opts.FullResync > 0 && !s.LastRun.IsZero() {
		resync := s.LastRun.Add(r.opts.FullResync)
		if !now.Before(resync) {
			return "full resync", time.Time{}
		}
		return "", resync
	}
	return "", time.Time{}
}

// blockedBy returns a dependency of s not yet delivered at the current
// commit, or suspended, or "". A suspended dependency blocks even when it
// is at the commit, as in Flux (a suspended Kustomization is not Ready at
// its generation) and as deliver apply skips the apps that depend on one.
func (r *Reconciler) blockedBy(s *appState) string {
	for _, d := range s.dependsOn {
		ds, ok := r.apps[d]
		if !ok {
			continue // filtered out with Options.Pipeline.Apps
		}
		if ds.running || r.suspended(ds) || ds.Revision != r.target(ds) {
			return d
		}
	}
	return ""
}

// run delivers one app at rev and records the outcome. fromInventory
// lets the pipeline plan it from its inventory when its inputs and
// objects are unchanged (see waitOnly); otherwise it renders.
func (l *leaderLoop) run(ctx context.Context, name, rev, reason string, sh *sharedSnap, fromInventory bool) {
	r := l.r
	switch l.recheck(ctx, name, rev, reason, sh) {
	case recheckDelivered:
		return
	case recheckWait:
		fromInventory = true
	}
	po := r.opts.Pipeline
	po.Ref = rev
	po.Snapshot = sh.snap
	po.Config = sh.config
	pinnedSource(&po, rev)
	// The loop decided this app must run (its inputs changed, drift, a
	// retry, a full resync): the run renders, whatever its inventory
	// says; unless it runs only to wait for its waitFor objects.
	po.ForceRender = !fromInventory
	// The loop checked the change windows on its own clock (windows.go).
	po.IgnoreWindows = true
	if po.Manifests == "" {
		po.Apps = []string{name}
	}
	cfg := r.opts.Target
	po.Kube = func(string) (*rest.Config, error) { return cfg, nil }
	// A shard may have just taken the app over from a replica that was
	// delivering it: the new revision is applied only if that replica did
	// not, as the inventory says under the app's lock.
	po.UnlessDelivered = r.shards != nil && strings.HasPrefix(reason, "revision ")
	po.Session = l.mgr.Session()
	log := r.log.With("app", name, "revision", short(rev))
	log.Info("run", "reason", reason)
	note := r.notifyStart(name, rev, sh.config)
	if r.opts.OnRun != nil {
		r.opts.OnRun(RunEvent{App: name, Revision: rev, Reason: reason})
	}
	start := time.Now()
	res, err := pipeline.Apply(ctx, po)
	dur := time.Since(start)
	var ar *pipeline.AppResult
	if res != nil {
		for _, a := range res.Apps {
			if a.Name == name {
				ar = a
			}
		}
		if err == nil {
			err = res.Err()
		}
	}
	if ar == nil && err == nil {
		err = fmt.Errorf("app %s: not found at %s", name, short(rev))
	}
	// Told before the status is written, which records what was told.
	note.done(ctx, ar, err, dur)
	l.finish(ctx, name, rev, ar, err, dur)
}

// finish records a run: status, metrics, the app's new inventory for
// drift detection, and the status ConfigMap.
func (l *leaderLoop) finish(ctx context.Context, name, rev string, ar *pipeline.AppResult, err error, dur time.Duration) {
	r := l.r
	log := r.log.With("app", name, "revision", short(rev), "duration", dur.Round(time.Millisecond))
	// The inventory is read even after a failure, which may have changed
	// objects too; with a cancelled ctx still, briefly, for a correct
	// final status.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var inputs *apply.Inputs
	if inv, ierr := l.mgr.ReadInventory(ictx, name); ierr == nil {
		l.tr.setInventory(name, r.userOf(name), inv)
		l.tr.ensureKinds(ctx, false)
		if inv.Result == apply.ResultSucceeded {
			inputs = inv.Inputs
		}
	} else {
		log.Warn("read inventory", "err", ierr)
	}
	interrupted := ctx.Err() != nil
	now := time.Now()

	r.mu.Lock()
	s := r.apps[name]
	if s == nil { // left deliver.yaml during the run
		s = &appState{AppStatus: AppStatus{App: name}}
	}
	prevRev := s.Revision
	s.running = false
	s.inputs = inputs
	s.LastRun, s.Duration = now, dur
	result := apply.ResultSucceeded
	delivered := errors.Is(err, apply.ErrDelivered)
	if !interrupted && !delivered {
		// A run that applied nothing, since another replica delivered
		// the revision, served no request: one its previous owner
		// served is known from the status (takeOverRequests), another
		// gets a run of its own.
		r.served(s)
	}
	s.serving = ""
	switch {
	case interrupted:
		result = "interrupted"
		s.Result, s.Message = apply.ResultFailed, "interrupted: the reconciler stopped"
	case delivered:
		// Another replica of the shard group delivered it first.
		s.Failures, s.failedRev, s.NextRetry = 0, "", time.Time{}
		s.Revision, s.LastSuccess = rev, now
		s.Result, s.Message = apply.ResultSucceeded, ""
		log.Info("delivered by another replica")
	case err != nil:
		result = apply.ResultFailed
		s.Failures++
		s.failedRev = rev
		wait := backoff(s.Failures, r.opts.RetryBase, r.opts.RetryMax)
		s.NextRetry = now.Add(wait)
		s.Result, s.Message = apply.ResultFailed, err.Error()
		log.Error("run failed", "err", err, "failures", s.Failures, "retry_in", wait.Round(time.Millisecond))
	default:
		s.Failures, s.failedRev, s.NextRetry = 0, "", time.Time{}
		s.Revision, s.LastSuccess = rev, now
		s.Result, s.Message = apply.ResultSucceeded, ""
		if ar != nil && ar.Unchanged {
			// Planned from its inventory, to wait for its waitFor.
			s.Message = "unchanged: inputs as of " + short(prevRev) + "; waitFor objects ready"
		}
		summary := ""
		if ar != nil && ar.Report != nil {
			summary = ar.Report.Summary()
		}
		log.Info("run succeeded", "report", summary)
	}
	// What drifted before is either reverted or still differs from the
	// new inventory; look again, after the settle delay.
	s.drift = map[string]bool{}
	for _, id := range l.tr.driftedObjects(name) {
		s.drift[id] = true
	}
	s.driftSince = now
	r.mu.Unlock()

	if delivered {
		r.writeStatus(ictx)
		notify(r.wake)
		return
	}
	if !interrupted {
		r.metrics.observeRun(name, rev, result, dur, ar)
	}
	r.runEvents(name, rev, prevRev, ar, err, interrupted)
	r.writeStatus(ictx)
	if r.opts.OnRun != nil {
		e := RunEvent{App: name, Revision: rev, Ended: true, Duration: dur}
		r.mu.Lock()
		e.Result, e.Message = s.Result, s.Message
		r.mu.Unlock()
		switch {
		case ar != nil && ar.Plan != nil:
			e.Plan = ar.Plan
		case ar != nil && ar.Report != nil:
			e.Plan = ar.Report.Plan
		}
		r.opts.OnRun(e)
	}
	notify(r.wake)
}

// noteDrift is the tracker's callback for an object that differs from
// what deliver applied.
func (r *Reconciler) noteDrift(app, id, why string) {
	r.mu.Lock()
	s := r.apps[app]
	if s == nil {
		r.mu.Unlock()
		return
	}
	if s.drift == nil {
		s.drift = map[string]bool{}
	}
	fresh := !s.drift[id]
	if fresh {
		if len(s.drift) == 0 {
			s.driftSince = time.Now()
		}
		s.drift[id] = true
	}
	running := s.running
	r.mu.Unlock()
	if fresh && !running {
		// While the app runs, the run's own writes show up here; they
		// are sorted out when it ends.
		r.log.Info("drift", "app", app, "object", id, "change", why, "self_heal", !r.opts.DisableSelfHeal)
		r.metrics.drift.WithLabelValues(app).Inc()
		r.event(app, corev1.EventTypeNormal, ReasonDriftDetected, "%s: %s", id, why)
	}
	notify(r.wake)
}

// suspended reports whether s is paused: by deliver.yaml at the current
// commit, Options, its inventory's annotation or ControlConfigMap.
// Called with r.mu held.
func (r *Reconciler) suspended(s *appState) bool {
	return s.app.Suspend || r.suspendedByOptions(s.App) || r.invs().get(s.App).suspended || r.ctl.Load().pausedAll()
}

// controlChanged is the ControlConfigMap watcher's callback.
func (r *Reconciler) controlChanged(suspendChanged, requested bool) {
	if suspendChanged {
		r.log.Info("pause of every app changed", "paused", r.ctl.Load().pausedAll())
		notify(r.wake)
	}
	if requested {
		r.log.Info("fetch requested through " + ControlConfigMap)
		r.Trigger()
	}
}

// busy reports whether a run is under way.
func (r *Reconciler) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.apps {
		if s.running {
			return true
		}
	}
	return false
}

// onceResult is Run's outcome with Options.Once: the source's failure, or
// the apps whose run failed or that wait for one that did.
func (r *Reconciler) onceResult() error {
	st := r.Status()
	if st.SourceError != "" {
		return fmt.Errorf("reconcile: source: %s", st.SourceError)
	}
	var errs []error
	for _, a := range st.Apps {
		if a.Result == apply.ResultFailed || a.Result == ResultWaiting && !r.waitsForSuspended(a.App) {
			errs = append(errs, fmt.Errorf("app %s: %s: %s", a.App, a.Result, a.Message))
		}
	}
	return errors.Join(errs...)
}

// waitsForSuspended reports whether app waits for a suspended app, directly
// or through dependencies that wait for it: what suspending that app asks
// for, as deliver apply skips them, not a failure of the pass.
func (r *Reconciler) waitsForSuspended(app string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for s := r.apps[app]; s != nil && !seen[s.App]; {
		seen[s.App] = true
		dep := r.apps[r.blockedBy(s)]
		switch {
		case dep == nil:
			return false
		case r.suspended(dep):
			return true
		case dep.Result != ResultWaiting:
			return false
		}
		s = dep
	}
	return false
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
