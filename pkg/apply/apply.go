package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/deliverhq/deliver/pkg/object"
)

// Apply plans the set against the cluster and executes the plan. It is
// Plan followed by Execute.
func (m *Manager) Apply(ctx context.Context, set *object.Set, opts PlanOptions) (*Report, error) {
	p, err := m.Plan(ctx, set, opts)
	if err != nil {
		return nil, err
	}
	return m.Execute(ctx, p)
}

// Execute applies a plan: stage by stage with server-side apply, sending
// only created and changed objects, then prunes what left git. The
// inventory is written before the first write, so that it covers every
// object the run may create even if the run dies, and again at the end.
// Execute stops after the first stage with a failure, so workloads never
// start against config that failed to apply.
func (m *Manager) Execute(ctx context.Context, p *Plan) (*Report, error) {
	start := time.Now()
	rep := &Report{}
	entries := p.inventory.index()
	for _, c := range p.Changes {
		if _, ok := entries[c.ID]; !ok && c.Type != ChangeDelete {
			entries[c.ID] = Entry{ID: c.ID, Version: c.version}
		}
	}
	inv := &Inventory{App: p.App, Revision: p.Revision, Time: time.Now().UTC(), Result: ResultApplying}
	inv.Entries = entryList(entries)
	if err := m.writeInventory(ctx, inv); err != nil {
		return nil, err
	}

	var (
		errs []error
		mu   sync.Mutex
	)
	record := func(c *Change, r Result, live *unstructured.Unstructured) {
		mu.Lock()
		defer mu.Unlock()
		rep.Results = append(rep.Results, r)
		if r.Action == Failed {
			errs = append(errs, fmt.Errorf("%s: apply: %s", r.ID, r.Error))
			return
		}
		e := Entry{ID: c.ID, Version: c.version, Digest: c.digest}
		if live != nil {
			e.ResourceVersion, e.Generation = live.GetResourceVersion(), live.GetGeneration()
		} else if old, ok := entries[c.ID]; ok && old.Digest == c.digest {
			e.ResourceVersion, e.Generation = old.ResourceVersion, old.Generation
		} else {
			e.Digest = "" // unchanged per a dry run, but never applied by deliver: verify next time
			if c.Live != nil {
				e.Digest = c.digest
				e.ResourceVersion, e.Generation = c.Live.GetResourceVersion(), c.Live.GetGeneration()
			}
		}
		entries[c.ID] = e
	}

	for _, stage := range planStages(p.Changes) {
		var crds []*object.Object
		m.forEach(ctx, len(stage), func(i int) {
			c := stage[i]
			if c.Type == ChangeUnchanged {
				record(c, Result{ID: c.ID, Origin: c.Origin, Action: Unchanged}, nil)
				return
			}
			r, live := m.applyChange(ctx, c)
			record(c, r, live)
		})
		for _, c := range stage {
			if c.ID.GroupKind().String() == "CustomResourceDefinition.apiextensions.k8s.io" && c.Type != ChangeUnchanged {
				crds = append(crds, &object.Object{Unstructured: c.Desired})
			}
		}
		if len(errs) > 0 {
			break
		}
		if len(crds) > 0 {
			// Objects of the new kinds follow in later stages: wait until
			// the CRDs are served, then forget the cached discovery.
			if err := m.Wait(ctx, crds); err != nil {
				errs = append(errs, err)
				break
			}
			m.mapper.Reset()
		}
	}
	if len(errs) == 0 {
		for _, c := range p.Changes {
			if c.Type != ChangeDelete {
				continue
			}
			r := m.prune(ctx, c, p.App)
			rep.Results = append(rep.Results, r)
			if r.Action == Failed {
				errs = append(errs, fmt.Errorf("%s: prune: %s", r.ID, r.Error))
				continue
			}
			delete(entries, c.ID)
		}
	}

	inv.Entries, inv.Time = entryList(entries), time.Now().UTC()
	inv.Result, inv.Message = ResultSucceeded, ""
	err := errors.Join(errs...)
	if err != nil {
		inv.Result, inv.Message = ResultFailed, m.opts.Redact(err.Error())
	}
	if werr := m.writeInventory(context.WithoutCancel(ctx), inv); werr != nil {
		err = errors.Join(err, werr)
	}
	rep.Duration = time.Since(start)
	return rep, err
}

