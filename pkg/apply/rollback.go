package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// rollbackable reports whether c's previous object is kept in the
// inventory for a rollback: the workloads whose rollout Wait watches, and
// the objects of a kind a health check judges (Options.Health): a custom
// resource whose operator failed on its new spec goes back, like a
// Deployment, to the spec it was ready with.
func rollbackable(c *Change, rules *health.Rules) bool {
	switch c.ID.GroupKind().String() {
	case "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps":
		return true
	}
	if c.Desired == nil {
		return false
	}
	_, ok := rules.Check(c.Desired.GroupVersionKind())
	return ok
}

// workloadRecords returns the desired workloads of a successful run, to be
// kept in the inventory. Over MaxRollbackBytes it keeps none: a partial
// rollback would mix two revisions. Nor does it keep any when a workload
// inlines a secret value (a Vault or SOPS reference resolved into an env
// value): the inventory holds digests, never values, and a masked object
// could not be rolled back to.
func (m *Manager) workloadRecords(p *Plan) []Workload {
	var out []Workload
	size := 0
	for _, c := range p.Changes {
		if c.Type == ChangeDelete || !rollbackable(c, m.opts.Health) {
			continue
		}
		data, err := json.Marshal(c.Desired.Object)
		if err != nil {
			return nil
		}
		if size += len(data); size > MaxRollbackBytes {
			return nil
		}
		if m.opts.Redact(string(data)) != string(data) {
			return nil
		}
		out = append(out, Workload{ID: c.ID, Revision: p.Revision, Digest: c.digest, Object: data})
	}
	return out
}

// rollbackPlan lists the workloads (and health-checked objects, see
// rollbackable) a failed rollout would roll back: those the plan changes
// and of which the inventory keeps an earlier object.
func rollbackPlan(p *Plan, rules *health.Rules) []object.ID {
	prev := map[object.ID]bool{}
	for _, w := range p.inventory.Workloads {
		prev[w.ID] = true
	}
	var out []object.ID
	for _, c := range p.Changes {
		if (c.Type == ChangeUpdate || c.Type == ChangeCreate) && rollbackable(c, rules) && prev[c.ID] {
			out = append(out, c.ID)
		}
	}
	return out
}

// rollback re-applies the inventory's objects of the workloads (and
// health-checked objects) the plan changed and waits until they are
// ready. Only those go back: the
// config of the new revision stays (objects it no longer has were not
// pruned, as prune runs only after a successful rollout), and a migration
// that ran is not undone; with the rolling strategy old code must cope
// with the new schema anyway. A workload new in this run has no earlier
// object and is left as it is. record notes each rolled-back object for
// the inventory.
func (m *Manager) rollback(ctx context.Context, p *Plan, rep *Report, record func(id object.ID, w Workload, live metav1.Object)) (string, error) {
	prev := map[object.ID]Workload{}
	for _, w := range p.inventory.Workloads {
		prev[w.ID] = w
	}
	var (
		errs   []error
		done   []string
		waitOn []*object.Object
		rev    string
	)
	for _, c := range p.Changes {
		if (c.Type != ChangeUpdate && c.Type != ChangeCreate) || !rollbackable(c, m.opts.Health) {
			continue
		}
		w, ok := prev[c.ID]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not rolled back: the inventory keeps no earlier object of it (new in this run, the app's workloads exceed %d bytes, or one inlines a secret value: reference a Secret instead)", c.ID, MaxRollbackBytes))
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(w.Object); err != nil {
			errs = append(errs, fmt.Errorf("%s: rollback: decode the inventory's object: %w", c.ID, err))
			continue
		}
		gvk := u.GroupVersionKind()
		gvr, _, err := m.gvrFor(gvk.GroupKind(), gvk.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rollback: %w", c.ID, err))
			continue
		}
		rc := &Change{ID: c.ID, Origin: c.Origin, Type: ChangeUpdate, Desired: u, gvr: gvr, version: gvk.Version, digest: w.Digest}
		res, live := m.applyChange(ctx, rc)
		if res.Action == Failed {
			errs = append(errs, fmt.Errorf("%s: rollback: %s", c.ID, res.Error))
			rep.Results = append(rep.Results, res)
			continue
		}
		res.Action = RolledBack
		rep.Results = append(rep.Results, res)
		record(c.ID, w, live)
		done = append(done, c.ID.String())
		waitOn = append(waitOn, &object.Object{Unstructured: u, Origin: c.Origin})
		rev = w.Revision
	}
	if len(waitOn) > 0 {
		if err := m.Wait(ctx, waitOn); err != nil {
			errs = append(errs, fmt.Errorf("rollback: %w", err))
		}
	}
	if len(done) == 0 {
		return "", errors.Join(errs...)
	}
	summary := "rolled back " + strings.Join(done, ", ")
	if rev != "" {
		summary += " to revision " + rev
	}
	return summary, errors.Join(errs...)
}
