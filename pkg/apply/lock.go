package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrLocked is wrapped by the error of an apply that could not take the
// app's lock because another deliver (CI, the reconciler) is applying it.
var ErrLocked = errors.New("app is being applied by another deliver")

// lockDuration is how long a lock outlives a holder that stopped renewing
// it (a killed process): the next run takes it over after that.
const lockDuration = 30 * time.Second

// appLock is a Lease per app in the inventory namespace, held for the
// duration of one Execute so that two processes never interleave writes to
// the same app. client-go's leaderelection is built for long-lived leaders
// that campaign forever; this is a one-shot try-lock with a deadline, which
// is simpler written against the Lease directly.
type appLock struct {
	m        *Manager
	name     string
	identity string
	stop     chan struct{}
	done     sync.WaitGroup

	// tookOver says the Lease was taken from a holder that never released
	// it: a run that died (SIGKILL, a lost node) and may have written
	// objects without recording them in the inventory.
	tookOver bool

	// mu guards lease, the Lease as last written by this holder: renewal
	// and release update it without reading it again.
	mu    sync.Mutex
	lease *coordinationv1.Lease
}

func lockName(app string) string { return "deliver-lock-" + app }

// lock takes the app's Lease, waiting up to LockTimeout for another holder
// to finish, and keeps renewing it until unlock.
func (m *Manager) lock(ctx context.Context, app string) (*appLock, error) {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	l := &appLock{m: m, name: lockName(app), identity: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])), stop: make(chan struct{})}
	leases := m.kube.CoordinationV1().Leases(m.opts.InventoryNamespace)
	deadline := time.Now().Add(m.opts.LockTimeout)
	for {
		held, err := l.tryAcquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("lock %s/%s: %w", m.opts.InventoryNamespace, l.name, err)
		}
		if held == nil {
			break
		}
		if time.Now().After(deadline) {
			since := "unknown time"
			if held.Spec.AcquireTime != nil {
				since = held.Spec.AcquireTime.UTC().Format(time.RFC3339)
			}
			holder := ""
			if held.Spec.HolderIdentity != nil {
				holder = *held.Spec.HolderIdentity
			}
			return nil, fmt.Errorf("lock %s/%s: %w: held by %s since %s (waited %s)", m.opts.InventoryNamespace, l.name, ErrLocked, holder, since, m.opts.LockTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		t := time.NewTicker(lockDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.mu.Lock()
				lease := l.lease.DeepCopy()
				l.mu.Unlock()
				now := metav1.NewMicroTime(time.Now())
				lease.Spec.RenewTime = &now
				// A conflict means someone else wrote it: ours no longer.
				if updated, err := leases.Update(context.Background(), lease, metav1.UpdateOptions{}); err == nil {
					l.mu.Lock()
					l.lease = updated
					l.mu.Unlock()
				}
			}
		}
	}()
	return l, nil
}

// tryAcquire takes the Lease if it is free or expired; otherwise it
// returns the Lease that holds it. The Lease is read first: after an app's
// first run it exists, so a create would only fail.
func (l *appLock) tryAcquire(ctx context.Context) (*coordinationv1.Lease, error) {
	leases := l.m.kube.CoordinationV1().Leases(l.m.opts.InventoryNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(lockDuration / time.Second)
	mine := coordinationv1.LeaseSpec{HolderIdentity: &l.identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.m.opts.InventoryNamespace}, Spec: mine}
		created, err := leases.Create(ctx, lease, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) { // the namespace itself
			if err = l.m.ensureNamespace(ctx); err == nil {
				created, err = leases.Create(ctx, lease, metav1.CreateOptions{})
			}
		}
		switch {
		case err == nil:
			l.lease = created
			return nil, nil
		case apierrors.IsAlreadyExists(err): // created by another run meanwhile
			cur, err = leases.Get(ctx, l.name, metav1.GetOptions{})
		default:
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	held := cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity != ""
	if held && !expired(cur) {
		return cur, nil
	}
	// Free (released) or left by a holder that died: take it, with the
	// resourceVersion as precondition so that only one taker wins.
	cur.Spec = mine
	taken, err := leases.Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) {
			return cur, nil // someone else took it first
		}
		return nil, err
	}
	l.lease = taken
	l.tookOver = held // a holder that never released it
	return nil, nil
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
	if lease.Spec.HolderIdentity != nil {
		st.Holder = *lease.Spec.HolderIdentity
	}
	if lease.Spec.AcquireTime != nil {
		st.Since = lease.Spec.AcquireTime.UTC()
	}
	st.Stale = st.Holder != "" && expired(lease)
	return st, nil
}

// expired says the holder of lease stopped renewing it.
func expired(lease *coordinationv1.Lease) bool {
	return lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil ||
		time.Since(lease.Spec.RenewTime.Time) > time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second
}

// unlock stops renewing and releases the Lease by clearing its holder.
func (l *appLock) unlock() {
	close(l.stop)
	l.done.Wait()
	leases := l.m.kube.CoordinationV1().Leases(l.m.opts.InventoryNamespace)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The renewer has stopped: l.lease is the last version written. A
	// conflict means another run took over an expired lock: leave it.
	lease := l.lease.DeepCopy()
	empty := ""
	lease.Spec.HolderIdentity = &empty
	_, _ = leases.Update(ctx, lease, metav1.UpdateOptions{})
}
