package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// ErrLocked is wrapped by the error of an apply that could not take the
// app's lock because another deliver (CI, the reconciler) is applying it.
var ErrLocked = errors.New("app is being applied by another deliver")

// ErrLockLost is wrapped by the error of a run that lost the app's lock
// while it ran: it could not renew the lock in time (the API server
// stalled or could not be reached), or found it taken by another run. The
// run stops before its next write, and leaves the lock held so that the
// next run knows it was cut short (as if it had been killed).
var ErrLockLost = errors.New("lock lost")

// DefaultLockLease is the default of Options.LockLease.
const DefaultLockLease = 30 * time.Second

// lockOptions time an app's lock. They derive from Options.LockLease, the
// way client-go's leader election relates LeaseDuration, RenewDeadline
// and RetryPeriod.
type lockOptions struct {
	// lease is how long a waiting run must see the Lease unchanged before
	// it takes it over: the time a holder that stopped renewing (killed,
	// or cut off from the API server) keeps the lock.
	lease time.Duration
	// renewEvery is how long the holder waits after a renewal before the
	// next one: a third of lease.
	renewEvery time.Duration
	// renewDeadline is how long after its last successful renewal (from
	// when that request was sent) the holder gives the lock up and stops
	// writing: two thirds of lease. The third left is the margin for the
	// waiter's later observation and for writes cut off in flight.
	renewDeadline time.Duration
	// retry is the wait after a failed renewal.
	retry time.Duration
	// poll is how often a waiting run reads the Lease.
	poll time.Duration
	// clock measures all of the above. Its readings are local and, from
	// the real clock, monotonic: no decision compares a time written by
	// another host with this host's wall clock.
	clock clock.PassiveClock
}

func newLockOptions(lease time.Duration, clk clock.PassiveClock) lockOptions {
	// The Lease records its duration in whole seconds.
	lease = max(time.Second, lease.Round(time.Second))
	return lockOptions{
		lease:         lease,
		renewEvery:    lease / 3,
		renewDeadline: lease * 2 / 3,
		retry:         max(100*time.Millisecond, lease/15),
		poll:          min(500*time.Millisecond, lease/4),
		clock:         clk,
	}
}

// appLock is a Lease per app in the inventory namespace, held for the
// duration of one Execute so that two processes never interleave writes to
// the same app.
//
// It is written against the Lease directly rather than with client-go's
// leaderelection.LeaderElector, which is built for long-lived leaders that
// campaign until cancelled: this is a one-shot try-lock with a deadline,
// which must name the holder when it gives up (ErrLocked), tell a lock
// taken over from a run that never released it (tookOver) from a free
// one, create the inventory namespace on first use, and not log through
// klog into deliver's output. Its safety rules are leaderelection's: a
// waiter judges expiry only by how long it has itself seen the Lease
// unchanged (leaseObserver), and the holder stops writing once it has not
// renewed for renewDeadline, a third of the lease before any waiter may
// take over.
type appLock struct {
	m        *Manager
	app      string
	name     string
	identity string
	opts     lockOptions
	leases   coordinationclient.LeaseInterface

	// tookOver says the Lease was taken from a holder that never released
	// it: a run that died (SIGKILL, a lost node) or lost its lock, and may
	// have written objects without recording them in the inventory.
	tookOver bool
	// createFirst makes the first attempt create the Lease without
	// reading it (see lock).
	createFirst bool
	// created says this lock created the app's Lease: no run of deliver
	// held the app's lock before (deliver never deletes these Leases), so
	// none can have written its inventory since it was found missing
	// ahead of the lock (see planInventory).
	created bool

	// guard is cancelled, with the reason wrapping ErrLockLost, when the
	// lock is lost; it also cancels the run's context (see lock) and is
	// the context of the writes that outlive a stop (see detach).
	guard     context.Context
	loseGuard context.CancelCauseFunc
	stopRun   context.CancelCauseFunc
	unwatch   func() bool

	stop chan struct{}
	done sync.WaitGroup

	// mu guards lease, the Lease as last written by this holder (renewal
	// and release update it without reading it again), and renewed, the
	// local time at which the request that wrote it was sent.
	mu      sync.Mutex
	lease   *coordinationv1.Lease
	renewed time.Time
}

func lockName(app string) string { return "deliver-lock-" + app }

// guardKey is the context key under which a run's context carries its
// lock's guard.
type guardKey struct{}

// detach returns the context for a write that finishes even when the run
// is being stopped (an apply in flight, the final inventory write): it is
// not cancelled with ctx, but it is when the run's lock is lost, after
// which the run may write nothing more.
func detach(ctx context.Context) context.Context {
	if g, ok := ctx.Value(guardKey{}).(context.Context); ok {
		return g
	}
	return context.WithoutCancel(ctx)
}

