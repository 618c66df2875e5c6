package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	notifications "github.com/deliverhq/deliver/pkg/notify"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// notifyDrainTimeout bounds how long a stopping reconciler waits for the
// notifications still queued (a Once pass's last ones among them).
const notifyDrainTimeout = 10 * time.Second

// startNotify starts the notifier of deliver.yaml's notifications for the
// life of Run, and returns what stops it. Credentials are read from
// Secrets in the status namespace at each send.
func (r *Reconciler) startNotify() (stop func()) {
	r.notifier = notifications.New(notifications.Options{
		Secrets:    r.notifySecret,
		Redactor:   r.opts.Pipeline.Redactor,
		Log:        r.log.With("component", "notify"),
		Registerer: r.metrics.reg,
	})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), notifyDrainTimeout)
		defer cancel()
		r.notifier.Close(ctx)
	}
}

// notifySecret reads key of the Secret name in the status namespace.
// Neither the value nor the Secret's data shows in its errors.
func (r *Reconciler) notifySecret(ctx context.Context, name, key string) (string, error) {
	ns := r.opts.StatusNamespace
	s, err := r.kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s/%s: no key %q", ns, name, key)
	}
	return string(v), nil
}

// readPrior returns the last outcome told of each app and the last run
// request served for it (request.go), from the status ConfigMap a
// previous reconciler (or leader) wrote: one read when the loop starts. A
// status that cannot be read is no reason not to reconcile: the first
// outcome after the restart is then told again, and a request served
// before is served once more.
func (r *Reconciler) readPrior(ctx context.Context) (notified map[string]*Notified, handled map[string]string) {
	cm, err := ReadStatusNamed(ctx, r.kube, r.opts.StatusNamespace, r.opts.StatusName)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			r.log.Warn("read the notifications told before", "err", err)
		}
		return nil, nil
	}
	notified, handled = map[string]*Notified{}, map[string]string{}
	for app, v := range cm.Data {
		var a struct {
			Notified           *Notified `json:"notified"`
			LastHandledRequest string    `json:"lastHandledRequest"`
		}
		if json.Unmarshal([]byte(v), &a) != nil {
			continue
		}
		if a.Notified != nil {
			notified[app] = a.Notified
		}
		if a.LastHandledRequest != "" {
			handled[app] = a.LastHandledRequest
		}
	}
	return notified, handled
}

// runNote is what the notifications of one run need from its start: the
// providers at the run's commit and the app's state before it.
type runNote struct {
	r         *Reconciler
	providers []config.Notification
	base      notifications.Event
	// prevRev is the app's last delivered revision, prevFailedRev that of
	// its last failed run.
	prevRev, prevFailedRev string
	// last is the last outcome told of the app, by this reconciler or,
	// through the status ConfigMap, by one before it.
	last *Notified
}

// notifyStart is called as a run of app at rev starts: a run of a new
// revision sets the commit statuses pending.
func (r *Reconciler) notifyStart(app, rev string, cfg *config.Resolved) *runNote {
	n := &runNote{r: r, base: notifications.Event{App: app, Revision: rev, RepoURL: r.opts.Pipeline.Repo}}
	if cfg == nil || len(cfg.Notifications) == 0 {
		return n
	}
	n.providers, n.base.Environment = cfg.Notifications, cfg.Environment
	r.mu.Lock()
	if s := r.apps[app]; s != nil {
		n.prevRev, n.prevFailedRev, n.last = s.Revision, s.failedRev, s.Notified
	}
	r.mu.Unlock()
	if n.prevFailedRev == "" && n.last != nil && n.last.Result == notifications.Failed {
		// A failure told before a restart: the restarted reconciler's
		// first run of that revision is a retry, and a success ends the
		// series of failures.
		n.prevFailedRev = n.last.Revision
	}
	if rev != n.prevRev && rev != n.prevFailedRev && (n.last == nil || n.last.Revision != rev) {
		e := n.base
		e.Result, e.Time = notifications.Pending, time.Now()
		r.notifier.Notify(n.providers, e)
	}
	return n
}

// done is called once the run is recorded. A success is told when it
// delivered a new revision or ended a series of failures; a failure when
// it is the first at its revision, so that retries do not repeat it. An
// interrupted run, or one another replica delivered first, tells nothing.
func (n *runNote) done(ctx context.Context, ar *pipeline.AppResult, err error, dur time.Duration) {
	if len(n.providers) == 0 || ctx.Err() != nil || errors.Is(err, apply.ErrDelivered) {
		return
	}
	e := n.base
	e.Duration, e.Time = dur, time.Now()
	switch {
	case err == nil && (e.Revision != n.prevRev || n.prevFailedRev != ""):
		e.Result = notifications.Succeeded
	case err != nil && e.Revision != n.prevFailedRev:
		e.Result = notifications.Failed
		e.Object, e.Reason = failingObject(ar, err)
		red := n.r.opts.Pipeline.Redactor
		e.Object, e.Reason = red.Redact(e.Object), red.Redact(e.Reason)
	default:
		return
	}
	if l := n.last; l != nil && l.Result == e.Result && l.Revision == e.Revision {
		return // told already, before a restart
	}
	n.r.mu.Lock()
	if s := n.r.apps[e.App]; s != nil {
		s.Notified = &Notified{Result: e.Result, Revision: e.Revision}
	}
	n.r.mu.Unlock()
	n.r.notifier.Notify(n.providers, e)
}

// failingObject names the object a run failed on, Kind/namespace/name,
// when the report or the error says, and the reason.
func failingObject(ar *pipeline.AppResult, err error) (object, reason string) {
	if ar != nil && ar.Report != nil {
		for _, res := range ar.Report.Results {
			if res.Action == apply.Failed {
				return res.ID.String(), res.Error
			}
		}
	}
	var oe *apply.ObjectError
	if errors.As(err, &oe) {
		return oe.ID.String(), oe.Err.Error()
	}
	var fe *apply.ForbiddenError
	if errors.As(err, &fe) {
		return fe.Object, err.Error()
	}
	var ce *apply.ConflictError
	if errors.As(err, &ce) && len(ce.Conflicts) > 0 {
		return ce.Conflicts[0].ID.String(), err.Error()
	}
	return "", err.Error()
}
