package reconcile

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
)

// LabelWatch set to "Enabled" on a ConfigMap or Secret that an app reads
// (helm.valuesFrom, postBuild.substituteFrom) makes the reconciler run the
// app as soon as the object changes, as Flux's label of the same name
// does for HelmReleases and Kustomizations. Without it the reconciler
// reads such objects' versions at each new commit and full resync only.
//
//	kubectl -n web label configmap settings reconcile.fluxcd.io/watch=Enabled
const LabelWatch = "reconcile.fluxcd.io/watch"

// inputWatch watches, metadata only, the ConfigMaps and Secrets labelled
// LabelWatch=Enabled in the namespaces the apps read such objects from,
// and calls onChange with each one ("Kind/namespace/name") that changed
// or went after its informer's initial list. The label keeps the caches
// to the objects their owners asked to be watched.
type inputWatch struct {
	ctx      context.Context
	sess     *apply.Session
	onChange func(obj string)

	mu         sync.Mutex
	namespaces map[string]*nsWatch
}

// nsWatch is the informers of one namespace, stopped together.
type nsWatch struct {
	factory metadatainformer.SharedInformerFactory
	cancel  context.CancelFunc
}

// close stops the namespace's informers and waits for them to end.
func (n *nsWatch) close() {
	n.cancel()
	n.factory.Shutdown()
}

func newInputWatch(ctx context.Context, sess *apply.Session, onChange func(obj string)) *inputWatch {
	return &inputWatch{ctx: ctx, sess: sess, onChange: onChange, namespaces: map[string]*nsWatch{}}
}

// ensure watches namespaces, all the namespaces apps read from: those not
// watched yet are watched, and those no app reads from any more are not
// watched any more (an app per pull request, each in a namespace of its
// own, would otherwise leave two watches behind for the life of the
// reconciler).
func (w *inputWatch) ensure(namespaces map[string]bool) {
	w.mu.Lock()
	var gone []*nsWatch
	for ns, n := range w.namespaces {
		if !namespaces[ns] {
			delete(w.namespaces, ns)
			gone = append(gone, n)
		}
	}
	defer func() {
		w.mu.Unlock()
		for _, n := range gone {
			n.close()
		}
	}()
	for ns := range namespaces {
		if _, ok := w.namespaces[ns]; ok {
			continue
		}
		f := metadatainformer.NewFilteredSharedInformerFactory(w.sess.Metadata(), 0, ns, func(o *metav1.ListOptions) {
			o.LabelSelector = LabelWatch + "=Enabled"
		})
		for kind, res := range map[string]string{"ConfigMap": "configmaps", "Secret": "secrets"} {
			inf := f.ForResource(corev1.SchemeGroupVersion.WithResource(res)).Informer()
			_, _ = inf.AddEventHandler(w.handler(kind)) // fails only on a stopped informer
		}
		ctx, cancel := context.WithCancel(w.ctx)
		f.Start(ctx.Done())
		w.namespaces[ns] = &nsWatch{factory: f, cancel: cancel}
	}
}

func (w *inputWatch) handler(kind string) cache.ResourceEventHandler {
	changed := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			w.onChange(inputKey(config.SubstituteReference{Kind: kind, Namespace: m.Namespace, Name: m.Name}))
		}
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial { // labelled, or made, after the list
				changed(obj)
			}
		},
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*metav1.PartialObjectMetadata)
			n, ok2 := obj.(*metav1.PartialObjectMetadata)
			if ok1 && ok2 && o.ResourceVersion != n.ResourceVersion {
				changed(obj)
			}
		},
		DeleteFunc: changed,
	}
}

func (w *inputWatch) stop() {
	w.mu.Lock()
	all := w.namespaces
	w.namespaces = map[string]*nsWatch{}
	w.mu.Unlock()
	for _, n := range all {
		n.close()
	}
}

// inputKey is a ConfigMap or Secret an app reads as the watch names it.
func inputKey(r config.SubstituteReference) string {
	return fmt.Sprintf("%s/%s/%s", r.Kind, r.Namespace, r.Name)
}

// inputChanged marks the apps that read obj due (a watched ConfigMap or
// Secret changed) and wakes the loop.
func (r *Reconciler) inputChanged(obj string) {
	r.mu.Lock()
	var apps []string
	for name, s := range r.apps {
		for _, ref := range s.app.ClusterRefs() {
			if inputKey(ref) == obj {
				s.inputMoved = "input " + obj + " changed"
				apps = append(apps, name)
			}
		}
	}
	r.mu.Unlock()
	if len(apps) > 0 {
		r.log.Info("input changed", "object", obj, "apps", apps)
		notify(r.wake)
	}
}
