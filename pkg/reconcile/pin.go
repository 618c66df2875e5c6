package reconcile

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// A pinned app (apply.AnnotationPin on its inventory Secret, set by
// deliver pin or rollback) is delivered at its pinned revision and at
// nothing newer until unpinned: a new commit does not move it, while
// drift, retries and full resyncs still run it, at the pinned revision.
// The pin is read from the inventory watcher's metadata, so it holds
// across restarts and changes of leader; an app depending on a pinned
// app waits for it to be delivered at its pin, not at the head.

// Reasons of the Events about pins.
const (
	// ReasonPinned: the app was pinned, or its pin changed.
	ReasonPinned = "Pinned"
	// ReasonUnpinned: the app's pin was removed.
	ReasonUnpinned = "Unpinned"
)

// pinOf returns app's pin, nil when it has none.
func (r *Reconciler) pinOf(app string) *apply.Pin { return r.invs().get(app).pin }

// target is the commit s is to be delivered at: its pin's, else the
// head's. Called with r.mu held.
func (r *Reconciler) target(s *appState) string {
	if p := r.pinOf(s.App); p != nil {
		return p.Revision
	}
	return r.head
}

// notePin records in s's status the pin the inventory watcher sees,
// with an Event and a log line when it changed. The reason is the user's
// text: redacted like every status field. Called with r.mu held.
func (r *Reconciler) notePin(s *appState) {
	p := r.pinOf(s.App)
	if p != nil {
		c := *p
		c.Reason = r.opts.Pipeline.Redactor.Redact(c.Reason)
		p = &c
	}
	if p.Equal(s.Pin) {
		return
	}
	s.Pin = p
	if p == nil {
		r.log.Info("unpinned", "app", s.App)
		r.event(s.App, corev1.EventTypeNormal, ReasonUnpinned, "unpinned: delivered at the head again")
		return
	}
	r.log.Info("pinned", "app", s.App, "revision", short(p.Revision), "by", p.By, "reason", p.Reason)
	r.event(s.App, corev1.EventTypeNormal, ReasonPinned, "pinned to %s by %s: %s", short(p.Revision), p.By, p.Reason)
}

// pinnedSource makes a run of a pinned revision fetch its own snapshot:
// the shared one is the head's. The source cache keeps the trees of
// recent commits, so a pinned revision fetched once is not written again.
func pinnedSource(po *pipeline.Options, rev string) {
	if po.Snapshot != nil && po.Snapshot.Commit != rev {
		po.Snapshot, po.Config = nil, nil
	}
}

// pinnedGauge is deliver_reconcile_pinned_apps: how many of the apps this
// reconciler delivers are pinned, counted when scraped.
func (r *Reconciler) pinnedGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "deliver_reconcile_pinned_apps", Help: "Apps held at a pinned revision (deliver pin, deliver rollback).",
	}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := 0
		for _, name := range r.order {
			if r.pinOf(name) != nil {
				n++
			}
		}
		return float64(n)
	})
}
