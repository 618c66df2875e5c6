package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/deliverhq/deliver/pkg/object"
)

// Strategy is how a new version of an app's workloads replaces the old.
type Strategy string

// The strategies.
const (
	// Rolling lets Deployments and StatefulSets roll with their own update
	// strategy; old Pods serve until new ones are ready, also while the
	// migration runs.
	Rolling Strategy = "rolling"
	// Recreate stops the old version before the migration: the app's
	// changing workloads are scaled to zero and their Pods gone before the
	// pre-apply hooks run, so old code never meets a migrated schema.
	// DaemonSets have no replica count to hold at zero: an app's
	// DaemonSets roll after the migration, and annotating one recreate is
	// an error.
	Recreate Strategy = "recreate"
)

// AnnotationStrategy on a workload overrides the app's strategy for it.
const AnnotationStrategy = "deliver.dev/strategy"

// ParseStrategy checks a strategy name; empty means rolling.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case "", Rolling:
		return Rolling, nil
	case Recreate:
		return Recreate, nil
	}
	return "", fmt.Errorf("unknown strategy %q (want rolling or recreate)", s)
}

// checkStrategy rejects a strategy annotation deliver cannot honour, rather
// than rolling a workload whose owner asked for old and new code never to
// meet.
func checkStrategy(u *unstructured.Unstructured) error {
	v, ok := u.GetAnnotations()[AnnotationStrategy]
	if !ok {
		return nil
	}
	s, err := ParseStrategy(v)
	if err != nil || v == "" {
		return fmt.Errorf("%s: unknown strategy %q (want rolling or recreate)", AnnotationStrategy, v)
	}
	if s == Recreate && u.GroupVersionKind().GroupKind().String() == "DaemonSet.apps" {
		// A DaemonSet has no replica count to hold at zero.
		return fmt.Errorf("%s: recreate is not supported for a DaemonSet", AnnotationStrategy)
	}
	return nil
}

func strategyOf(u *unstructured.Unstructured, app Strategy) Strategy {
	if s, err := ParseStrategy(u.GetAnnotations()[AnnotationStrategy]); err == nil && u.GetAnnotations()[AnnotationStrategy] != "" {
		return s
	}
	return app
}

func scalable(id object.ID) bool {
	switch id.GroupKind().String() {
	case "Deployment.apps", "StatefulSet.apps":
		return true
	}
	return false
}

// scaleDownPlan lists the workloads a recreate stops: those that exist,
// use the recreate strategy, and whose old Pods must not meet what comes
// next: their pod template (spec.template) changes, or a pre-apply hook
// runs because its inputs changed (a migration old code must not see). A
// change elsewhere (replicas, the workload's own labels and annotations,
// anything outside the template) starts no new Pods, and is applied in
// place, as Kubernetes' own Recreate strategy does: a `kubectl scale`
// reverted by the next run costs no outage.
func scaleDownPlan(p *Plan) []object.ID {
	migrates := p.migrates()
	var out []object.ID
	for _, c := range p.Changes {
		if (c.Type != ChangeUpdate && c.Type != ChangeUnchanged) || !scalable(c.ID) || strategyOf(c.Desired, p.opts.Strategy) != Recreate {
			continue
		}
		if migrates || (c.Type == ChangeUpdate && templateChanges(c)) {
			out = append(out, c.ID)
		}
	}
	return out
}

// scaleDownReason says why the plan stops a workload, for the diff.
func (p *Plan) scaleDownReason(id object.ID) string {
	for _, c := range p.Changes {
		if c.ID == id && c.Type == ChangeUpdate && templateChanges(c) {
			return "its pod template changes"
		}
	}
	return "a pre-apply hook runs"
}

