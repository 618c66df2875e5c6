package apply

import (
	"context"
	"fmt"

	"github.com/deliverhq/deliver/pkg/object"
)

// PlanOptions.WaitFor is Flux's Kustomization healthChecks: objects
// that are not the app's (made by a controller the app configures, or by
// another app) whose readiness the run waits for after applying, by the
// same kstatus or CEL health checks, within the same timeout. A run
// waits for them even without Wait; one that is not found in time
// fails the run, naming it.

// WaitUnchanged waits, within Options.Timeout, for the objects outside the
// app that p (a plan of PlanUnchanged, which applies nothing) waits for
// (PlanOptions.WaitFor), as a run's wait stage does: an app whose inputs
// did not change still waits for them on every run, as Flux checks a
// Kustomization's healthChecks at each reconciliation.
func (m *Manager) WaitUnchanged(ctx context.Context, p *Plan) error {
	if len(p.waitFor) == 0 {
		return nil
	}
	if err := m.Wait(ctx, p.waitFor); err != nil {
		return fmt.Errorf("waitFor: %w", err)
	}
	return nil
}

// planWaitFor resolves the objects of opts.WaitFor against the cluster's
// kinds: an unknown kind fails the plan, naming the object, and a
// cluster-scoped one loses the namespace the caller defaulted.
func (m *Manager) planWaitFor(p *Plan, objs []*object.Object, mappings *gvrCache) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		_, namespaced, err := mappings.gvrFor(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("waitFor: %s: %w", o.ID(), err)
		}
		if !namespaced && o.GetNamespace() != "" {
			o = &object.Object{Unstructured: o.DeepCopy(), Origin: o.Origin}
			o.SetNamespace("")
		}
		p.waitFor = append(p.waitFor, o)
		p.WaitFor = append(p.WaitFor, o.ID())
	}
	return nil
}
