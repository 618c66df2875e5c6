package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// ControlConfigMap is the ConfigMap, in Options.StatusNamespace, through
// which people and standby replicas steer the leader at run time. Its
// annotations:
//
//   - AnnotationSuspend set to "true" pauses every app, as --suspend-all
//     does, without a restart;
//
//   - AnnotationRequestedAt, whenever its value changes, makes the leader
//     fetch at once (Flux's reconcile.fluxcd.io/requestedAt).
//
//     kubectl -n deliver-system annotate configmap deliver-control deliver.dev/suspend=true
//     kubectl -n deliver-system annotate configmap deliver-control --overwrite deliver.dev/requested-at="$(date +%s)"
//
// The reconciler never writes anything but AnnotationRequestedAt, and
// creates the ConfigMap only to set it.
const ControlConfigMap = "deliver-control"

// AnnotationRequestedAt on ControlConfigMap asks the leader for a fetch
// now; a standby that receives a push webhook sets it.
const AnnotationRequestedAt = "deliver.dev/requested-at"

// control watches the metadata of ControlConfigMap while leading.
type control struct {
	factory  metadatainformer.SharedInformerFactory
	informer cache.SharedIndexInformer
	synced   cache.DoneChecker
	key      string
	onChange func(suspendChanged, requested bool)

	mu         sync.Mutex
	suspendAll bool
	requested  string
}

func newControl(cfg *rest.Config, ns string, onChange func(suspendChanged, requested bool)) (*control, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("control: client: %w", err)
	}
	factory := metadatainformer.NewFilteredSharedInformerFactory(mc, 0, ns, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ControlConfigMap).String()
	})
	c := &control{factory: factory, key: ns + "/" + ControlConfigMap, onChange: onChange}
	set := func(ann map[string]string, initial bool) {
		c.mu.Lock()
		suspend, req := ann[AnnotationSuspend] == "true", ann[AnnotationRequestedAt]
		suspendChanged := suspend != c.suspendAll
		// A request already there when the leader starts is served by
		// the first fetch of its term.
		requested := !initial && req != "" && req != c.requested
		c.suspendAll, c.requested = suspend, req
		c.mu.Unlock()
		if suspendChanged || requested {
			c.onChange(suspendChanged, requested)
		}
	}
	c.informer = factory.ForResource(corev1.SchemeGroupVersion.WithResource("configmaps")).Informer()
	reg, err := c.informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { set(annotations(obj), initial) },
		UpdateFunc: func(_, obj any) { set(annotations(obj), false) },
		DeleteFunc: func(any) { set(nil, false) },
	})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	c.synced = reg.HasSyncedChecker()
	return c, nil
}

func annotations(obj any) map[string]string {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return m.Annotations
	}
	return nil
}

// start lists the ConfigMap and returns once the list is in, so that a
// pause is known before the first scheduling pass.
func (c *control) start(ctx context.Context) {
	c.factory.Start(ctx.Done())
	// Not the factory's WaitForCacheSync, which polls every 100ms.
	cache.WaitFor(ctx, "", c.synced)
}

func (c *control) stop() { c.factory.Shutdown() }

// forwarding records value as a request already served here: the
// replica that writes it (a shard forwarding a webhook it fetched for
// already) must not fetch again when its own watch sees it.
func (c *control) forwarding(value string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.requested = value
	c.mu.Unlock()
}

// pausedAll reports whether the ConfigMap pauses every app. It reads the
// informer's store, which is complete after start, where the handlers
// may still be on their way.
func (c *control) pausedAll() bool {
	if c == nil {
		return false
	}
	obj, ok, err := c.informer.GetStore().GetByKey(c.key)
	return err == nil && ok && annotations(obj)[AnnotationSuspend] == "true"
}

// requestFetch asks the leader for a fetch now: directly on the leader, by
// annotating ControlConfigMap on a standby (the Service in front of the
// replicas sends a webhook to any ready one). A shard fetches at once and
// annotates too, for the other shards, whose apps the push may concern.
func (r *Reconciler) requestFetch() {
	if r.leading.Load() {
		r.Trigger()
		if r.shards == nil {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	value := time.Now().UTC().Format(time.RFC3339Nano)
	if r.leading.Load() {
		// A shard that fetched already: its own watch of the annotation
		// is not a second request.
		r.ctl.Load().forwarding(value)
	}
	if err := annotateControl(ctx, r.kube, r.opts.StatusNamespace, fieldManager, AnnotationRequestedAt, &value); err != nil {
		r.log.Warn("forward webhook to the leader", "err", err)
		return
	}
	r.log.Info("webhook forwarded to the leader")
}

// RequestFetch asks the reconciler whose control ConfigMap is in ns for
// a fetch now, as a push webhook does: it sets AnnotationRequestedAt on
// ControlConfigMap (creating it), written as fieldManager; the leader
// fetches at once and runs every app that is due. deliver ui's "reconcile
// now" uses it for an app that has no inventory yet (RequestRun's
// ErrNoInventory).
func RequestFetch(ctx context.Context, kc kubernetes.Interface, ns, fieldManager string) error {
	if err := annotateControl(ctx, kc, ns, fieldManager, AnnotationRequestedAt, ptr.To(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("request fetch: %w", err)
	}
	return nil
}

// annotateControl sets one annotation of ControlConfigMap in ns, creating
// it; a nil value removes the annotation (a missing ConfigMap has none).
func annotateControl(ctx context.Context, kc kubernetes.Interface, ns, manager, key string, value *string) error {
	cms := kc.CoreV1().ConfigMaps(ns)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	_, err = cms.Patch(ctx, ControlConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: manager})
	if apierrors.IsNotFound(err) && value == nil {
		return nil
	}
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ControlConfigMap, Namespace: ns,
			Annotations: map[string]string{key: *value},
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "deliver"}}}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: manager})
		if apierrors.IsAlreadyExists(err) { // created by another replica meanwhile
			_, err = cms.Patch(ctx, ControlConfigMap, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: manager})
		}
	}
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, ControlConfigMap, err)
	}
	return nil
}
