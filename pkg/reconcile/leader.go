package reconcile

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// runElected stands by until this replica holds the Lease, reconciles
// while it does, and stands by again when it loses it, until ctx is
// cancelled. The Lease is released only after the runs under way ended,
// so that two replicas never apply at once, and released at all so that a
// standby takes over at once rather than after LeaseDuration.
func (r *Reconciler) runElected(ctx context.Context) error {
	le := r.opts.LeaderElection
	if err := ensureNamespace(ctx, r.kube, le.Namespace); err != nil {
		return fmt.Errorf("reconcile: leader election namespace %s: %w", le.Namespace, err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, le.Namespace, le.Name,
		r.kube.CoreV1(), r.kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: le.Identity})
	if err != nil {
		return fmt.Errorf("reconcile: leader election: %w", err)
	}
	r.ready.Store(true) // a standby is ready: it serves probes and metrics
	log := r.log.With("lease", le.Namespace+"/"+le.Name, "identity", le.Identity)

	// electCtx outlives ctx until the loop has stopped: cancelling it
	// releases the Lease, which must not happen under a running apply.
	electCtx, cancelElect := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelElect()
	for {
		var (
			mu       sync.Mutex
			stopping bool // no new term may start
			led      bool
		)
		termDone := make(chan struct{}) // closed when this term's loop ended
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   le.LeaseDuration,
			RenewDeadline:   le.RenewDeadline,
			RetryPeriod:     le.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            le.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					defer close(termDone)
					mu.Lock()
					if stopping {
						mu.Unlock()
						return
					}
					led = true
					mu.Unlock()
					log.Info("leading")
					// The loop stops when the Lease is lost or ctx ends.
					workCtx, cancel := context.WithCancel(lctx)
					defer cancel()
					defer context.AfterFunc(ctx, cancel)()
					if err := r.lead(workCtx); err != nil {
						log.Error("reconcile loop", "err", err)
					}
				},
				OnStoppedLeading: func() { log.Info("standing by") },
				OnNewLeader:      func(id string) { log.Info("leader", "leader", id) },
			},
		})
		if err != nil {
			return fmt.Errorf("reconcile: leader election: %w", err)
		}
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			elector.Run(electCtx)
		}()
		endTerm := func() {
			mu.Lock()
			stopping = true
			wasLed := led
			mu.Unlock()
			if wasLed {
				<-termDone
			}
		}
		select {
		case <-ctx.Done():
			endTerm() // the loop ends first (its ctx is cancelled with ctx) ...
			cancelElect()
			<-runDone // ... then the Lease is released
			return nil
		case <-runDone:
			// The Lease was lost: stand by again once the loop ended.
			endTerm()
		}
	}
}
