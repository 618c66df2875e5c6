package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// appPruning is the loop's removal of the apps that left deliver.yaml
// (config.PruneApps), once per head: it is due from the fetch of a head
// whose deliver.yaml sets pruneApps, and starts once every app of this
// replica is delivered at that head, as deliver apply removes them only
// after every listed app succeeded (an object moved from a leaving app to
// a listed one has been taken over by then). Guarded by r.mu.
type appPruning struct {
	// due is the head whose removal pass has not succeeded yet; "" for
	// none.
	due string
	// running is set while a pass runs.
	running bool
	// failures counts the failed passes of due; notBefore delays the
	// next one (backoff).
	failures  int
	notBefore time.Time
	// err is the last failed pass's error, for a single pass's result.
	err error
}

// pruneBusy reports whether a removal pass runs.
func (l *leaderLoop) pruneBusy() bool {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	return l.prune.running
}

// pruneErr is the error of the last removal pass if it failed and none
// succeeded since.
func (l *leaderLoop) pruneErr() error {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	if l.prune.due == "" {
		return nil
	}
	return l.prune.err
}

// schedulePrune starts the removal pass when it is due and every app this
// replica delivers is delivered at its target (the head, or its pin),
// suspended ones aside; it returns when a pass that failed may be tried
// again (zero: not waiting for that). Called with r.mu held.
func (l *leaderLoop) schedulePrune(ctx context.Context, now time.Time) time.Time {
	r, p := l.r, &l.prune
	if p.due == "" || p.due != r.head || p.running || l.cur == nil {
		return time.Time{}
	}
	if now.Before(p.notBefore) {
		return p.notBefore
	}
	for name, s := range r.apps {
		if r.shards != nil && !r.shards.owns(name) || s.Suspended {
			continue
		}
		if s.running || s.Revision != r.target(s) || s.Result != apply.ResultSucceeded {
			return time.Time{} // woken when its run ends
		}
	}
	p.running = true
	head, sh := r.head, l.cur.acquire()
	l.runs.Add(1)
	go func() {
		defer l.runs.Done()
		defer sh.release()
		l.pruneApps(ctx, head, sh)
	}()
	return time.Time{}
}

// pruneApps removes, as deliver delete does, the apps that left
// deliver.yaml at head and that this deliver.yaml of this repository (in
// this environment) delivered, but those of other replicas and those
// still running, and forgets them.
func (l *leaderLoop) pruneApps(ctx context.Context, head string, sh *sharedSnap) {
	r := l.r
	po := r.opts.Pipeline
	po.Snapshot, po.Config, po.Ref = sh.snap, sh.config, head
	po.Apps = nil
	po.Session = l.mgr.Session()
	po.RemoveOnly = func(app string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.shards != nil && !r.shards.owns(app) {
			return false
		}
		s := r.apps[app]
		return s == nil || !s.running
	}
	res, err := pipeline.Remove(ctx, po)
	if err == nil {
		err = res.Err()
	}
	r.mu.Lock()
	p := &l.prune
	p.running = false
	if res != nil {
		for _, a := range res.Apps {
			if a.Error != "" {
				continue
			}
			r.log.Info("removed", "app", a.Name, "revision", short(head), "reason", "left deliver.yaml (pruneApps)", "report", a.Report.Summary())
			if s := r.apps[a.Name]; s != nil && !s.running {
				delete(r.apps, a.Name)
				r.metrics.forget(a.Name)
			}
			// Counted after its other series went: a scrape that sees
			// the removal sees the app forgotten.
			r.metrics.removed.WithLabelValues(a.Name).Inc()
		}
	}
	switch {
	case err != nil && ctx.Err() == nil:
		p.failures++
		p.err = fmt.Errorf("pruneApps: %w", po.Redactor.Error(err))
		wait := backoff(p.failures, r.opts.RetryBase, r.opts.RetryMax)
		p.notBefore = time.Now().Add(wait)
		r.log.Error("removing the apps that left deliver.yaml failed", "revision", short(head), "err", po.Redactor.Error(err), "retry_in", wait.Round(time.Millisecond))
	case err == nil && p.due == head:
		p.due, p.failures, p.notBefore, p.err = "", 0, time.Time{}, nil
	}
	r.mu.Unlock()
	if res != nil {
		for _, a := range res.Apps {
			if a.Error == "" {
				l.tr.setInventory(a.Name, "", nil)
			}
		}
	}
	r.writeStatus(ctx)
	notify(r.wake)
}
