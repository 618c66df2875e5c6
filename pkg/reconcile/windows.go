package reconcile

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/window"
)

// Change windows (docs/windows.md): an app that is due (a new commit,
// drift, a retry, a full resync) while a window of deliver.yaml holds it
// is not run; its status says which window and until when, the gauge
// deliver_reconcile_held is 1, and a timer on Options.Clock wakes the
// loop when a window of a held app starts or ends, so that it is
// delivered as soon as it may be, with no polling.

// windowWake is the timer that wakes the loop for a held app. Guarded by
// Reconciler.mu.
type windowWake struct {
	timer clock.Timer
	at    time.Time
}

func newHeldGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deliver_reconcile_held", Help: "1 while a change window holds a due run of the app (docs/windows.md).",
	}, []string{"app"})
	reg.MustRegister(g)
	return g
}

// holdByWindow reports whether a window holds s, due for reason ("" when
// not due), at the clock's time, and keeps s's status, the gauge and the
// wake-up in step. Called with r.mu held.
func (l *leaderLoop) holdByWindow(s *appState, reason string) bool {
	r := l.r
	var d window.Decision
	now := r.opts.Clock.Now()
	if reason != "" && l.cur != nil && l.cur.config != nil {
		d = window.Check(l.cur.config.Windows, s.App, l.cur.config.Environment, now)
	}
	if reason == "" || d.Allowed || d.By == nil {
		if s.Held != "" {
			r.log.Info("window open", "app", s.App)
			s.Held, s.HeldUntil = "", time.Time{}
			r.metrics.held.WithLabelValues(s.App).Set(0)
		}
		return false
	}
	msg := r.opts.Pipeline.Redactor.Redact(pipeline.HoldMessage(d))
	if s.Held != msg {
		r.log.Info("held", "app", s.App, "reason", reason, "window", d.By.Name, "until", d.Until)
	}
	s.Held, s.HeldUntil = msg, d.Until
	r.metrics.held.WithLabelValues(s.App).Set(1)
	r.wakeAt(window.NextChange(l.cur.config.Windows, s.App, l.cur.config.Environment, now), now)
	return true
}

// wakeAt makes sure a scheduling pass happens at t (on Options.Clock).
// Called with r.mu held.
func (r *Reconciler) wakeAt(t, now time.Time) {
	w := &r.windowWake
	if t.IsZero() || (w.timer != nil && w.at.After(now) && !w.at.After(t)) {
		return // none, or an earlier wake-up is armed
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.at = t
	w.timer = r.opts.Clock.AfterFunc(t.Sub(now), func() { notify(r.wake) })
}