// lock takes the app's Lease, waiting up to LockTimeout for another holder
// to finish, and keeps renewing it until unlock. The context it returns is
// the run's: ctx, also cancelled when the lock is lost, with the reason
// as its cause.
func (m *Manager) lock(ctx context.Context, app string) (*appLock, context.Context, error) {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	l := &appLock{
		m:        m,
		app:      app,
		name:     lockName(app),
		identity: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		opts:     m.lockOpts,
		leases:   m.kube.CoordinationV1().Leases(m.opts.InventoryNamespace),
		stop:     make(chan struct{}),
	}
	// An app whose inventory was read ahead and found missing has most
	// likely never been delivered, so has no Lease either: the first
	// attempt creates it rather than reading it first (a request less
	// for each new app; a Lease that exists after all is read then).
	if p := m.prefetched(ctx, app, false); p != nil && p.invErr == nil && p.invVersion == "" {
		l.createFirst = true
	}
	where := m.opts.InventoryNamespace + "/" + l.name
	obs := &leaseObserver{opts: l.opts}
	deadline := l.opts.clock.Now().Add(m.opts.LockTimeout)
	var held *coordinationv1.Lease
	var lastErr error
	for {
		// An attempt is bounded: a stalled API server must not hold the
		// waiter past its LockTimeout.
		actx, cancel := context.WithTimeout(ctx, l.opts.renewDeadline)
		h, err := l.tryAcquire(actx, obs)
		cancel()
		if err == nil && h == nil {
			break
		}
		switch {
		case err == nil:
			held, lastErr = h, nil
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("lock %s: %w", where, context.Cause(ctx))
		case !transient(err) || held == nil:
			// A server that cannot be reached at all fails the run at
			// once; one that stalls while this run waits is waited for.
			return nil, nil, fmt.Errorf("lock %s: %w", where, err)
		default:
			lastErr = err
		}
		if !l.opts.clock.Now().Before(deadline) {
			var last error = ErrLocked
			if lastErr != nil { // the Lease could not even be read lately
				last = fmt.Errorf("%w (last read: %w)", ErrLocked, lastErr)
			}
			since := "unknown time"
			if held.Spec.AcquireTime != nil {
				since = held.Spec.AcquireTime.UTC().Format(time.RFC3339)
			}
			return nil, nil, fmt.Errorf("lock %s: %w: held by %s since %s (waited %s)", where, last, holderOf(held), since, m.opts.LockTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("lock %s: %w", where, context.Cause(ctx))
		case <-time.After(l.opts.poll):
		}
	}

	// The guard ignores ctx (a stopped run still finishes its writes in
	// flight) but ends with the lock; the run's context ends with either.
	l.guard, l.loseGuard = context.WithCancelCause(context.WithoutCancel(ctx))
	run, stopRun := context.WithCancelCause(ctx)
	l.stopRun = stopRun
	l.unwatch = context.AfterFunc(l.guard, func() { stopRun(context.Cause(l.guard)) })
	l.done.Add(1)
	go l.keep()
	return l, context.WithValue(run, guardKey{}, l.guard), nil
}

// tryAcquire takes the Lease if it is free or expired; otherwise it
// returns the Lease that holds it. The Lease is read first: after an app's
// first run it exists, so a create would only fail; unless createFirst
// says the app looks new.
func (l *appLock) tryAcquire(ctx context.Context, obs *leaseObserver) (*coordinationv1.Lease, error) {
	sent := l.opts.clock.Now()
	now := metav1.NewMicroTime(sent) // for people and RunState: no decision reads it back
	secs := int32(l.opts.lease / time.Second)
	mine := coordinationv1.LeaseSpec{HolderIdentity: &l.identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}
	var (
		cur *coordinationv1.Lease
		err error
	)
	if l.createFirst {
		l.createFirst = false
		err = apierrors.NewNotFound(coordinationv1.Resource("leases"), l.name)
	} else {
		cur, err = l.leases.Get(ctx, l.name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.m.opts.InventoryNamespace}, Spec: mine}
		// err, not a new one: after AlreadyExists the Get below must
		// decide what follows, not the NotFound that led here (a run
		// whose app looked new but had a Lease from a failed first run
		// failed with that NotFound, forever).
		var created *coordinationv1.Lease
		created, err = createInNamespace(ctx, l.m, func() (*coordinationv1.Lease, error) {
			return l.leases.Create(ctx, lease, metav1.CreateOptions{})
		})
		switch {
		case err == nil:
			l.lease, l.renewed, l.created = created, sent, true
			return nil, nil
		case apierrors.IsAlreadyExists(err): // created by another run meanwhile
			cur, err = l.leases.Get(ctx, l.name, metav1.GetOptions{})
		default:
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	held := holderOf(cur) != ""
	if held && !obs.expired(cur) {
		return cur, nil
	}
	// Free (released) or left by a holder that stopped renewing: take it,
	// with the resourceVersion as precondition so that only one taker wins.
	take := cur.DeepCopy()
	take.Spec = mine
	take.Spec.LeaseTransitions = cur.Spec.LeaseTransitions
	if held {
		take.Spec.LeaseTransitions = ptrTo(ptrValue(cur.Spec.LeaseTransitions) + 1)
	}
	taken, err := l.leases.Update(ctx, take, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) {
			return cur, nil // someone else wrote it first
		}
		return nil, err
	}
	l.lease, l.renewed = taken, sent
	l.tookOver = held // a holder that never released it
	return nil, nil
}

// leaseObserver judges whether the Lease of another run expired the way
// client-go's leader election does (LeaderElector's observedRecord and
// observedTime): by the local, monotonic time since this waiter first saw
// the current record. The RenewTime in the Lease is another host's wall
// clock, which may be off by any amount: comparing it with ours would let
// a waiter take over a lock that its holder is renewing.
type leaseObserver struct {
	opts lockOptions
	seen leaseRecord
	at   time.Time // when seen was first observed, on opts.clock
}

// leaseRecord is what changes when a holder renews or hands on a Lease.
type leaseRecord struct {
	holder, renewTime, resourceVersion string
}

// expired observes lease and says whether it has been seen unchanged for
// the lease duration its holder declared (ours when it declares none). A
// Lease seen for the first time, or changed since last seen, is not.
func (o *leaseObserver) expired(lease *coordinationv1.Lease) bool {
	r := leaseRecord{holder: holderOf(lease), resourceVersion: lease.ResourceVersion}
	if lease.Spec.RenewTime != nil {
		r.renewTime = lease.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	now := o.opts.clock.Now()
	if o.at.IsZero() || r != o.seen {
		o.seen, o.at = r, now
		return false
	}
	d := o.opts.lease
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		d = time.Duration(*s) * time.Second
	}
	return now.Sub(o.at) >= d
}

// keep renews the Lease until unlock, and gives the lock up (cancelling
// the run) when it could not renew it for renewDeadline or finds it
// taken.
func (l *appLock) keep() {
	defer l.done.Done()
	wait := l.opts.renewEvery
	for {
		t := time.NewTimer(wait)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
		left := l.left()
		if left <= 0 {
			l.lose(fmt.Errorf("not renewed for %s", l.opts.renewDeadline))
			return
		}
		taken, err := l.renew(left)
		if taken != nil {
			l.lose(taken)
			return
		}
		if err == nil {
			wait = l.opts.renewEvery
			continue
		}
		if left = l.left(); left <= 0 {
			l.lose(fmt.Errorf("not renewed for %s: %w", l.opts.renewDeadline, err))
			return
		}
		wait = min(l.opts.retry, left)
	}
}

// left is how long the lock stays valid for its holder without a renewal.
func (l *appLock) left() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opts.renewDeadline - l.opts.clock.Since(l.renewed)
}

