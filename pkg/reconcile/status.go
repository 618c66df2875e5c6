package reconcile

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/health"
)

// StatusConfigMap is the name of the ConfigMap, in
// Options.StatusNamespace, holding one key per app with its AppStatus as
// JSON, and the annotations AnnotationRevision, AnnotationSourceError and
// AnnotationStatusPages; past 400 apps, the apps are spread over more
// ConfigMaps named after it (see statusPages and ReadStatus):
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

// writeStatusOnce is one write of writeStatus: the pages whose content
// changed since they were last written.
func (r *Reconciler) writeStatusOnce(ctx context.Context) {
	st := r.Status()
	pages := statusPages(len(st.Apps))
	data := make([]map[string]string, pages)
	for i := range data {
		data[i] = map[string]string{}
	}
	for _, a := range st.Apps {
		if r.shards != nil && !r.shards.owns(a.App) {
			continue // another replica writes it
		}
		b, err := json.Marshal(statusEntry(a))
		if err != nil {
			continue
		}
		data[statusPageOf(a.App, pages)][a.App] = string(b)
	}
	ann := map[string]string{AnnotationRevision: st.Revision, AnnotationStatusPages: strconv.Itoa(pages)}
	if st.SourceError != "" {
		ann[AnnotationSourceError] = st.SourceError
	}
	clusterAnnotations(st, ann)
	// The first page's annotations ride along in its comparison under
	// keys no app name can have (app names are DNS labels).
	cmp := make([]map[string]string, pages)
	for i := range data {
		cmp[i] = maps.Clone(data[i])
	}
	cmp[0]["/revision"], cmp[0]["/source-error"] = st.Revision, st.SourceError
	cmp[0]["/cluster-error"] = st.ClusterError
	r.mu.Lock()
	written := r.written
	r.mu.Unlock()
	var changed []int
	for i := range cmp {
		if i >= len(written) || !maps.Equal(written[i], cmp[i]) {
			changed = append(changed, i)
		}
	}
	if len(changed) == 0 && len(written) == pages {
		r.mu.Lock()
		r.statusFailures, r.statusRetry = 0, time.Time{}
		r.mu.Unlock()
		return
	}
	// Pages that were written stay as written until this write
	// succeeds; a failed write is retried with everything.
	next := make([]map[string]string, pages)
	copy(next, written)
	var errs []error
	for _, i := range changed {
		var pageAnn map[string]string
		if i == 0 {
			pageAnn = ann
		}
		if err := r.putStatus(ctx, r.statusPageName(i), data[i], pageAnn); err != nil {
			errs = append(errs, err)
			continue
		}
		next[i] = cmp[i]
	}
	if len(errs) == 0 && r.shards == nil {
		// Fewer apps than before: the pages past the last go. A
		// sharded replica leaves them (another replica may still count
		// more apps); readers read as many pages as the first names.
		for i := pages; i < len(written); i++ {
			if err := r.kube.CoreV1().ConfigMaps(r.opts.StatusNamespace).Delete(ctx, r.statusPageName(i), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("status %s/%s: delete: %w", r.opts.StatusNamespace, r.statusPageName(i), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Retried by the loop with the backoff of a failed app: the
		// last run of a quiet period would otherwise stay unreported
		// until the next fetch finds something to change, an interval
		// later (an hour with a webhook).
		r.mu.Lock()
		r.written = next
		r.statusFailures++
		wait := backoff(r.statusFailures, r.opts.RetryBase, r.opts.RetryMax)
		r.statusRetry = time.Now().Add(wait)
		r.mu.Unlock()
		r.log.Warn("write status", "err", err, "retry_in", wait.Round(time.Millisecond))
		return
	}
	r.mu.Lock()
	r.written = next
	r.statusFailures, r.statusRetry = 0, time.Time{}
	r.mu.Unlock()
}

// The status spans as many ConfigMaps (pages) as its apps need: a
// ConfigMap holds at most 1 MiB, which about 3,700 apps' statuses
// overflowed. Each page holds the apps that hash to it, at most about
// statusPageApps of them; the first page is StatusConfigMap and carries
// the annotations, the others are named StatusConfigMap-1, -2, ... A page
// is written only when its apps changed, so a run's end rewrites one page,
// not every app's status.
const (
	// statusPageApps is the number of apps a page is sized for: an app's
	// entry is at most about 2 kB (a message of maxStatusMessage, drifted
	// objects named in maxStatusDrift bytes), so a page of 400 apps, or
	// of the 460 that hashing may put there, stays under 1 MiB.
	statusPageApps   = 400
	maxStatusMessage = 512
	maxStatusDrift   = 1024
	// maxStatusRequest bounds LastHandledRequest: a request's value is
	// meant to be a time; a longer one is cut, and a new leader may then
	// serve it once more.
	maxStatusRequest = 128
)

// AnnotationStatusPages, on the first page, is the number of pages of the
// status (see ReadStatus).
const AnnotationStatusPages = "deliver.dev/status-pages"

// statusPages is the number of pages for apps apps. It depends on the
// number of apps only, so that sharded replicas, which each write their
// own apps, agree on it.
func statusPages(apps int) int { return max(1, (apps+statusPageApps-1)/statusPageApps) }

// statusPageName is the name of page i.
func (r *Reconciler) statusPageName(i int) string {
	return statusPageName(cmp.Or(r.opts.StatusName, StatusConfigMap), i)
}

// statusPageName is the name of page i of the status whose first page is
// first: first-1, -2, ..., or first.1, .2, ... for an environment's
// (deliver-status.<env>, see Clusters), whose names would otherwise
// collide with another environment's (staging-1).
func statusPageName(first string, i int) string {
	switch {
	case i == 0:
		return first
	case strings.Contains(first, "."):
		return first + "." + strconv.Itoa(i)
	}
	return first + "-" + strconv.Itoa(i)
}

// statusPageOf is the page of app among pages.
func statusPageOf(app string, pages int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(app))
	return int(h.Sum32() % uint32(pages))
}

// statusEntry is a's status as the ConfigMap stores it: a long message
// (an error naming many objects) and a long drift list are cut, so that
// a page stays within its size; the reconciler's log, events and metrics
// have the rest.
func statusEntry(a AppStatus) AppStatus {
	if len(a.Message) > maxStatusMessage {
		cut := maxStatusMessage
		for cut > 0 && !utf8.RuneStart(a.Message[cut]) {
			cut--
		}
		a.Message = a.Message[:cut] + "… (cut)"
	}
	if len(a.LastHandledRequest) > maxStatusRequest {
		a.LastHandledRequest = a.LastHandledRequest[:maxStatusRequest]
	}
	size := 0
	for i, id := range a.Drift {
		if size += len(id); size > maxStatusDrift {
			a.Drift = append(a.Drift[:i:i], fmt.Sprintf("… and %d more", len(a.Drift)-i))
			break
		}
	}
	return a
}

// ReadStatus reads the status a reconciler keeps in namespace ns: the
// first page (StatusConfigMap, with the annotations) with the apps of
// every page in its Data. A NotFound error when there is none.
func ReadStatus(ctx context.Context, kc kubernetes.Interface, ns string) (*corev1.ConfigMap, error) {
	return ReadStatusNamed(ctx, kc, ns, StatusConfigMap)
}

// ReadStatusNamed is ReadStatus of the status whose first page is name,
// such as an environment's (EnvStatusName).
func ReadStatusNamed(ctx context.Context, kc kubernetes.Interface, ns, name string) (*corev1.ConfigMap, error) {
	cms := kc.CoreV1().ConfigMaps(ns)
	first, err := cms.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pages, _ := strconv.Atoi(first.Annotations[AnnotationStatusPages])
	if first.Data == nil {
		first.Data = map[string]string{}
	}
	for i := 1; i < pages; i++ {
		page, err := cms.Get(ctx, statusPageName(name, i), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue // not written yet: its apps have no status yet
		case err != nil:
			return nil, fmt.Errorf("%s/%s: %w", ns, statusPageName(name, i), err)
		}
		maps.Copy(first.Data, page.Data)
	}
	return first, nil
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

// putStatus writes the page name of the status; ann are its annotations
// (the first page's only).
func (r *Reconciler) putStatus(ctx context.Context, name string, data, ann map[string]string) error {
	if r.shards != nil {
		return r.applyStatus(ctx, name, data, ann)
	}
	kc := r.kube
	ns := r.opts.StatusNamespace
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann, Labels: r.statusLabels()},
		Data:       data,
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
		return fmt.Errorf("status %s/%s: %w", ns, name, err)
	}
	return nil
}

// applyStatus writes a shard's part of the status ConfigMap with a
// server-side apply as a field manager of its own: each replica owns the
// keys of its apps, an app that moves is taken over (Force) by its new
// replica, and a key a replica stops applying is removed only while that
// replica still owns it, so replicas never erase each other's apps.
func (r *Reconciler) applyStatus(ctx context.Context, name string, data, ann map[string]string) error {
	ns := r.opts.StatusNamespace
	cm := corev1ac.ConfigMap(name, ns).WithAnnotations(ann).
		WithLabels(r.statusLabels()).WithData(data)
	manager := fieldManager + "-" + shardLeaseName("", r.opts.Sharding.Identity)
	_, err := r.kube.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: manager, Force: true})
	if err != nil {
		return fmt.Errorf("status %s/%s: %w", ns, name, err)
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

// HealthRules returns the CEL health checks of app at the current commit,
// compiled; nil when it has none or is not known. The web view (pkg/ui)
// judges the app's live objects with them, as the app's runs do.
func (r *Reconciler) HealthRules(app string) *health.Rules {
	r.mu.Lock()
	var checks []health.Check
	if s := r.apps[app]; s != nil {
		checks = s.app.HealthChecks
	}
	r.mu.Unlock()
	if len(checks) == 0 {
		return nil
	}
	rules, err := health.Compile("app "+strconv.Quote(app)+": healthChecks", checks)
	if err != nil {
		return nil // deliver.yaml was checked when read: not reached
	}
	return rules
}
