package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

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

// invMeta is what the reconciler knows of an inventory Secret without
// reading its data.
type invMeta struct {
	uid       types.UID
	suspended bool
	pin       *apply.Pin // see pin.go
}

// inventories watches the metadata of the inventory Secrets (label
// deliver.dev/inventory): their annotations say which apps are suspended,
// their UIDs make the Events' object references exact. Metadata only, so
// the inventories' data never sits in memory twice.
type inventories struct {
	factory  metadatainformer.SharedInformerFactory
	informer cache.SharedIndexInformer
	synced   cache.DoneChecker
	onChange func(app string)

	mu   sync.Mutex
	apps map[string]invMeta
}

func newInventories(sess *apply.Session, ns string, onChange func(app string)) (*inventories, error) {
	factory := metadatainformer.NewFilteredSharedInformerFactory(sess.Metadata(), 0, ns, func(o *metav1.ListOptions) {
		o.LabelSelector = apply.LabelInventory
	})
	iv := &inventories{factory: factory, onChange: onChange, apps: map[string]invMeta{}}
	iv.informer = factory.ForResource(corev1.SchemeGroupVersion.WithResource("secrets")).Informer()
	set := func(obj any) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return
		}
		app := m.Labels[apply.LabelInventory]
		if app == "" {
			return
		}
		meta := invMeta{uid: m.UID, suspended: m.Annotations[AnnotationSuspend] == "true", pin: apply.PinOf(m.Annotations)}
		iv.mu.Lock()
		old, had := iv.apps[app]
		iv.apps[app] = meta
		iv.mu.Unlock()
		if !had || old.suspended != meta.suspended || !old.pin.Equal(meta.pin) {
			iv.onChange(app)
		}
	}
	reg, err := iv.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				iv.mu.Lock()
				delete(iv.apps, m.Labels[apply.LabelInventory])
				iv.mu.Unlock()
				iv.onChange(m.Labels[apply.LabelInventory])
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

// suspendedByOptions reports whether Options pause app.
func (r *Reconciler) suspendedByOptions(app string) bool {
	return r.opts.SuspendAll || slices.Contains(r.opts.Suspend, app)
}
