package reconcile

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// metrics are the reconciler's Prometheus metrics, in a registry of its
// own so that two Reconcilers in one process (tests) do not collide.
type metrics struct {
	reg           *prometheus.Registry
	runs          *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	lastSuccess   *prometheus.GaugeVec
	revision      *prometheus.GaugeVec
	objects       *prometheus.CounterVec
	hooks         *prometheus.CounterVec
	drift         *prometheus.CounterVec
	upToDate      *prometheus.CounterVec
	unchanged     *prometheus.CounterVec
	inputsChecked *prometheus.CounterVec
	removed       *prometheus.CounterVec
	fetchDuration prometheus.Histogram
	fetchErrors   prometheus.Counter
	leader        prometheus.Gauge
	// held is set in windows.go.
	held *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_runs_total", Help: "Pipeline runs per app, by result (succeeded, failed).",
		}, []string{"app", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "deliver_reconcile_duration_seconds", Help: "Duration of an app's pipeline run.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"app"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "deliver_reconcile_last_success_timestamp_seconds", Help: "Unix time of an app's last successful run.",
		}, []string{"app"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "deliver_reconcile_revision_info", Help: "1 for the commit an app last delivered successfully.",
		}, []string{"app", "revision"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_objects_total", Help: "Objects written by runs, by action (created, configured, recreated, deleted, failed).",
		}, []string{"app", "action"}),
		hooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_hook_runs_total", Help: "Hook runs, by result (succeeded, failed).",
		}, []string{"app", "result"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_drift_detected_total", Help: "Objects seen changed in the cluster since deliver applied them.",
		}, []string{"app"}),
		upToDate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_up_to_date_total", Help: "Fetches that found an app up to date, so no run (the fast path).",
		}, []string{"app"}),
		unchanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_unchanged_total", Help: "New revisions in which an app's inputs (files read, config, deliver's version) were those of its last successful run: no render, no run.",
		}, []string{"app"}),
		inputsChecked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_inputs_checked_total", Help: "Checks (every --inputs-interval) of the inputs of an app outside git (Vault secret versions, ConfigMaps and Secrets read, API versions its charts consulted), by result (unchanged, changed: the app runs).",
		}, []string{"app", "result"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deliver_reconcile_removed_total", Help: "Apps removed from the cluster, their objects and inventory, after they left deliver.yaml (pruneApps).",
		}, []string{"app"}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "deliver_git_fetch_duration_seconds", Help: "Duration of a git fetch of the followed ref.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "deliver_git_fetch_errors_total", Help: "Failed git fetches.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "deliver_reconcile_leader", Help: "1 while this replica is the one reconciling.",
		}),
	}
	m.reg.MustRegister(m.runs, m.duration, m.lastSuccess, m.revision, m.objects, m.hooks, m.drift, m.upToDate, m.unchanged, m.inputsChecked, m.removed,
		m.fetchDuration, m.fetchErrors, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observeRun records one run of app.
func (m *metrics) observeRun(app, rev, result string, d time.Duration, ar *pipeline.AppResult) {
	m.runs.WithLabelValues(app, result).Inc()
	m.duration.WithLabelValues(app).Observe(d.Seconds())
	if result == apply.ResultSucceeded {
		m.lastSuccess.WithLabelValues(app).Set(float64(time.Now().Unix()))
		m.revision.DeletePartialMatch(prometheus.Labels{"app": app})
		m.revision.WithLabelValues(app, rev).Set(1)
	}
	if ar == nil || ar.Report == nil {
		return
	}
	for _, res := range ar.Report.Results {
		switch {
		case res.Hook != "" && res.Action == apply.Failed:
			m.hooks.WithLabelValues(app, apply.ResultFailed).Inc()
		case res.Hook != "":
			m.hooks.WithLabelValues(app, apply.ResultSucceeded).Inc()
		case res.Action != apply.Unchanged:
			m.objects.WithLabelValues(app, string(res.Action)).Inc()
		}
	}
}

// forget deletes the series of an app that left deliver.yaml: its last
// success and revision would otherwise stay exported for ever (an alert
// on a stale last success firing for an app that no longer exists), and
// a reconciler that sees apps come and go for months would keep them all.
// deliver_reconcile_removed_total, which records the removal itself,
// stays.
func (m *metrics) forget(app string) {
	labels := prometheus.Labels{"app": app}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.runs, m.duration, m.lastSuccess, m.revision, m.objects, m.hooks, m.drift,
		m.upToDate, m.unchanged, m.inputsChecked, m.held,
	} {
		v.DeletePartialMatch(labels)
	}
}

// Handler serves the reconciler's endpoints:
//
//	POST /webhook  push events from GitHub, GitLab or Gitea (see
//	               Options.WebhookSecretFile); 404 without a secret
//	GET  /metrics  Prometheus metrics
//	GET  /healthz  200 unless the reconcile loop is stuck
//	GET  /readyz   200 once the first fetch is done, or while standing by
func (r *Reconciler) Handler() http.Handler {
	mux := http.NewServeMux()
	if r.hook != nil {
		mux.Handle("POST /webhook", r.hook)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{Registry: r.metrics.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// A leader whose loop has not passed for several intervals is
		// stuck; a restart is the remedy the probe provides.
		last := time.Unix(0, r.lastLoop.Load())
		if r.leading.Load() && time.Since(last) > 3*r.opts.Interval+time.Minute {
			http.Error(w, fmt.Sprintf("reconcile loop stuck since %s", last.UTC().Format(time.RFC3339)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
