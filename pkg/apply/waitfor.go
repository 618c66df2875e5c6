package apply

import (
	"fmt"

	"github.com/deliverhq/deliver/pkg/object"
)

// PlanOptions.WaitFor is Flux's Kustomization healthChecks: objects
// that are not the app's (made by a controller the app configures, or by
// another app) whose readiness the run waits for after applying, by the
// same kstatus or CEL health checks, within the same timeout. A run
// waits for them even without Wait; one that is not found in time
// fails the run, naming it.

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
