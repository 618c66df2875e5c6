package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/deliverhq/deliver/pkg/apply"
)

// AnnotationSuspend set to "true" on an app's inventory Secret pauses the
// app in the reconciler: no run for a new commit, a drift, a retry or a
// full resync, until the annotation is removed (or set to anything else).
// A run under way when it is set ends normally. Drift is still reported.
//
//	kubectl -n deliver-system annotate secret deliver-inventory-web deliver.dev/suspend=true
//	kubectl -n deliver-system annotate secret deliver-inventory-web deliver.dev/suspend-
//
// Options.Suspend and Options.SuspendAll do the same from the command
// line, also for an app that has no inventory yet.
const AnnotationSuspend = "deliver.dev/suspend"

// AnnotationReconcileRequestedAt on an app's inventory Secret asks for a
// run of that app now, as Flux's reconcile.fluxcd.io/requestedAt does
// for one object: whenever its value changes, the reconciler that
// delivers the app (the leader, or the shard that owns it) fetches, then
// runs the app even when nothing is due (reason "requested at VALUE"),
// once per value, and records the value in AppStatus.LastHandledRequest
// when that run ends, so that a client can tell it was served. A run
// that is due anyway serves the request too. The run is what any run is:
// a pinned app runs at its pin, a change window holds it as it holds
// every run (served when the window opens), an app waits for its
// dependencies; a suspended app is not run, and its request is served
// once it is resumed. The request lives on the Secret and the served
// value in the status ConfigMap, so a new leader serves a request the
// old one did not, and no request twice. Use a new value each time, such
// as the time (RequestRun does):
//
//	kubectl -n deliver-system annotate secret deliver-inventory-web --overwrite deliver.dev/reconcile-requested-at="$(date +%s)"
//
// An app with no inventory Secret has never been delivered, so it is due
// anyway: AnnotationRequestedAt on ControlConfigMap makes it run now.
const AnnotationReconcileRequestedAt = "deliver.dev/reconcile-requested-at"

// invMeta is what the reconciler knows of an inventory Secret without
// reading its data.
type invMeta struct {
	uid       types.UID
	suspended bool
	pin       *apply.Pin // see pin.go
	// request is AnnotationReconcileRequestedAt's value; requestSeen is
	// the number of fetches started when that value was first seen: the
	// request is served by a run after a later fetch (request.go).
	request     string
	requestSeen uint64
}

// inventories watches the metadata of the inventory Secrets (label
// deliver.dev/inventory): their annotations say which apps are suspended,
// their UIDs make the Events' object references exact. Metadata only, so
// the inventories' data never sits in memory twice.
type inventories struct {
	factory  metadatainformer.SharedInformerFactory
	informer cache.SharedIndexInformer
	synced   cache.DoneChecker
	// onChange is called when an app's inventory appeared or went, or
	// its suspension, pin or run request changed; requested is set for
	// a new run request seen after the initial list.
	onChange func(app string, requested bool)
	// fetches returns the number of fetches started so far.
	fetches func() uint64

	mu   sync.Mutex
	apps map[string]invMeta
}

func newInventories(sess *apply.Session, ns string, fetches func() uint64, onChange func(app string, requested bool)) (*inventories, error) {
	factory := metadatainformer.NewFilteredSharedInformerFactory(sess.Metadata(), 0, ns, func(o *metav1.ListOptions) {
		o.LabelSelector = apply.LabelInventory
	})
	iv := &inventories{factory: factory, onChange: onChange, fetches: fetches, apps: map[string]invMeta{}}
	iv.informer = factory.ForResource(corev1.SchemeGroupVersion.WithResource("secrets")).Informer()
	set := func(obj any, initial bool) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return
		}
		app := m.Labels[apply.LabelInventory]
		if app == "" {
			return
		}
		meta := invMeta{uid: m.UID, suspended: m.Annotations[AnnotationSuspend] == "true", pin: apply.PinOf(m.Annotations),
			request: m.Annotations[AnnotationReconcileRequestedAt]}
		iv.mu.Lock()
		old, had := iv.apps[app]
		meta.requestSeen = old.requestSeen
		requested := meta.request != "" && meta.request != old.request
		if requested {
			meta.requestSeen = iv.fetches()
		}
		iv.apps[app] = meta
		iv.mu.Unlock()
		if !had || requested || old.suspended != meta.suspended || !old.pin.Equal(meta.pin) {
			// A request already there when the loop starts is served
			// after its first fetch, which needs no trigger.
			iv.onChange(app, requested && !initial)
		}
	}
	reg, err := iv.informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				iv.mu.Lock()
				delete(iv.apps, m.Labels[apply.LabelInventory])
				iv.mu.Unlock()
				iv.onChange(m.Labels[apply.LabelInventory], false)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("inventories: %w", err)
	}
	iv.synced = reg.HasSyncedChecker()
	return iv, nil
}

// start lists the inventories and returns once the list is in, so that a
// suspended app is known before the first scheduling pass.
func (iv *inventories) start(ctx context.Context) {
	iv.factory.Start(ctx.Done())
	// Not the factory's WaitForCacheSync, which polls every 100ms; this
	// also waits until the handler saw the list.
	cache.WaitFor(ctx, "", iv.synced)
}

func (iv *inventories) stop() { iv.factory.Shutdown() }

func (iv *inventories) get(app string) invMeta {
	if iv == nil {
		return invMeta{}
	}
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return iv.apps[app]
}

// Suspend pauses apps in the reconciler, as flux suspend does: it sets
// AnnotationSuspend to "true" on each app's inventory Secret (a merge
// patch of that annotation only). With no apps it pauses every app: the
// annotation on ControlConfigMap, created when missing. An app that has
// no inventory Secret (never delivered) is an error wrapping
// ErrNoInventory, naming it; the others are suspended all the same.
// Resume undoes it.
func Suspend(ctx context.Context, kc kubernetes.Interface, apps []string, opts RequestOptions) error {
	return setSuspended(ctx, kc, apps, true, opts)
}

// Resume removes what Suspend set: AnnotationSuspend from each app's
// inventory Secret, or with no apps from ControlConfigMap (a missing
// ConfigMap has nothing to resume). The reconciler then runs what is due.
func Resume(ctx context.Context, kc kubernetes.Interface, apps []string, opts RequestOptions) error {
	return setSuspended(ctx, kc, apps, false, opts)
}

func setSuspended(ctx context.Context, kc kubernetes.Interface, apps []string, suspend bool, opts RequestOptions) error {
	ns := cmp.Or(opts.InventoryNamespace, "deliver-system")
	fm := cmp.Or(opts.FieldManager, "deliver")
	verb := map[bool]string{true: "suspend", false: "resume"}[suspend]
	var value *string // nil: removed
	if suspend {
		value = ptr.To("true")
	}
	if len(apps) == 0 {
		if err := annotateControl(ctx, kc, ns, fm, AnnotationSuspend, value); err != nil {
			return fmt.Errorf("%s every app: %w", verb, err)
		}
		return nil
	}
	var errs []error
	for _, app := range apps {
		if err := annotateInventory(ctx, kc, ns, fm, app, AnnotationSuspend, value); err != nil {
			errs = append(errs, fmt.Errorf("%s app %s: %w", verb, app, err))
		}
	}
	return errors.Join(errs...)
}

// suspendedByOptions reports whether Options pause app.
func (r *Reconciler) suspendedByOptions(app string) bool {
	return r.opts.SuspendAll || slices.Contains(r.opts.Suspend, app)
}
