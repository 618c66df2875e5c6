package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/object"
)

// Apply plans the set against the cluster and executes the plan, holding
// the app's lock for both.
func (m *Manager) Apply(ctx context.Context, set *object.Set, opts PlanOptions) (*Report, error) {
	if opts.App == "" {
		return nil, errors.New("plan: app name is required")
	}
	lock, ctx, err := m.lock(ctx, opts.App)
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	var read *lockedInventory
	if opts.UnlessDelivered {
		inv, version, err := m.readInventory(ctx, opts.App)
		if err != nil {
			return nil, lock.result(err)
		}
		// Delivered by another identity is not delivered: the plan
		// refuses that (IdentityError).
		sameIdentity := opts.Identity == nil || inv.Identity == nil || !inv.Identity.differs(*opts.Identity)
		if inv.Revision == opts.Revision && inv.Result == ResultSucceeded && sameIdentity {
			return nil, fmt.Errorf("%s: %.12s: %w", opts.App, opts.Revision, ErrDelivered)
		}
		// The plan starts from what was just read, under the same lock:
		// nothing can have changed it since.
		read = &lockedInventory{inv: inv, version: version, at: time.Now()}
	}
	rep, err := m.planAndExecute(ctx, set, opts, lock, read)
	return rep, lock.result(err)
}

// planAndExecute plans set and executes the plan under lock, from the
// inventory read under it (nil: the plan reads it); the report carries
// the plan. A removal that leaves the objects (DeletionOrphan) is only
// checked (orphan).
func (m *Manager) planAndExecute(ctx context.Context, set *object.Set, opts PlanOptions, lock *appLock, read *lockedInventory) (*Report, error) {
	p, err := m.plan(ctx, set, opts, lock, read)
	if err != nil {
		return nil, err
	}
	execute := m.execute
	if p.removalPolicy() == DeletionOrphan {
		execute = m.orphan
	}
	rep, err := execute(ctx, p)
	if rep != nil {
		rep.Plan = p
	}
	return rep, err
}

// lockedInventory is an app's inventory as read under the app's lock,
// with the resourceVersion of its Secret ("" when there is none) and
// when it was read.
type lockedInventory struct {
	inv     *Inventory
	version string
	at      time.Time
}

// Execute applies a plan in the order that keeps the running version safe:
//
//  1. CRDs, Namespaces, cluster objects and config (ServiceAccounts,
//     ConfigMaps, Secrets, Services) of the new revision;
//  2. recreate only: scale the changing workloads to zero, wait until their
//     Pods are gone;
//  3. pre-apply hooks (migrations) by weight, each waited for;
//  4. workloads and everything else; with Wait, or when post-apply hooks
//     run, until ready (kstatus);
//  5. post-apply hooks;
//  6. prune what left git, in reverse order.
//
// These are the stages of runStages, walked by one loop (see stages.go).
// Only created and changed objects are sent. A cancelled ctx (SIGTERM)
// stops the run at the next stage boundary: writes already sent finish
// (they are not cut off mid-request), no new one starts, replicas a
// recreate scaled down are restored, and the inventory records every object
// written with the result "failed" and the message "interrupted"; neither
// a rollback nor on-failure hooks run, since nothing failed.
// A failure stops the run:
// replicas scaled down by a recreate are restored (the old version comes
// back), a rollout that did not complete is rolled back when the plan asks
// for it (PlanOptions.RollbackOnFailure), on-failure hooks run, and
// nothing after the failed step changes.
// The inventory is written before the first write when the run creates
// objects (or scales down, or runs hooks), so that it covers every object
// the run may create even if the run dies, and always at the end.
//
// CI and the reconciler may apply the same app at once: Execute holds the
// app's lock (a Lease) while it runs, so one of them waits, and fails with
// ErrLocked after LockTimeout. A plan made before another run changed the
// app is refused: plan again (Apply does both under the lock). A run that
// loses the lock (it could not renew it while the API server stalled)
// stops before its next write, a write in flight is cut off, and it fails
// with ErrLockLost; it writes nothing more, not even the inventory, and
// leaves the lock to be taken over as a killed run's.
func (m *Manager) Execute(ctx context.Context, p *Plan) (*Report, error) {
	if m.err != nil {
		return nil, m.err
	}
	lock, ctx, err := m.lock(ctx, p.App)
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	rep, err := m.executeLocked(ctx, p, lock)
	return rep, lock.result(err)
}

