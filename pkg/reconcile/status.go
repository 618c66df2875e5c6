package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// StatusConfigMap is the name of the ConfigMap, in
// Options.StatusNamespace, holding one key per app with its AppStatus as
// JSON, and the annotations AnnotationRevision and AnnotationSourceError:
//
//	kubectl -n deliver-system get configmap deliver-status -o yaml
const StatusConfigMap = "deliver-status"

// Annotations of the status ConfigMap.
const (
	// AnnotationRevision is the commit of the last successful fetch.
	AnnotationRevision = "deliver.dev/revision"
	// AnnotationSourceError is why the last fetch failed, when it did.
	AnnotationSourceError = "deliver.dev/source-error"
)

// fieldManager names the reconciler in the status ConfigMap's
// managedFields.
const fieldManager = "deliver-reconcile"

// writeStatus stores the status in the ConfigMap when it changed since the
// last write, so that a no-op reconcile writes nothing. Failures are
// logged and retried by the loop: status is a report, never a reason to
// stop reconciling.
//
// Writes are coalesced: while one is in flight, the callers that come
// meanwhile return at once and the writer writes once more after it,
// with everything they changed. Ten runs ending together used to send
// ten updates of the whole ConfigMap (a thousand apps' keys) one after
// the other, for 3 s. The caller that writes stays until no change is
// left, so a run's status is written before its goroutine ends.
func (r *Reconciler) writeStatus(ctx context.Context) {
	r.statusMu.Lock()
	if r.statusBusy {
		r.statusAgain = true
		r.statusMu.Unlock()
		return
	}
	r.statusBusy = true
	r.statusMu.Unlock()
	for {
		r.writeStatusOnce(ctx)
		r.statusMu.Lock()
		if !r.statusAgain || ctx.Err() != nil {
			r.statusBusy, r.statusAgain = false, false
			r.statusMu.Unlock()
			return
		}
		r.statusAgain = false
		r.statusMu.Unlock()
	}
}

// writeStatusOnce is one write of writeStatus.
func (r *Reconciler) writeStatusOnce(ctx context.Context) {
	st := r.Status()
	data := map[string]string{}
	for _, a := range st.Apps {
		if r.shards != nil && !r.shards.owns(a.App) {
			continue // another replica writes it
		}
		b, err := json.Marshal(a)
		if err != nil {
			continue
		}
		data[a.App] = string(b)
	}
	ann := map[string]string{AnnotationRevision: st.Revision}
	if st.SourceError != "" {
		ann[AnnotationSourceError] = st.SourceError
	}
	// Annotations ride along in the comparison under a key no app name
	// can have (app names are DNS labels).
	cmp := maps.Clone(data)
	cmp["/revision"], cmp["/source-error"] = st.Revision, st.SourceError
	r.mu.Lock()
	same := maps.Equal(r.written, cmp)
	if same {
		r.statusFailures, r.statusRetry = 0, time.Time{}
	}
	r.mu.Unlock()
	if same {
		return
	}
	if err := r.putStatus(ctx, data, ann); err != nil {
		// Retried by the loop with the backoff of a failed app: the
		// last run of a quiet period would otherwise stay unreported
		// until the next fetch finds something to change, an interval
		// later (an hour with a webhook).
		r.mu.Lock()
		r.statusFailures++
		wait := backoff(r.statusFailures, r.opts.RetryBase, r.opts.RetryMax)
		r.statusRetry = time.Now().Add(wait)
		r.mu.Unlock()
		r.log.Warn("write status", "err", err, "retry_in", wait.Round(time.Millisecond))
		return
	}
	r.mu.Lock()
	r.written = cmp
	r.statusFailures, r.statusRetry = 0, time.Time{}
	r.mu.Unlock()
}

// statusRetryDue returns how long until a failed status write is retried,
// and whether it is due now; a day when no write failed.
func (r *Reconciler) statusRetryDue() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.statusRetry.IsZero() {
		return 24 * time.Hour, false
	}
	wait := time.Until(r.statusRetry)
	return wait, wait <= 0
}

// statusWriteTimeout bounds a status write the loop retries, which must
// not hold the loop.
const statusWriteTimeout = 10 * time.Second

func (r *Reconciler) putStatus(ctx context.Context, data, ann map[string]string) error {
	if r.shards != nil {
		return r.applyStatus(ctx, data, ann)
	}
	kc := r.kube
	ns := r.opts.StatusNamespace
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: StatusConfigMap, Namespace: ns, Annotations: ann,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "deliver"}},
		Data: data,
	}
	cms := kc.CoreV1().ConfigMaps(ns)
	// One writer (the leader) owns the whole object, so a plain update
	// that replaces every key is right.
	_, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: fieldManager})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: fieldManager})
		if apierrors.IsNotFound(err) {
			if err = ensureNamespace(ctx, kc, ns); err == nil {
				_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: fieldManager})
			}
		}
	}
	if err != nil {
		return fmt.Errorf("status %s/%s: %w", ns, StatusConfigMap, err)
	}
	return nil
}

// applyStatus writes a shard's part of the status ConfigMap with a
// server-side apply as a field manager of its own: each replica owns the
// keys of its apps, an app that moves is taken over (Force) by its new
// replica, and a key a replica stops applying is removed only while that
// replica still owns it, so replicas never erase each other's apps.
func (r *Reconciler) applyStatus(ctx context.Context, data, ann map[string]string) error {
	ns := r.opts.StatusNamespace
	cm := corev1ac.ConfigMap(StatusConfigMap, ns).WithAnnotations(ann).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": "deliver"}).WithData(data)
	manager := fieldManager + "-" + shardLeaseName("", r.opts.Sharding.Identity)
	_, err := r.kube.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: manager, Force: true})
	if err != nil {
		return fmt.Errorf("status %s/%s: %w", ns, StatusConfigMap, err)
	}
	return nil
}

func ensureNamespace(ctx context.Context, kc kubernetes.Interface, ns string) error {
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
