package reconcile

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// Reasons of the Events the reconciler records on an app's inventory
// Secret, shown by
//
//	kubectl -n deliver-system describe secret deliver-inventory-web
//	kubectl -n deliver-system get events --field-selector involvedObject.name=deliver-inventory-web
const (
	// ReasonApplied: a run changed objects, or delivered a new revision.
	ReasonApplied = "Applied"
	// ReasonApplyFailed: a run failed; the message is its redacted error.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonHookSucceeded and ReasonHookFailed: a hook ran.
	ReasonHookSucceeded = "HookSucceeded"
	ReasonHookFailed    = "HookFailed"
	// ReasonInterrupted: the reconciler stopped during a run.
	ReasonInterrupted = "Interrupted"
	// ReasonDriftDetected: an object changed in the cluster since deliver
	// applied it.
	ReasonDriftDetected = "DriftDetected"
	// ReasonSuspended and ReasonResumed: the app was paused or resumed.
	ReasonSuspended = "Suspended"
	ReasonResumed   = "Resumed"
)

// maxEventMessage bounds a message; the API server refuses Events over
// 1 KiB of message anyway.
const maxEventMessage = 1000

// eventComponent is the source of the reconciler's Events.
const eventComponent = "deliver-reconcile"

// newRecorder starts an event broadcaster writing to the cluster. Events
// are written in the background and aggregated by client-go's
// correlator, so a failing app retried every few seconds makes one Event
// with a count, not thousands.
func (r *Reconciler) newRecorder() (record.EventBroadcaster, record.EventRecorder) {
	b := record.NewBroadcaster()
	// In the target cluster, next to the inventory Secret they are about.
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: r.eventsClient().CoreV1().Events("")})
	return b, b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent})
}

// event records an Event on app's inventory Secret. Every message goes
// through the redactor: an error may quote a value read from Vault.
func (r *Reconciler) event(app, eventType, reason, format string, args ...any) {
	if r.recorder == nil {
		return
	}
	msg := r.opts.Pipeline.Redactor.Redact(fmt.Sprintf(format, args...))
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	ref := &corev1.ObjectReference{
		APIVersion: "v1", Kind: "Secret",
		Namespace: r.opts.Pipeline.Apply.InventoryNamespace, Name: apply.InventoryName(app),
		UID: r.invs().get(app).uid,
	}
	// The message is a plain string by now, not a format.
	r.recorder.Event(ref, eventType, reason, msg)
}

// runEvents records the Events of one finished run.
func (r *Reconciler) runEvents(app, rev, prevRev string, ar *pipeline.AppResult, err error, interrupted bool) {
	if ar != nil && ar.Report != nil {
		for _, res := range ar.Report.Results {
			if res.Hook == "" {
				continue
			}
			if res.Action == apply.Failed {
				r.event(app, corev1.EventTypeWarning, ReasonHookFailed, "hook %s (%s) failed at %s: %s", res.ID, res.Hook, short(rev), res.Error)
			} else {
				r.event(app, corev1.EventTypeNormal, ReasonHookSucceeded, "hook %s (%s) %s at %s", res.ID, res.Hook, res.Action, short(rev))
			}
		}
	}
	switch {
	case interrupted:
		r.event(app, corev1.EventTypeWarning, ReasonInterrupted, "run of %s interrupted: the reconciler stopped", short(rev))
	case err != nil:
		r.event(app, corev1.EventTypeWarning, ReasonApplyFailed, "revision %s: %v", short(rev), err)
	default:
		changed := false
		summary := "applied"
		if ar != nil && ar.Report != nil {
			summary = ar.Report.Summary()
			changed = len(ar.Report.Results) > ar.Report.Count(apply.Unchanged)
		}
		if changed || rev != prevRev {
			r.event(app, corev1.EventTypeNormal, ReasonApplied, "revision %s: %s", short(rev), summary)
		}
	}
}
