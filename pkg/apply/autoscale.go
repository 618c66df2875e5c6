package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/pkg/object"
)

// The autoscalers whose target's replica count is theirs, not deliver's.
var (
	hpaKind         = schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}
	scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
)

// isAutoscaler reports whether id is an object that sets its target's
// replica count.
func isAutoscaler(id object.ID) bool {
	gk := id.GroupKind()
	return gk == hpaKind || gk == scaledObjectGVK.GroupKind()
}

// scaleTarget returns the workload an autoscaler's spec.scaleTargetRef
// names, in the autoscaler's namespace. A ScaledObject's reference
// defaults to a Deployment (apps/v1), as KEDA's does; a reference without
// an apiVersion matches the workload kinds' group.
func scaleTarget(u *unstructured.Unstructured) (object.ID, bool) {
	ref, found, _ := unstructured.NestedMap(u.Object, "spec", "scaleTargetRef")
	if !found {
		return object.ID{}, false
	}
	name, _ := ref["name"].(string)
	kind, _ := ref["kind"].(string)
	apiVersion, _ := ref["apiVersion"].(string)
	if kind == "" && u.GroupVersionKind().Group == scaledObjectGVK.Group {
		kind = "Deployment"
	}
	group := "apps"
	if apiVersion != "" {
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil {
			return object.ID{}, false
		}
		group = gv.Group
	}
	if name == "" || kind == "" {
		return object.ID{}, false
	}
	return object.ID{Group: group, Kind: kind, Namespace: u.GetNamespace(), Name: name}, true
}

// autoscalers finds the autoscaler of each scalable workload among
// changes that has one: a HorizontalPodAutoscaler (any version) or a KEDA
// ScaledObject of the set, or one live in the workload's namespace
// (autoscaling/v2; ScaledObjects where KEDA is installed). One list per
// kind and namespace, and none when the set has no Deployment or
// StatefulSet. A live autoscaler of the app that left git is pruned by
// this run, and not counted. Lists the manager may not make (a
// least-privilege role without the autoscaling rule of deploy/rbac.yaml)
// are skipped: deliver then knows only the autoscalers of the set.
// The lists are shared with the other apps of the run that list after
// since, when the plan's inventory was read (see listAhead): the first
// apply of a thousand apps in ten namespaces lists autoscalers ten times,
// not a thousand. The result maps a workload to its autoscaler.
func (m *Manager) autoscalers(ctx context.Context, changes []*Change, app string, since time.Time) (map[object.ID]object.ID, error) {
	out := map[object.ID]object.ID{}
	desired := map[object.ID]bool{}
	namespaces := map[string]bool{}
	for _, c := range changes {
		if c.Desired == nil {
			continue
		}
		desired[c.ID] = true
		if scalable(c.ID) && c.ID.Namespace != "" {
			namespaces[c.ID.Namespace] = true
		}
	}
	if len(namespaces) == 0 {
		return out, nil
	}
	add := func(u *unstructured.Unstructured, id object.ID) {
		if target, ok := scaleTarget(u); ok && scalable(target) {
			if prev, seen := out[target]; !seen || less(id, prev) {
				out[target] = id
			}
		}
	}
	for _, c := range changes {
		if c.Desired != nil && isAutoscaler(c.ID) {
			add(c.Desired, c.ID)
		}
	}
	var gvrs []schema.GroupVersionResource
	for _, gvk := range []schema.GroupVersionKind{hpaKind.WithVersion("v2"), scaledObjectGVK} {
		gvr, _, err := m.gvrFor(gvk.GroupKind(), gvk.Version)
		switch {
		case meta.IsNoMatchError(err):
			continue // KEDA is not installed
		case err != nil:
			return nil, fmt.Errorf("autoscalers: %w", err)
		}
		gvrs = append(gvrs, gvr)
	}
	nsList := make([]string, 0, len(namespaces))
	for ns := range namespaces {
		nsList = append(nsList, ns)
	}
	sort.Strings(nsList)
	type list struct {
		gvr schema.GroupVersionResource
		ns  string
	}
	var lists []list
	for _, gvr := range gvrs {
		for _, ns := range nsList {
			lists = append(lists, list{gvr, ns})
		}
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	m.forEach(ctx, len(lists), func(i int) {
		l := lists[i]
		items, err := m.listObjects(ctx, listKey{l.gvr, l.ns}, since)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case apierrors.IsForbidden(err), apierrors.IsNotFound(err):
			return
		case err != nil:
			errs = append(errs, fmt.Errorf("list %s in namespace %q: %w", l.gvr.GroupResource(), l.ns, err))
			return
		}
		for j := range items {
			u := &items[j]
			id := object.IDOf(u)
			if u.GetLabels()[LabelApp] == app && !desired[id] {
				continue // left git: this run prunes it
			}
			add(u, id)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("autoscalers: %w", err)
	}
	return out, nil
}

// leaveReplicas takes spec.replicas out of the desired workloads an
// autoscaler targets, so that deliver neither writes nor reverts them, and
// redoes their digests.
func leaveReplicas(changes []*Change, scalers map[object.ID]object.ID) error {
	for _, c := range changes {
		scaler, ok := scalers[c.ID]
		if !ok || c.Desired == nil {
			continue
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(c.Desired.Object, "spec", "replicas"); !found {
			continue
		}
		unstructured.RemoveNestedField(c.Desired.Object, "spec", "replicas")
		data, err := json.Marshal(c.Desired.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", c.ID, err)
		}
		sum := sha256.Sum256(data)
		c.digest, c.body = hex.EncodeToString(sum[:]), data
		if c.Note == "" {
			c.Note = "spec.replicas is left to " + scaler.String()
		}
	}
	return nil
}

// replicasLeft reports whether deliver leaves a workload's replica count
// to others: it is scalable and its desired object (after leaveReplicas)
// sets none.
func replicasLeft(c *Change) bool {
	if c.Desired == nil || !scalable(c.ID) {
		return false
	}
	_, found, _ := unstructured.NestedFieldNoCopy(c.Desired.Object, "spec", "replicas")
	return !found
}

// SpecDigest is the digest of a workload's live spec without its replica
// count, which Entry.Spec records for workloads whose replica count is
// not deliver's: a new generation with the same SpecDigest is a scale,
// not drift.
func SpecDigest(live *unstructured.Unstructured) string {
	spec, found, _ := unstructured.NestedMap(live.Object, "spec")
	if !found {
		return ""
	}
	delete(spec, "replicas")
	data, err := json.Marshal(spec)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// handoverManager co-owns a field deliver stops applying (spec.replicas
// an autoscaler takes, a field of an ignore rule), at the value deliver
// applied; the next writer of the field (an autoscaler, kubectl scale)
// takes it. See keepIgnored.
const handoverManager = "deliver-handover"

// listObjects lists the whole objects of k as the app's identity, through
// the run's SharedLists when it has some (see listAhead). The items are
// shared: nobody may change them.
func (m *Manager) listObjects(ctx context.Context, k listKey, since time.Time) ([]unstructured.Unstructured, error) {
	list := func(ctx context.Context, k listKey) ([]unstructured.Unstructured, error) {
		res, err := m.objects.dyn.Resource(k.gvr).Namespace(k.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return res.Items, nil
	}
	if m.opts.Lists == nil {
		return list(ctx, k)
	}
	return m.opts.Lists.getObjects(ctx, m.impersonated(), k, since, list)
}