// lose gives the lock up: the run stops before its next write.
func (l *appLock) lose(reason error) {
	l.loseGuard(fmt.Errorf("app %s: %w: %w", l.app, ErrLockLost, reason))
}

// renew writes a new RenewTime, within left. It returns taken when the
// Lease is no longer this run's, and err for a renewal that failed but
// may be retried.
func (l *appLock) renew(left time.Duration) (taken, err error) {
	ctx, cancel := context.WithTimeout(l.guard, left)
	defer cancel()
	l.mu.Lock()
	lease := l.lease.DeepCopy()
	l.mu.Unlock()
	sent := l.opts.clock.Now()
	now := metav1.NewMicroTime(sent)
	lease.Spec.RenewTime = &now
	updated, err := l.leases.Update(ctx, lease, metav1.UpdateOptions{})
	if err == nil {
		l.mu.Lock()
		l.lease, l.renewed = updated, sent
		l.mu.Unlock()
		return nil, nil
	}
	if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return nil, err
	}
	// Someone wrote the Lease: another run, or a renewal of ours that
	// timed out here but reached the server.
	cur, gerr := l.leases.Get(ctx, l.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(gerr):
		return fmt.Errorf("lease %s/%s was deleted", l.m.opts.InventoryNamespace, l.name), nil
	case gerr != nil:
		return nil, errors.Join(err, gerr)
	case holderOf(cur) != l.identity:
		return fmt.Errorf("taken over by %s", holderOf(cur)), nil
	}
	// Still ours. Its renewal was sent after l.renewed, which therefore
	// stays: the deadline only errs on the safe side.
	l.mu.Lock()
	l.lease = cur
	l.mu.Unlock()
	return nil, err
}