// templateChanges reports whether applying the change gives the workload
// a new pod template. It compares the server's dry-run result with the
// live object, so defaults the server fills in are on both sides. A change
// that was not dry-run (an immutable field: the object is re-created)
// counts as one.
func templateChanges(c *Change) bool {
	if c.Live == nil || c.Merged == nil {
		return true
	}
	live, _, _ := unstructured.NestedFieldNoCopy(c.Live.Object, "spec", "template")
	merged, _, _ := unstructured.NestedFieldNoCopy(c.Merged.Object, "spec", "template")
	return !equality.Semantic.DeepEqual(live, merged)
}

// migrates reports whether a pre-apply hook runs because its spec or the
// config it references changed (or it is new). A hook that runs on every
// apply (AnnotationHookRun) does not stop the app by itself: that would
// make every run, a drift revert too, an outage.
func (p *Plan) migrates() bool {
	for _, h := range p.Hooks {
		if h.Run && h.hook.Has(PreApply) && h.Reason != reasonAlways {
			return true
		}
	}
	return false
}

// scaleDown scales the planned workloads to zero and waits until none of
// their Pods is left. The replica counts are recorded in inv, which the
// caller has already written before this is called.
func (m *Manager) scaleDown(ctx context.Context, p *Plan, rep *Report) error {
	byID := map[object.ID]*Change{}
	for _, c := range p.Changes {
		byID[c.ID] = c
	}
	for _, id := range p.ScaleDown {
		c := byID[id]
		if err := m.scale(ctx, c, 0); err != nil {
			return fmt.Errorf("%s: scale to 0: %w", id, err)
		}
		rep.Results = append(rep.Results, Result{ID: id, Origin: c.Origin, Action: ScaledDown})
	}
	for _, id := range p.ScaleDown {
		if err := m.waitNoPods(ctx, byID[id]); err != nil {
			return fmt.Errorf("%s: wait for old Pods to stop: %w", id, err)
		}
	}
	return nil
}

// scale sets spec.replicas through the scale subresource, as kubectl scale
// does, under a field manager of its own.
func (m *Manager) scale(ctx context.Context, c *Change, replicas int64) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := m.client(c).Patch(ctx, c.ID.Name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: recreateManager}, "scale")
	return err
}

// recreateManager owns spec.replicas while a recreate holds a workload at
// zero; the apply of the new version takes the field back.
const recreateManager = "deliver-recreate"

// liveReplicas reads a workload's current replica count.
func (m *Manager) liveReplicas(ctx context.Context, c *Change) (int64, error) {
	live, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	n, found, _ := unstructured.NestedInt64(live.Object, "spec", "replicas")
	if !found {
		n = 1
	}
	return n, nil
}

// waitNoPods waits until no Pod matches the workload's selector.
func (m *Manager) waitNoPods(ctx context.Context, c *Change) error {
	live, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	sel, _, _ := unstructured.NestedMap(live.Object, "spec", "selector")
	ls := &metav1.LabelSelector{}
	if err := runtimeConvert(sel, ls); err != nil {
		return err
	}
	selector, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, m.opts.PollInterval/2, true, func(ctx context.Context) (bool, error) {
		pods, err := m.objects.kube.CoreV1().Pods(c.ID.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0, nil
	})
}

// restore brings back the replica counts recorded before a recreate.
func (m *Manager) restore(ctx context.Context, p *Plan, scaled []Scaled, rep *Report) error {
	byID := map[object.ID]*Change{}
	for _, c := range p.Changes {
		byID[c.ID] = c
	}
	for _, s := range scaled {
		c := byID[s.ID]
		if c == nil {
			continue
		}
		if err := m.scale(ctx, c, s.Replicas); err != nil {
			return fmt.Errorf("%s: restore %d replicas: %w", s.ID, s.Replicas, err)
		}
		rep.Results = append(rep.Results, Result{ID: s.ID, Origin: c.Origin, Action: Restored})
	}
	return nil
}

func runtimeConvert(in map[string]any, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(in, out)
}

// strategyManager owns a Deployment's strategy for the moment it switches
// to Recreate (switchToRecreate); it owns nothing afterwards.
const strategyManager = "deliver-strategy"

