package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/apply"
)

// A run request for one app (issue #21): AnnotationReconcileRequestedAt
// on the app's inventory Secret, seen by the inventory watcher
// (suspend.go), makes the owner of the app fetch and then run it, once
// per value; AppStatus.LastHandledRequest says which value was served.

// Reasons of the Events about run requests.
const (
	// ReasonRequestSuspended: a run was requested for a suspended app; it
	// is served once the app is resumed.
	ReasonRequestSuspended = "RequestSuspended"
)

// pendingRequest returns the run request of s not served yet, "" when
// none is, or when no fetch started since it was seen. Called with r.mu
// held.
func (r *Reconciler) pendingRequest(s *appState) string {
	m := r.invs().get(s.App)
	if m.request == "" || m.request == s.handled || r.fetchesDone.Load() <= m.requestSeen {
		return ""
	}
	return m.request
}

// requestSuspended tells, once per value, that the request req of the
// suspended app s waits for a resume. Called with r.mu held.
func (r *Reconciler) requestSuspended(s *appState, req string) {
	if req == "" || req == s.suspendedRequest {
		return
	}
	s.suspendedRequest = req
	v := r.opts.Pipeline.Redactor.Redact(req)
	r.log.Info("run request not served: suspended", "app", s.App, "request", v)
	r.event(s.App, corev1.EventTypeNormal, ReasonRequestSuspended, "run requested at %s: suspended, served once resumed", v)
}

// served records the request the run of s that just ended served.
// Called with r.mu held.
func (r *Reconciler) served(s *appState) {
	if s.serving == "" {
		return
	}
	s.handled = s.serving
	s.LastHandledRequest = r.opts.Pipeline.Redactor.Redact(s.serving)
	r.log.Info("run request served", "app", s.App, "request", s.LastHandledRequest)
}

// takeOverRequests, after the members of the shard group changed, reads
// from the status ConfigMap the run requests the other replicas served:
// an app taken over whose current request its previous owner served is
// not run for it again. A request the previous owner is still serving is
// served here too.
func (l *leaderLoop) takeOverRequests(ctx context.Context) {
	r := l.r
	if r.shards == nil || !r.membersChanged.Swap(false) {
		return
	}
	_, handled := r.readPrior(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	for app, v := range handled {
		s := r.apps[app]
		if s == nil || s.running || s.handled == v {
			continue
		}
		if req := r.invs().get(app).request; req == v {
			s.handled, s.LastHandledRequest = req, v
		}
	}
}

// inventoryChanged is the inventory watcher's callback: an inventory
// Secret appeared or went, or its suspension, pin or run request changed.
// A new run request asks for a fetch first, as a webhook does: the user
// expects the app at the head of now.
func (r *Reconciler) inventoryChanged(app string, requested bool) {
	if requested {
		// Another environment's app in a shared inventory namespace, or
		// another shard's: not this engine's to serve.
		r.mu.Lock()
		_, ours := r.apps[app]
		r.mu.Unlock()
		requested = ours && (r.shards == nil || r.shards.owns(app))
	}
	if requested {
		r.log.Info("run requested", "app", app)
		if r.link != nil {
			// The Clusters' fetch wakes an engine only for a new
			// commit; this one must fetch in any case.
			r.link.triggerEngines()
		} else {
			r.Trigger()
		}
	}
	notify(r.wake)
}

// RequestOptions configure RequestRun, Suspend and Resume.
type RequestOptions struct {
	// InventoryNamespace holds the app's inventory Secret. Default
	// "deliver-system".
	InventoryNamespace string
	// FieldManager names the writer in the Secret's managedFields.
	// Default "deliver".
	FieldManager string
}

// ErrNoInventory is returned by RequestRun for an app that has no
// inventory Secret: it was never delivered, so the reconciler runs it as
// soon as it fetches (ask for that with AnnotationRequestedAt on
// ControlConfigMap).
var ErrNoInventory = errors.New("no inventory Secret: never delivered")

// RequestRun asks the reconciler for a run of app now: it sets
// AnnotationReconcileRequestedAt on the app's inventory Secret (a merge
// patch of that annotation only) to the current time, which it returns;
// WaitRequest waits until a run served it. The Secret is in the cluster
// kc talks to: an environment's own cluster when it has one.
func RequestRun(ctx context.Context, kc kubernetes.Interface, app string, opts RequestOptions) (string, error) {
	ns := opts.InventoryNamespace
	if ns == "" {
		ns = "deliver-system"
	}
	fm := opts.FieldManager
	if fm == "" {
		fm = "deliver"
	}
	value := time.Now().UTC().Format(time.RFC3339Nano)
	if err := annotateInventory(ctx, kc, ns, fm, app, AnnotationReconcileRequestedAt, &value); err != nil {
		return "", fmt.Errorf("request a run of app %s: %w", app, err)
	}
	return value, nil
}

// annotateInventory sets one annotation of app's inventory Secret in ns
// (a merge patch of it only; a nil value removes it), written as
// fieldManager. A missing Secret is ErrNoInventory.
func annotateInventory(ctx context.Context, kc kubernetes.Interface, ns, fieldManager, app, key string, value *string) error {
	name := apply.InventoryName(app)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	_, err = kc.CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("Secret/%s/%s: %w", ns, name, ErrNoInventory)
	case err != nil:
		return fmt.Errorf("Secret/%s/%s: %w", ns, name, err)
	}
	return nil
}

// WaitOptions configure WaitRequest.
type WaitOptions struct {
	// StatusNamespace holds the status ConfigMap. Default
	// "deliver-system".
	StatusNamespace string
	// StatusName is the name of its first page: EnvStatusName(env) for
	// an environment of a reconciler of several. Default
	// StatusConfigMap.
	StatusName string
	// Poll is how often the status is read. Default 1s.
	Poll time.Duration
}

// ErrSuspended is returned by WaitRequest for an app that is suspended:
// its request is served only once it is resumed.
var ErrSuspended = errors.New("suspended: the request is served once the app is resumed")

// WaitRequest waits until the reconciler's status reports the run request
// value of app served, and returns the app's status then: Result says how
// the run ended. It returns ErrSuspended when the status says the app is
// suspended, and ctx's error when ctx ends first; a window that holds the
// app delays the run until it opens.
func WaitRequest(ctx context.Context, kc kubernetes.Interface, app, value string, opts WaitOptions) (AppStatus, error) {
	ns, name := opts.StatusNamespace, opts.StatusName
	if ns == "" {
		ns = "deliver-system"
	}
	if name == "" {
		name = StatusConfigMap
	}
	poll := opts.Poll
	if poll <= 0 {
		poll = time.Second
	}
	var st AppStatus
	var suspended bool
	err := wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		cm, err := ReadStatusNamed(ctx, kc, ns, name)
		if apierrors.IsNotFound(err) {
			return false, nil // no reconciler wrote it yet
		}
		if err != nil {
			return false, fmt.Errorf("status ConfigMap/%s/%s: %w", ns, name, err)
		}
		v, ok := cm.Data[app]
		if !ok {
			return false, nil
		}
		st = AppStatus{}
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return false, fmt.Errorf("status ConfigMap/%s/%s: app %s: %w", ns, name, app, err)
		}
		if st.LastHandledRequest == value {
			return true, nil
		}
		suspended = st.Suspended
		return suspended, nil
	})
	switch {
	case err != nil:
		return st, fmt.Errorf("wait for the run of app %s requested at %s: %w", app, value, err)
	case suspended && st.LastHandledRequest != value:
		return st, fmt.Errorf("wait for the run of app %s requested at %s: %w", app, value, ErrSuspended)
	}
	return st, nil
}
