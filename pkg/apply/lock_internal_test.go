package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestLeaseObserverExpiry: a waiter considers another run's Lease expired
// only once it has itself seen the record unchanged for the holder's lease
// duration, on its own clock, whatever RenewTime says: a RenewTime far in
// the past (a holder whose wall clock is behind) does not expire it, one
// in the future (a clock ahead) does not keep it alive, and any renewal or
// new holder starts the wait again.
func TestLeaseObserverExpiry(t *testing.T) {
	local := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	type step struct {
		after  time.Duration // local time passed since the previous step
		lease  *coordinationv1.Lease
		expect bool
	}
	rec := func(holder, rv string, renew time.Time, secs int32) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}}
		l.Spec.HolderIdentity = &holder
		if !renew.IsZero() {
			rt := metav1.NewMicroTime(renew)
			l.Spec.RenewTime = &rt
		}
		if secs != 0 {
			l.Spec.LeaseDurationSeconds = &secs
		}
		return l
	}
	past := local.Add(-time.Hour)
	future := local.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first sight is never expired, even renewed an hour ago", []step{
			{0, rec("a", "1", past, 10), false},
		}},
		{"unchanged for the lease duration", []step{
			{0, rec("a", "1", past, 10), false},
			{9 * time.Second, rec("a", "1", past, 10), false},
			{time.Second, rec("a", "1", past, 10), true},
		}},
		{"renewed by its holder: the wait starts again", []step{
			{0, rec("a", "1", local, 10), false},
			{8 * time.Second, rec("a", "2", local.Add(8*time.Second), 10), false},
			{8 * time.Second, rec("a", "2", local.Add(8*time.Second), 10), false},
			{2 * time.Second, rec("a", "2", local.Add(8*time.Second), 10), true},
		}},
		{"a RenewTime in the future does not keep it alive", []step{
			{0, rec("a", "1", future, 10), false},
			{10 * time.Second, rec("a", "1", future, 10), true},
		}},
		{"a new holder starts the wait again", []step{
			{0, rec("a", "1", past, 10), false},
			{10 * time.Second, rec("b", "1", past, 10), false},
			{9 * time.Second, rec("b", "1", past, 10), false},
			{time.Second, rec("b", "1", past, 10), true},
		}},
		{"another write (same holder and RenewTime) starts the wait again", []step{
			{0, rec("a", "1", past, 10), false},
			{9 * time.Second, rec("a", "2", past, 10), false},
			{9 * time.Second, rec("a", "2", past, 10), false},
		}},
		{"the holder's duration, not the waiter's", []step{
			{0, rec("a", "1", past, 2), false},
			{2 * time.Second, rec("a", "1", past, 2), true},
		}},
		{"no duration in the Lease: the waiter's", []step{
			{0, rec("a", "1", time.Time{}, 0), false},
			{29 * time.Second, rec("a", "1", time.Time{}, 0), false},
			{time.Second, rec("a", "1", time.Time{}, 0), true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(local)
			obs := &leaseObserver{opts: newLockOptions(30*time.Second, clk)}
			for i, s := range tc.steps {
				clk.SetTime(clk.Now().Add(s.after))
				if got := obs.expired(s.lease); got != s.expect {
					t.Errorf("step %d (+%s, holder %s, resourceVersion %s): expired = %v, want %v",
						i, s.after, holderOf(s.lease), s.lease.ResourceVersion, got, s.expect)
				}
			}
		})
	}
}

// TestLockOptions: the holder gives the lock up (renewDeadline) a third
// of the lease before any waiter may take it, and renews well before.
func TestLockOptions(t *testing.T) {
	for _, tc := range []struct {
		lease                         time.Duration
		wantLease, wantEvery, wantDue time.Duration
	}{
		{30 * time.Second, 30 * time.Second, 10 * time.Second, 20 * time.Second},
		{3 * time.Second, 3 * time.Second, time.Second, 2 * time.Second},
		{2400 * time.Millisecond, 2 * time.Second, 2 * time.Second / 3, 4 * time.Second / 3}, // whole seconds
		{100 * time.Millisecond, time.Second, time.Second / 3, 2 * time.Second / 3},
	} {
		o := newLockOptions(tc.lease, clocktesting.NewFakePassiveClock(time.Time{}))
		if o.lease != tc.wantLease || o.renewEvery != tc.wantEvery || o.renewDeadline != tc.wantDue {
			t.Errorf("LockLease %s: lease %s, renew every %s, deadline %s; want %s, %s, %s",
				tc.lease, o.lease, o.renewEvery, o.renewDeadline, tc.wantLease, tc.wantEvery, tc.wantDue)
		}
		if o.renewDeadline >= o.lease || o.retry >= o.renewDeadline-o.renewEvery || o.poll > o.lease/4 {
			t.Errorf("LockLease %s: %+v leaves no margin", tc.lease, o)
		}
	}
}

// TestLockLeft: the holder's remaining validity is measured on its own
// clock from when its last successful renewal was sent.
func TestLockLeft(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	l := &appLock{opts: newLockOptions(3*time.Second, clk), renewed: clk.Now()}
	for _, tc := range []struct {
		after time.Duration
		want  time.Duration
	}{
		{0, 2 * time.Second},
		{1500 * time.Millisecond, 500 * time.Millisecond},
		{500 * time.Millisecond, 0},
		{time.Second, -time.Second},
	} {
		clk.SetTime(clk.Now().Add(tc.after))
		if got := l.left(); got != tc.want {
			t.Errorf("after %s more: left %s, want %s", tc.after, got, tc.want)
		}
	}
}

// TestLostErrorMessage: the error of a run that lost its lock starts with
// the app and the reason, says where the run stopped, does not repeat the
// reason, and still matches ErrLockLost and the run's own error.
func TestLostErrorMessage(t *testing.T) {
	guard, lose := context.WithCancelCause(context.Background())
	l := &appLock{app: "web", guard: guard, loseGuard: lose}
	if err := l.result(nil); err != nil {
		t.Errorf("result(nil) while held = %v", err)
	}
	runErr := errors.New("wait: 1 not ready")
	if err := l.result(runErr); err != runErr {
		t.Errorf("result while held = %v, want the run's error", err)
	}
	l.lose(errors.New("not renewed for 2s: context deadline exceeded"))
	cause := context.Cause(guard)
	runErr = errors.Join(fmt.Errorf("wait: interrupted with 1 not ready yet: %w", cause), errors.New("inventory: context canceled"))
	err := l.result(runErr)
	want := "app web: lock lost: not renewed for 2s: context deadline exceeded; the run stopped: wait: interrupted with 1 not ready yet\ninventory: context canceled"
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	if !errors.Is(err, ErrLockLost) || !errors.Is(err, runErr) {
		t.Errorf("%v: want it to match ErrLockLost and the run's error", err)
	}
	if strings.Count(err.Error(), "lock lost") != 1 {
		t.Errorf("%q repeats the cause", err)
	}
	if err := l.result(nil); err != nil {
		t.Errorf("a run that completed before the loss: %v, want success", err)
	}
}