// rollingUpdateForbidden reports the API server's refusal of a Deployment
// whose strategy becomes Recreate while its live rollingUpdate settings
// stay. Those settings are the server's defaults, which no field manager
// owns, so a server-side apply that leaves them out does not remove them
// and the result is invalid (kubernetes/kubernetes#24198). It happens
// when an app switches to the recreate strategy, and when git switches a
// Deployment's strategy type to Recreate.
func rollingUpdateForbidden(err error, c *Change, live *unstructured.Unstructured) bool {
	if !apierrors.IsInvalid(err) || live == nil || c.ID.GroupKind().String() != "Deployment.apps" {
		return false
	}
	if t, _, _ := unstructured.NestedString(c.Desired.Object, "spec", "strategy", "type"); t != "Recreate" {
		return false
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", "strategy", "rollingUpdate"); !found {
		return false
	}
	return strings.Contains(err.Error(), "spec.strategy.rollingUpdate")
}

// dryRunToRecreate predicts the apply of a Deployment that switches to
// Recreate (rollingUpdateForbidden): the server dry-runs it with the live
// strategy, which it accepts, and the desired strategy replaces that in
// the answer, as switchToRecreate and the apply will make it.
func (m *Manager) dryRunToRecreate(ctx context.Context, c *Change, live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u := c.Desired.DeepCopy()
	liveStrategy, _, _ := unstructured.NestedMap(live.Object, "spec", "strategy")
	if err := unstructured.SetNestedMap(u.Object, liveStrategy, "spec", "strategy"); err != nil {
		return nil, err
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	merged, err := m.applyBody(ctx, c, data, metav1.ApplyOptions{
		FieldManager: m.opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll},
	})
	if err != nil {
		return nil, err
	}
	want, _, _ := unstructured.NestedMap(c.Desired.Object, "spec", "strategy")
	if err := unstructured.SetNestedMap(merged.Object, want, "spec", "strategy"); err != nil {
		return nil, err
	}
	return merged, nil
}

// switchToRecreate makes a Deployment's strategy Recreate without its
// rollingUpdate settings, before the apply that sets the strategy (see
// rollingUpdateForbidden): a JSON patch, which can remove a field nobody
// owns, under strategyManager, guarded by the live strategy's type; then
// that manager's entry is removed from managedFields, so that it keeps no
// claim on the type (an app switching back to rolling later would
// otherwise leave the Deployment Recreate: a field that another manager
// owns survives an apply that leaves it out). Neither request changes the
// Pod template: nothing rolls until the apply.
func (m *Manager) switchToRecreate(ctx context.Context, c *Change) error {
	patch := []byte(`[{"op":"test","path":"/spec/strategy/type","value":"RollingUpdate"},` +
		`{"op":"remove","path":"/spec/strategy/rollingUpdate"},` +
		`{"op":"replace","path":"/spec/strategy/type","value":"Recreate"}]`)
	if _, err := m.client(c).Patch(ctx, c.ID.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: strategyManager}); err != nil {
		return err
	}
	// The entry is removed by its index, guarded by a test of its manager:
	// a controller's write in between (the Deployment's status) can move
	// it, and then the object is read again and the removal retried.
	return retry.OnError(retry.DefaultBackoff, apierrors.IsInvalid, func() error {
		u, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i, f := range u.GetManagedFields() {
			if f.Manager != strategyManager || f.Operation != metav1.ManagedFieldsOperationUpdate {
				continue
			}
			drop := fmt.Sprintf(`[{"op":"test","path":"/metadata/managedFields/%d/manager","value":%q},{"op":"remove","path":"/metadata/managedFields/%d"}]`, i, strategyManager, i)
			_, err := m.client(c).Patch(ctx, c.ID.Name, types.JSONPatchType, []byte(drop), metav1.PatchOptions{})
			return err
		}
		return nil
	})
}