func entryList(m map[object.ID]Entry) []Entry {
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// planStages groups the non-delete changes by stage, in order.
func planStages(cs []*Change) [][]*Change {
	var out [][]*Change
	last := Stage(-1)
	for _, c := range cs {
		if c.Type == ChangeDelete {
			continue
		}
		if c.stage != last || len(out) == 0 {
			out = append(out, nil)
			last = c.stage
		}
		out[len(out)-1] = append(out[len(out)-1], c)
	}
	return out
}

// forEach calls fn for 0..n-1 with at most Concurrency calls at once.
func (m *Manager) forEach(ctx context.Context, n int, fn func(i int)) {
	sem := make(chan struct{}, m.opts.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// applyChange sends one object. Conflicts with other field managers are
// taken over (and reported) unless NoForce is set; immutable-field errors
// lead to delete and re-create where allowed.
func (m *Manager) applyChange(ctx context.Context, c *Change) (Result, *unstructured.Unstructured) {
	res := Result{ID: c.ID, Origin: c.Origin}
	fail := func(err error) (Result, *unstructured.Unstructured) {
		res.Action, res.Error = Failed, m.opts.Redact(err.Error())
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if c.gvr.Resource == "" { // its CRD was created in this run
		gvr, namespaced, err := m.gvrFor(c.ID.GroupKind(), c.version)
		if err != nil {
			return fail(err)
		}
		c.gvr = gvr
		if namespaced && c.Desired.GetNamespace() == "" {
			c.Desired.SetNamespace(m.opts.DefaultNamespace)
			c.ID.Namespace = m.opts.DefaultNamespace
			res.ID = c.ID
		}
	}
	ri := m.client(c)
	opts := metav1.ApplyOptions{FieldManager: m.opts.FieldManager}
	live, err := ri.Apply(ctx, c.ID.Name, c.Desired, opts)
	if apierrors.IsConflict(err) {
		// Another manager owns some of the fields. Git is the source of
		// truth: take them, and say whose they were.
		res.Conflicts = conflicts(err)
		if m.opts.NoForce {
			return fail(fmt.Errorf("conflict with another field manager (use without --fail-on-conflict to take the fields over): %w", err))
		}
		opts.Force = true
		live, err = ri.Apply(ctx, c.ID.Name, c.Desired, opts)
	}
	if err != nil && isImmutable(err) && (m.opts.Recreate || recreateAllowed(c.Desired.GetAnnotations())) {
		if err := m.deleteAndWait(ctx, c); err != nil {
			return fail(fmt.Errorf("recreate: %w", err))
		}
		live, err = ri.Apply(ctx, c.ID.Name, c.Desired, metav1.ApplyOptions{FieldManager: m.opts.FieldManager, Force: true})
		if err == nil {
			res.Action = Recreated
			return res, live
		}
	}
	if err != nil {
		return fail(explain(err, c))
	}
	switch {
	case c.Type == ChangeCreate:
		res.Action = Created
	case c.Live != nil && sameContent(c.Live, live):
		res.Action = Unchanged
	default:
		res.Action = Configured
	}
	return res, live
}

// conflicts lists "manager: field" pairs from a conflict error.
func conflicts(err error) []string {
	var out []string
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Details != nil {
		for _, cause := range se.Status().Details.Causes {
			out = append(out, cause.Message)
		}
	}
	if len(out) == 0 {
		out = append(out, err.Error())
	}
	return out
}

// deleteAndWait deletes the object in the foreground (its dependents, such
// as a Job's Pods, first) and waits until it is gone.
func (m *Manager) deleteAndWait(ctx context.Context, c *Change) error {
	ri := m.client(c)
	fg := metav1.DeletePropagationForeground
	if err := ri.Delete(ctx, c.ID.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, m.opts.PollInterval/2, true, func(ctx context.Context) (bool, error) {
		_, err := ri.Get(ctx, c.ID.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}