// lost returns why the lock was lost, or nil.
func (l *appLock) lost() error {
	if l.guard.Err() == nil {
		return nil
	}
	return context.Cause(l.guard)
}

// unlock stops renewing and releases the Lease by clearing its holder. A
// lost lock is left as it is: a run that took it over already holds it,
// and otherwise the next run must learn, as from a killed run's lock,
// that this run was cut short (see tookOver).
func (l *appLock) unlock() {
	close(l.stop)
	l.done.Wait()
	defer func() {
		l.unwatch()
		l.stopRun(context.Canceled)
		l.loseGuard(context.Canceled)
	}()
	if l.lost() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.guard, 10*time.Second)
	defer cancel()
	// The renewer has stopped: l.lease is the last version written. A
	// conflict means another run took the lock over: leave it.
	lease := l.lease.DeepCopy()
	empty := ""
	lease.Spec.HolderIdentity = &empty
	_, _ = l.leases.Update(ctx, lease, metav1.UpdateOptions{})
}

// result is the error of a run that held the lock: when the lock was lost
// while the run failed, the loss comes first, since it is why the run
// stopped. A run that completed before the loss succeeded: each of its
// writes was answered while the lock was held (the writes are cut off
// when it is lost, see detach).
func (l *appLock) result(err error) error {
	cause := l.lost()
	if err == nil || cause == nil || !errors.Is(cause, ErrLockLost) {
		return err
	}
	return &lostError{cause: cause, run: err}
}

// lostError is the error of a run stopped by the loss of its lock.
type lostError struct{ cause, run error }

// Error says why the lock was lost, then where the run stopped, without
// repeating the cause, which the run's own error wraps.
func (e *lostError) Error() string {
	return e.cause.Error() + "; the run stopped: " + strings.ReplaceAll(e.run.Error(), ": "+e.cause.Error(), "")
}

func (e *lostError) Unwrap() []error { return []error{e.cause, e.run} }

// transient says whether a failed read or write of the Lease may succeed
// when tried again: the API server was slow, overloaded or unreachable.
func transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) ||
		utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		utilnet.IsTimeout(err) || utilnet.IsHTTP2ConnectionLost(err)
}

func holderOf(lease *coordinationv1.Lease) string {
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

func ptrTo[T any](v T) *T { return &v }

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// RunState is what an app's lock says about its runs.
type RunState struct {
	// Holder identifies the run that holds the lock or, when Stale, the
	// run that held it last and never released it ("" when free).
	Holder string `json:"holder,omitempty"`
	// Since is when Holder took the lock.
	Since time.Time `json:"since,omitzero"`
	// Stale says Holder stopped renewing the lock without releasing it: a
	// run that was killed. The next run takes the lock over.
	Stale bool `json:"stale,omitempty"`
}

// UnderWay reports whether a run holds the lock now.
func (s RunState) UnderWay() bool { return s.Holder != "" && !s.Stale }

// RunState reads app's lock: whether a run of it is under way, or the
// last one was killed. A run that only updates objects the inventory
// already lists does not write the inventory before it starts (its lock
// says it is under way); see Execute.
func (m *Manager) RunState(ctx context.Context, app string) (RunState, error) {
	lease, err := m.kube.CoordinationV1().Leases(m.opts.InventoryNamespace).Get(ctx, lockName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return RunState{}, nil
	}
	if err != nil {
		return RunState{}, fmt.Errorf("lock %s/%s: %w", m.opts.InventoryNamespace, lockName(app), err)
	}
	var st RunState
	st.Holder = holderOf(lease)
	if lease.Spec.AcquireTime != nil {
		st.Since = lease.Spec.AcquireTime.UTC()
	}
	st.Stale = st.Holder != "" && looksStale(lease, m.lockOpts.clock.Now())
	return st, nil
}

// looksStale says whether the holder of lease seems to have stopped
// renewing it, by its RenewTime on our wall clock. A single read can judge
// no better; it is only shown (deliver status), never used to decide who
// may write: that is leaseObserver's job.
func looksStale(lease *coordinationv1.Lease, now time.Time) bool {
	return lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil ||
		now.Sub(lease.Spec.RenewTime.Time) > time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second
}