func (m *Manager) executeLocked(ctx context.Context, p *Plan, lock *appLock) (*Report, error) {
	inv, err := m.ReadInventory(ctx, p.App)
	if err != nil {
		return nil, err
	}
	if !inv.Time.Equal(p.inventory.Time) || inv.Result != p.inventory.Result {
		return nil, fmt.Errorf("%s: another run changed the app since this plan was made (at %s): plan again", p.App, inv.Time.Format(time.RFC3339))
	}
	if lock.tookOver {
		// A run that only updates objects records itself at its end: this
		// one was killed first, and may have changed what the plan saw.
		return nil, fmt.Errorf("%s: a run was killed while applying the app (its lock was left behind): plan again", p.App)
	}
	return m.execute(ctx, p)
}

func (m *Manager) execute(ctx context.Context, p *Plan) (*Report, error) {
	// Another app's object is never taken over silently: nothing is
	// written, not even the inventory.
	if err := p.ConflictErr(); err != nil {
		return nil, err
	}
	if err := p.pinRefusal(); err != nil {
		return nil, err
	}
	r := &run{m: m, p: p, start: time.Now(), rep: &Report{}, entries: p.inventory.index(), placed: map[object.ID]bool{}}
	added := false
	for _, c := range p.Changes {
		if _, ok := r.entries[c.ID]; !ok && c.Type != ChangeDelete {
			// The places of its secrets from the start: a run killed
			// after creating it leaves them for the next run's diff.
			r.entries[c.ID] = Entry{ID: c.ID, Version: c.version, Secrets: secretPointers(c.Desired, m.opts.Redact)}
			r.placed[c.ID] = true
			added = true
		}
	}
	inv := &Inventory{App: p.App, Revision: p.Revision, Time: time.Now().UTC(), Result: ResultApplying,
		Identity: p.recordedIdentity(), Hooks: p.inventory.Hooks, ScaledDown: p.inventory.ScaledDown, Workloads: p.inventory.Workloads,
		dropAdopt: p.AdoptedIdentity != nil, stored: p.inventory.stored, History: p.inventory.History}
	if p.AdoptedIdentity != nil {
		r.rep.AdoptedFrom = &p.AdoptedIdentity.Recorded
	}
	p.releaseKept(r.rep, r.entries)
	inv.Entries, inv.SecretPlaces = entryList(r.entries), r.secretPlaces()
	inv.DeletionPolicy = cmp.Or(p.opts.DeletionPolicy, p.inventory.DeletionPolicy)
	// A recreate records the replica counts before it scales anything; a
	// count left by an interrupted run is the older, true one.
	scaled := append([]Scaled(nil), p.inventory.ScaledDown...)
	recorded := map[object.ID]bool{}
	for _, s := range scaled {
		recorded[s.ID] = true
	}
	r.byID = map[object.ID]*Change{}
	for _, c := range p.Changes {
		r.byID[c.ID] = c
	}
	for _, id := range p.ScaleDown {
		if recorded[id] {
			continue
		}
		n, err := m.liveReplicas(ctx, r.byID[id])
		if err != nil {
			return nil, fmt.Errorf("%s: read replicas: %w", id, err)
		}
		scaled = append(scaled, Scaled{ID: id, Version: r.byID[id].version, Replicas: n})
	}
	inv.ScaledDown = scaled
	r.scaled = scaled
	// The inventory is written before the first write when the run may
	// leave something it does not cover yet: an object created, a replica
	// count scaled to zero, a hook's Job. A run that only updates or
	// deletes objects it lists has nothing to add (half the inventory
	// writes of a typical change): its lock says it is under way
	// (RunState), and a run that finds the lock left behind by a killed
	// one plans from the cluster, not from what it read ahead.
	if added || len(scaled) > 0 || len(p.inventory.ScaledDown) > 0 || p.mayRunHooks() {
		if err := m.writeInventory(ctx, inv); err != nil {
			return nil, err
		}
	}

	r.hooksDone = map[object.ID]HookRecord{}
	for _, h := range p.inventory.Hooks {
		r.hooksDone[h.ID] = h
	}
	r.config, r.workloads = splitStages(planStages(p.Changes))
	err := r.walk(ctx, runStages)

	inv.Entries, inv.Time, inv.ScaledDown = entryList(r.entries), time.Now().UTC(), r.scaled
	inv.SecretPlaces = r.secretPlaces()
	if err == nil {
		// What a later failed rollout rolls back to. A failed run keeps
		// the earlier objects: its own may be the reason it failed.
		inv.Workloads = m.workloadRecords(p)
		// Only a run that applied everything vouches for its inputs.
		inv.Inputs = p.opts.Inputs
		inv.History = withHistory(inv.History, historyEntry(inv, r.start))
	}
	inv.Hooks = nil
	for _, h := range r.hooksDone {
		inv.Hooks = append(inv.Hooks, h)
	}
	sort.Slice(inv.Hooks, func(i, j int) bool { return less(inv.Hooks[i].ID, inv.Hooks[j].ID) })
	inv.Result, inv.Message = ResultSucceeded, ""
	if err != nil {
		inv.Result, inv.Message = ResultFailed, m.opts.Redact(err.Error())
		if ctx.Err() != nil && !strings.HasPrefix(inv.Message, "interrupted") {
			inv.Message = "interrupted: " + inv.Message
		}
	}
	// The plan goes in the same write (a plan that changes nothing
	// leaves the stored one be: see StoredPlan).
	inv.plan = p.Stored(inv.Result, inv.Time, m.opts.Redact)
	// A run that lost its lock writes nothing more, not even this: the
	// next run takes the lock over as a killed run's and plans from the
	// cluster.
	if wctx := detach(ctx); wctx.Err() == nil {
		if werr := m.writeInventory(wctx, inv); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	rep := r.rep
	// Results arrive in completion order; report objects in apply order.
	order := map[object.ID]int{}
	for i, c := range p.Changes {
		order[c.ID] = i
	}
	rank := func(id object.ID) int {
		if i, ok := order[id]; ok {
			return i
		}
		return len(p.Changes) // a pruned hook
	}
	sort.SliceStable(rep.Results, func(i, j int) bool {
		a, b := rep.Results[i], rep.Results[j]
		if a.Hook != "" || b.Hook != "" {
			return false
		}
		return rank(a.ID) < rank(b.ID)
	})
	p.markAdopted(rep)
	rep.Duration = time.Since(r.start)
	return rep, err
}

// splitStages separates the stages before the workloads (config the
// pre-apply hooks need) from the workloads and the rest.
func splitStages(stages [][]*Change) (config, rest [][]*Change) {
	for _, s := range stages {
		if s[0].stage < StageWorkloads {
			config = append(config, s)
		} else {
			rest = append(rest, s)
		}
	}
	return config, rest
}

// desiredObjects returns the objects the plan applies, for Wait: not
// those an apply policy leaves alone, which may be someone else's to make
// ready, or not exist (Ignore).
func (p *Plan) desiredObjects() []*object.Object { return waitable(p.Changes) }

// waitable returns the objects of cs a wait waits for: not deletes, not
// those an apply policy leaves alone.
func waitable(cs []*Change) []*object.Object {
	var out []*object.Object
	for _, c := range cs {
		if c.Type != ChangeDelete && !(c.Type == ChangeUnchanged && c.policy != ApplyAlways) {
			out = append(out, &object.Object{Unstructured: c.Desired, Origin: c.Origin})
		}
	}
	return out
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
// Stopping (ctx done), what was started finishes and nothing new starts:
// a call that got its turn after the stop returns at once.
func (m *Manager) forEach(ctx context.Context, n int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(m.opts.Concurrency)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if ctx.Err() == nil {
				fn(i)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// applyChange sends one object. Conflicts with other field managers are
// taken over (and reported) unless NoForce is set; immutable-field errors
// lead to delete and re-create where allowed.
//
// It returns what the server answered: only the metadata for an object
// created (see send).
func (m *Manager) applyChange(ctx context.Context, c *Change) (Result, metav1.Object) {
	res := Result{ID: c.ID, Origin: c.Origin}
	fail := func(err error) (Result, metav1.Object) {
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
			c.body = nil
			c.ID.Namespace = m.opts.DefaultNamespace
			res.ID = c.ID
		}
	}
	// A write under way finishes even when the run is being stopped: a
	// request cut off mid-flight leaves the caller unsure whether the
	// object changed, and the inventory with it. Only a lost lock cuts it
	// off: another run may be writing the app.
	wctx, cancel := context.WithTimeout(detach(ctx), writeTimeout)
	defer cancel()
	if len(c.handover) > 0 && c.Type != ChangeCreate {
		if err := m.handOver(wctx, c); err != nil {
			return fail(fmt.Errorf("hand ignored fields over: %w", err))
		}
	}
	if c.toRecreate && c.Type != ChangeCreate {
		if err := m.switchToRecreate(wctx, c); err != nil {
			return fail(fmt.Errorf("switch the strategy to Recreate: %w", m.denied(err, "patch", c.ID.String())))
		}
	}
	opts := metav1.ApplyOptions{FieldManager: m.opts.FieldManager}
	live, err := m.send(wctx, c, opts)
	if apierrors.IsConflict(err) {
		// Another manager owns some of the fields. Git is the source of
		// truth: take them, and say whose they were.
		for _, c := range conflicts(err) {
			// spec.replicas held at zero by a recreate, or kept while
			// git set none, is ours to take back.
			if !strings.Contains(c, `"`+recreateManager+`"`) && !strings.Contains(c, `"`+handoverManager+`"`) {
				res.Conflicts = append(res.Conflicts, c)
			}
		}
		if m.opts.NoForce && len(res.Conflicts) > 0 {
			res.Conflicts = nil // nothing was taken over; the error says whose fields they are
			return fail(fmt.Errorf("conflict with another field manager (use without --fail-on-conflict to take the fields over): %w", err))
		}
		opts.Force = true
		live, err = m.send(wctx, c, opts)
	}
	if err != nil && isImmutable(err) && (m.opts.Recreate || recreateAllowed(c.Desired.GetAnnotations())) {
		if err := m.deleteAndWait(ctx, c); err != nil {
			return fail(fmt.Errorf("recreate: %w", err))
		}
		if c.rendered != nil {
			// A new object: with the fields left to others (see
			// ignoreFields), so that it starts complete.
			c.Desired, c.body = c.rendered, nil
		}
		live, err = m.send(ctx, c, metav1.ApplyOptions{FieldManager: m.opts.FieldManager, Force: true})
		if err == nil {
			res.Action = Recreated
			return res, live
		}
	}
	if err != nil {
		return fail(explain(m.denied(err, "apply", c.ID.String()), c))
	}
	// Only an update asks for the whole object back (see send).
	applied, whole := live.(*unstructured.Unstructured)
	switch {
	case c.Type == ChangeCreate:
		res.Action = Created
	case c.Live != nil && whole && sameContent(c.Live, applied):
		res.Action = Unchanged
	default:
		res.Action = Configured
	}
	return res, live
}

// send server-side applies the change's object. For an object being
// created, nothing of the answer but its resourceVersion and generation is
// used (for the inventory), so the server is asked for the metadata only,
// in protobuf: cheaper for the API server to encode and for deliver to
// decode than the whole object in JSON (a first apply of 1,000 objects
// about a tenth faster against a local API server). An update gets the
// whole object, to tell a no-op from a change.
func (m *Manager) send(ctx context.Context, c *Change, opts metav1.ApplyOptions) (metav1.Object, error) {
	if c.Type != ChangeCreate {
		u, err := m.applyPatch(ctx, c, opts)
		if err != nil {
			return nil, err
		}
		return u, nil
	}
	data, err := c.patch()
	if err != nil {
		return nil, err
	}
	// Namespace("") is the cluster scope.
	pm, err := m.objects.meta.Resource(c.gvr).Namespace(c.ID.Namespace).Patch(ctx, c.ID.Name, types.ApplyPatchType, data, patchOptions(opts))
	if err != nil {
		return nil, err
	}
	return pm, nil
}

// applyPatch is the dynamic client's Apply with the body encoded by
// Change.patch.
func (m *Manager) applyPatch(ctx context.Context, c *Change, opts metav1.ApplyOptions) (*unstructured.Unstructured, error) {
	data, err := c.patch()
	if err != nil {
		return nil, err
	}
	return m.applyBody(ctx, c, data, opts)
}

// applyBody sends data as the server-side apply of c's object.
func (m *Manager) applyBody(ctx context.Context, c *Change, data []byte, opts metav1.ApplyOptions) (*unstructured.Unstructured, error) {
	return m.client(c).Patch(ctx, c.ID.Name, types.ApplyPatchType, data, patchOptions(opts))
}

// patch returns the body of the desired object's server-side apply: its
// JSON, reusing that of the digest.
func (c *Change) patch() ([]byte, error) {
	if c.body != nil {
		return c.body, nil
	}
	return c.Desired.MarshalJSON()
}

// patchOptions are the PatchOptions of a server-side apply.
//
// Field validation is Ignore. For an apply patch, the server's default (Warn)
// and Strict add only one check to the apply: it parses the whole patch a
// second time as YAML, looking for duplicate keys. deliver's patches are
// encoded from maps and cannot have any, so that parse is pure cost (about a
// tenth of a millisecond of the API server's CPU per Deployment). Unknown
// fields are rejected either way, by the apply itself ("field not declared in
// schema"); TestUnknownFieldRejected checks that against the real API server.
func patchOptions(opts metav1.ApplyOptions) metav1.PatchOptions {
	return metav1.PatchOptions{
		FieldManager:    opts.FieldManager,
		Force:           &opts.Force,
		DryRun:          opts.DryRun,
		FieldValidation: metav1.FieldValidationIgnore,
	}
}

// waitServed returns once discovery lists the kinds of the CRDs: an
// Established CRD can still be missing from the server's discovery for a
// moment, and the objects of its kind would fail with "no matches".
func (m *Manager) waitServed(ctx context.Context, crds []*object.Object) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, crd := range crds {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
		gk := schema.GroupKind{Group: group, Kind: kind}
		for {
			m.mapper.Reset()
			_, err := m.mapper.RESTMapping(gk)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: established, but %s not served: %w", crd.ID(), gk, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// writeTimeout bounds one write that runs on after a stop.
const writeTimeout = 30 * time.Second

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
		return m.denied(err, "delete", c.ID.String())
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	return m.waitGone(ctx, c, m.opts.PollInterval/2)
}

// Step names a step of Execute, for progress reports.
type Step string

// The steps of one apply, in order.
const (
	StepConfig         Step = "config"
	StepScaleDown      Step = "scale-down"
	StepPreApplyHooks  Step = "pre-apply-hooks"
	StepWorkloads      Step = "workloads"
	StepWait           Step = "wait"
	StepPostApplyHooks Step = "post-apply-hooks"
	StepPrune          Step = "prune"
)

func (m *Manager) progress(p *Plan, s Step, n int) {
	if m.opts.Progress != nil {
		m.opts.Progress(p.App, s, n)
	}
}

// countChanges counts the objects of the stages that will be written.
func countChanges(stages [][]*Change) int {
	n := 0
	for _, s := range stages {
		for _, c := range s {
			if c.Type != ChangeUnchanged {
				n++
			}
		}
	}
	return n
}

// mayRunHooks says whether the run may start a hook: one planned to run,
// or an on-failure hook (which runs when the run fails).
func (p *Plan) mayRunHooks() bool {
	for _, h := range p.Hooks {
		if h.Run || h.hook.Has(OnFailure) {
			return true
		}
	}
	return false
}

// hookCount counts the hooks of a phase that the plan runs.
func (p *Plan) hookCount(phase HookPhase) int {
	n := 0
	for _, h := range p.Hooks {
		if h.Run && h.hook.Has(phase) {
			n++
		}
	}
	return n
}
