package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// stage is one step of a run (Execute): what is done between two points
// at which the run may stop. The steps are an explicit list (runStages)
// walked by one loop (run.walk), which alone decides when the run stops
// (a failure, a cancelled context, a lost lock), reports progress, and
// recovers from a failure; a stage only does its work.
type stage struct {
	// step names the stage in progress reports.
	step Step
	// boundary says the run stops before this stage when its context is
	// done (a stop, or the lock lost: context.Cause says which). The
	// other stages check for themselves: config and workloads before
	// each group of kinds they apply, wait as it polls (its error then
	// says where it was).
	boundary bool
	// size returns how many objects or hooks the stage concerns, for
	// Options.Progress; a negative size skips the stage. A size of 0 is
	// reported only when reportEmpty is set.
	size        func(r *run) int
	reportEmpty bool
	// committed says the new version runs when this stage starts: a
	// failure here is not undone (no restore, no rollback, no on-failure
	// hooks).
	committed bool
	// run does the stage's work.
	run func(ctx context.Context, r *run) error
}

// runStages are the stages of every run, in order (see Execute).
var runStages = []stage{
	{step: StepConfig, size: func(r *run) int { return countChanges(r.config) }, reportEmpty: true, run: stageConfig},
	{step: StepScaleDown, boundary: true, size: func(r *run) int { return sizeOrSkip(len(r.p.ScaleDown)) }, run: stageScaleDown},
	{step: StepPreApplyHooks, boundary: true, size: func(r *run) int { return r.p.hookCount(PreApply) }, run: stagePreApplyHooks},
	{step: StepWorkloads, size: func(r *run) int { return countChanges(r.workloads) }, reportEmpty: true, run: stageWorkloads},
	{step: StepWait, size: (*run).waitSize, reportEmpty: true, run: stageWait},
	{step: StepPostApplyHooks, boundary: true, size: func(r *run) int { return r.p.hookCount(PostApply) }, run: stagePostApplyHooks},
	{step: StepPrune, boundary: true, committed: true, size: func(r *run) int { return r.p.Count(ChangeDelete) }, run: stagePrune},
}

// sizeOrSkip is n, or the size that skips a stage when n is 0.
func sizeOrSkip(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// run is the state of one Execute that its stages share.
type run struct {
	m     *Manager
	p     *Plan
	start time.Time
	rep   *Report

	// mu guards rep.Results and entries while a stage writes objects at
	// once.
	mu      sync.Mutex
	entries map[object.ID]Entry
	// placed are the entries whose Secrets this run recorded from the
	// desired object (see Inventory.SecretPlaces). Guarded by mu.
	placed map[object.ID]bool
	byID   map[object.ID]*Change
	// scaled are the replica counts a recreate scaled down (or an
	// interrupted run left scaled down), restored on failure; nil once
	// the new version has them back.
	scaled    []Scaled
	hooksDone map[object.ID]HookRecord
	// config and workloads are the kinds' stages before and from the
	// workloads on (see splitStages).
	config, workloads [][]*Change
	// rolloutFailed says the wait found the new version failing (not
	// merely cut short by a stop): the rollback's trigger.
	rolloutFailed bool
	// settled are the objects the run wrote or found whose readiness no
	// controller decides (see settled): ready without a watch.
	// Guarded by mu.
	settled map[object.ID]bool
}

// walk runs the stages in order until one fails or the run is stopped,
// then recovers from the failure: replicas scaled down are restored, a
// failed rollout is rolled back when the plan asks for it, and on-failure
// hooks run (not after a stop: nothing failed).
func (r *run) walk(ctx context.Context, stages []stage) error {
	for _, st := range stages {
		var err error
		if st.boundary {
			err = interrupted(ctx)
		}
		if n := st.size(r); err == nil && n >= 0 {
			if n > 0 || st.reportEmpty {
				r.m.progress(r.p, st.step, n)
			}
			err = st.run(ctx, r)
		}
		if err != nil {
			if !st.committed {
				err = r.recover(ctx, err)
			}
			return err
		}
	}
	return nil
}

// interrupted returns the error of a run stopped through ctx, naming the
// cause, or nil while ctx is live.
func interrupted(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("interrupted: stopped before the next stage: %w", context.Cause(ctx))
}

// recover undoes what it can after err stopped the run, and returns err
// with what recovering added.
func (r *run) recover(ctx context.Context, err error) error {
	m, p := r.m, r.p
	bg := detach(ctx)
	if len(r.scaled) > 0 {
		if rerr := m.restore(bg, p, r.scaled, r.rep); rerr != nil {
			err = errors.Join(err, rerr)
		} else {
			r.scaled = nil
		}
	}
	if r.rolloutFailed && p.opts.RollbackOnFailure {
		summary, rerr := m.rollback(bg, p, r.rep, func(id object.ID, w Workload, live metav1.Object) {
			// The live object is the earlier one again: the next plan
			// compares git with it.
			r.mu.Lock()
			defer r.mu.Unlock()
			e := r.entries[id]
			e.Digest, e.ResourceVersion, e.Generation = w.Digest, live.GetResourceVersion(), live.GetGeneration()
			r.entries[id] = e
		})
		if summary != "" {
			err = fmt.Errorf("%w; %s", err, summary)
		}
		if rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if ctx.Err() == nil {
		if herr := m.runHooks(bg, p, OnFailure, r.rep, map[object.ID]HookRecord{}); herr != nil {
			err = errors.Join(err, fmt.Errorf("on-failure hooks: %w", herr))
		}
	}
	return err
}

// stageConfig applies CRDs, Namespaces, cluster objects and config.
func stageConfig(ctx context.Context, r *run) error {
	if err := r.createNamespace(ctx); err != nil {
		return err
	}
	return r.applyStages(ctx, r.config)
}

// stageScaleDown scales a recreate's changing workloads to zero and waits
// until their Pods are gone.
func stageScaleDown(ctx context.Context, r *run) error { return r.m.scaleDown(ctx, r.p, r.rep) }

// stagePreApplyHooks runs the pre-apply hooks (migrations) by weight.
func stagePreApplyHooks(ctx context.Context, r *run) error {
	return r.m.runHooks(ctx, r.p, PreApply, r.rep, r.hooksDone)
}

// stageWorkloads applies the workloads and everything else, wave by wave
// (see Change.wave), then gives the workloads a recreate scaled down
// their replicas back. Between two waves it waits until the objects of
// the first are ready, as Argo CD does between sync waves, whether or not
// the app waits at the end.
func stageWorkloads(ctx context.Context, r *run) error {
	waves := byWave(r.workloads)
	for i, w := range waves {
		if err := r.applyStages(ctx, w.stages); err != nil {
			return err
		}
		if err := r.restoreScaled(ctx, w.ids()); err != nil {
			return err
		}
		if i == len(waves)-1 {
			break
		}
		if err := r.waitReady(ctx, waitable(slices.Concat(w.stages...)), nil); err != nil {
			// As a failed rollout: the app's rollback, if any, applies.
			r.rolloutFailed = ctx.Err() == nil
			return fmt.Errorf("sync wave %d: %w", w.wave, err)
		}
	}
	// The new version is applied: what was scaled down and is no
	// workload of it any more has nothing to get back.
	r.scaled = nil
	return nil
}

// wave is the objects of one sync wave, grouped by stage in apply order.
type wave struct {
	wave   int
	stages [][]*Change
}

// ids returns the objects of the wave.
func (w wave) ids() map[object.ID]bool {
	out := map[object.ID]bool{}
	for _, s := range w.stages {
		for _, c := range s {
			out[c.ID] = true
		}
	}
	return out
}

// byWave splits stages by the objects' waves, lowest first; one wave when
// no object names one.
func byWave(stages [][]*Change) []wave {
	var waves []wave
	for _, s := range stages {
		byW := map[int][]*Change{}
		for _, c := range s {
			byW[c.wave] = append(byW[c.wave], c)
		}
		for n, cs := range byW {
			i := slices.IndexFunc(waves, func(w wave) bool { return w.wave == n })
			if i < 0 {
				waves = append(waves, wave{wave: n})
				i = len(waves) - 1
			}
			waves[i].stages = append(waves[i].stages, cs)
		}
	}
	slices.SortFunc(waves, func(a, b wave) int { return a.wave - b.wave })
	if len(waves) == 0 {
		waves = []wave{{}}
	}
	return waves
}

// waitReady waits until objs are ready (kstatus, or the app's health
// checks), reporting each verdict to onVerdict. Objects the run saw
// settled, of kinds no health check judges, are not waited for. The
// resourceVersions the run recorded (the applies' answers, the plan's
// lists for objects left alone) tell the wait which cached versions are
// older than the run's writes, so it needs no list of its own.
func (r *run) waitReady(ctx context.Context, objs []*object.Object, onVerdict func(object.ID, health.Verdict)) error {
	floors := make(map[object.ID]string, len(objs))
	watched := make([]*object.Object, 0, len(objs))
	r.mu.Lock()
	for _, o := range objs {
		if _, ruled := r.m.opts.Health.Check(o.GroupVersionKind()); r.settled[o.ID()] && !ruled {
			continue
		}
		watched = append(watched, o)
		if e, ok := r.entries[o.ID()]; ok && e.ResourceVersion != "" {
			floors[o.ID()] = e.ResourceVersion
		}
	}
	r.mu.Unlock()
	if len(watched) == 0 {
		return nil
	}
	return r.m.waitFor(ctx, watched, floors, r.m.opts.Timeout, false, onVerdict)
}

// restoreScaled gives the workloads among ids that a recreate scaled down
// their replicas back, once the new version is applied.
func (r *run) restoreScaled(ctx context.Context, ids map[object.ID]bool) error {
	if len(r.scaled) == 0 {
		return nil
	}
	// Workloads whose desired object sets no replica count (or an
	// autoscaler's: see leaveReplicas) get the old count back, and so do
	// those stopped for a migration only, which the apply did not send.
	var left []Scaled
	for _, s := range r.scaled {
		if !ids[s.ID] {
			left = append(left, s)
			continue
		}
		c := r.byID[s.ID]
		if c == nil || (!replicasLeft(c) && c.Type != ChangeUnchanged) {
			continue
		}
		if err := r.m.scale(ctx, c, s.Replicas); err != nil {
			return fmt.Errorf("%s: restore %d replicas: %w", s.ID, s.Replicas, err)
		}
		if c.Type == ChangeUnchanged {
			// Its inventory entry is of before the scale-down.
			if live, gerr := r.m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{}); gerr == nil {
				c.Live = live
				r.record(c, Result{ID: c.ID, Origin: c.Origin, Action: Restored}, nil)
			}
		}
	}
	r.scaled = left
	return nil
}

// waitSize is the size of the wait: every object applied, when the plan
// waits or post-apply hooks run (smoke tests are meant for the new
// version: they wait for it).
func (r *run) waitSize() int {
	if !r.p.opts.Wait && !r.p.runs(PostApply) && len(r.p.waitFor) == 0 {
		return -1
	}
	return len(r.waited())
}

// waited are the objects the wait stage waits for: the objects applied,
// when the run waits or post-apply hooks run, and PlanOptions.WaitFor.
func (r *run) waited() []*object.Object {
	var objs []*object.Object
	if r.p.opts.Wait || r.p.runs(PostApply) {
		objs = r.p.desiredObjects()
	}
	return append(objs, r.p.waitFor...)
}

// stageWait waits until the objects applied, and those of
// PlanOptions.WaitFor, are ready (waitReady), and reports the health
// checks' verdicts.
func stageWait(ctx context.Context, r *run) error {
	objs := r.waited()
	verdicts := map[object.ID]health.Verdict{}
	err := r.waitReady(ctx, objs, func(id object.ID, v health.Verdict) { verdicts[id] = v })
	for _, o := range objs {
		if v, ok := verdicts[o.ID()]; ok {
			r.rep.Health = append(r.rep.Health, HealthResult{ID: o.ID(), Status: v.Status, Field: v.Field, Expr: v.Expr, Message: r.m.opts.Redact(v.Message)})
		}
	}
	// A wait cut short by a stop is no failed rollout: the new version
	// keeps rolling out and the next run waits for it.
	r.rolloutFailed = err != nil && ctx.Err() == nil
	return err
}

// stagePostApplyHooks runs the post-apply hooks (smoke tests) by weight.
func stagePostApplyHooks(ctx context.Context, r *run) error {
	return r.m.runHooks(ctx, r.p, PostApply, r.rep, r.hooksDone)
}

// stagePrune deletes what left git, and the runs of hooks that did.
func stagePrune(ctx context.Context, r *run) error {
	var errs []error
	var terminating []*Change
	for _, c := range r.p.Changes {
		if c.Type != ChangeDelete {
			continue
		}
		res := r.m.prune(ctx, c, r.p.App, r.p.ownerEnv())
		r.rep.Results = append(r.rep.Results, res)
		if res.Action == Failed {
			errs = append(errs, fmt.Errorf("%s: prune: %s", res.ID, res.Error))
			continue
		}
		if res.Action == Deleted && r.p.removalPolicy() == DeletionWaitForTermination {
			terminating = append(terminating, c)
			continue
		}
		delete(r.entries, c.ID)
	}
	errs = append(errs, r.waitTermination(ctx, terminating))
	errs = append(errs, r.m.pruneHooks(ctx, r.p, r.rep, r.hooksDone))
	return errors.Join(errs...)
}

// waitTermination waits, for a removal under WaitForTermination, until
// each object it deleted is gone (its finalizers ran), all at once within
// one timeout. An object not gone in time stays in the inventory, so the
// next removal waits for it again.
func (r *run) waitTermination(ctx context.Context, cs []*Change) error {
	if len(cs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.m.opts.Timeout)
	defer cancel()
	waitErrs := make([]error, len(cs))
	r.m.forEach(ctx, len(cs), func(i int) {
		waitErrs[i] = r.m.waitGone(ctx, cs[i], r.m.opts.PollInterval)
	})
	var errs []error
	for i, c := range cs {
		if waitErrs[i] != nil {
			errs = append(errs, fmt.Errorf("%s: wait for termination (deletionPolicy %s): %w", c.ID, DeletionWaitForTermination, waitErrs[i]))
			continue
		}
		delete(r.entries, c.ID)
	}
	return errors.Join(errs...)
}

// record notes the result of one object written (or found unchanged) in
// the report and its inventory entry.
func (r *run) record(c *Change, res Result, live metav1.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Results = append(r.rep.Results, res)
	if res.Action == Failed {
		return
	}
	e := Entry{ID: c.ID, Version: c.version, Digest: c.digest}
	old, hadOld := r.entries[c.ID]
	if c.Desired != nil {
		e.Secrets = secretPointers(c.Desired, r.m.opts.Redact)
		r.placed[c.ID] = true
	} else if hadOld {
		e.Secrets = old.Secrets
	}
	if settled(c, live) {
		if r.settled == nil {
			r.settled = map[object.ID]bool{}
		}
		r.settled[c.ID] = true
	}
	if live != nil {
		e.ResourceVersion, e.Generation = live.GetResourceVersion(), live.GetGeneration()
	} else if c.Live != nil {
		// Unchanged per a dry run: the live object is what deliver
		// would apply, also after a change in the cluster that the
		// apply does not revert (a scale of replicas that are not
		// deliver's); recording it ends that change's drift.
		e.ResourceVersion, e.Generation = c.Live.GetResourceVersion(), c.Live.GetGeneration()
	} else if hadOld && old.Digest == c.digest {
		e.ResourceVersion, e.Generation = old.ResourceVersion, old.Generation
	} else {
		e.Digest = "" // verify with a dry run next time
	}
	if c.policy != ApplyAlways {
		// An object its apply policy leaves alone once it exists: no
		// version recorded, so no change to it is drift (the reconciler's
		// tracker skips entries without one), and the next plan decides
		// by the policy again.
		e.ResourceVersion, e.Generation, e.Policy = "", 0, c.policy.String()
		r.entries[c.ID] = e
		return
	}
	if tracksSpec(c) {
		if len(c.ignore) > 0 {
			e.Ignore = ignoredPointers(c)
		}
		if u, ok := live.(*unstructured.Unstructured); ok {
			e.Spec = EntryDigest(e, u)
		} else if c.Live != nil {
			e.Spec = EntryDigest(e, c.Live)
		} else if hadOld && old.Digest == c.digest {
			e.Spec = old.Spec
		}
	}
	r.entries[c.ID] = e
}

// tracksSpec reports whether the inventory entry of c records Spec: the
// object leaves fields to others, whose changes are then no drift.
func tracksSpec(c *Change) bool { return replicasLeft(c) || len(c.ignore) > 0 }

// applyStages applies the kinds' stages in order, each object of a stage
// at once (up to Options.Concurrency), and waits after a stage that
// created CRDs until their kinds are served.
func (r *run) applyStages(ctx context.Context, stages [][]*Change) error {
	m := r.m
	for _, stage := range stages {
		if err := interrupted(ctx); err != nil {
			return err
		}
		var (
			mu   sync.Mutex
			errs []error
		)
		m.forEach(ctx, len(stage), func(i int) {
			c := stage[i]
			if c.Type == ChangeUnchanged {
				r.record(c, Result{ID: c.ID, Origin: c.Origin, Action: Unchanged}, nil)
				return
			}
			res, live := m.applyChange(ctx, c)
			if res.Action == Created && tracksSpec(c) {
				// Only the metadata came back; the inventory's Spec
				// needs the spec.
				if u, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{}); err == nil {
					live = u
				}
			}
			r.record(c, res, live)
			if res.Action == Failed {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: apply: %s", res.ID, res.Error))
				mu.Unlock()
			}
		})
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		var crds []*object.Object
		for _, c := range stage {
			if c.ID.GroupKind().String() == "CustomResourceDefinition.apiextensions.k8s.io" && c.Type != ChangeUnchanged {
				crds = append(crds, &object.Object{Unstructured: c.Desired})
			}
		}
		if len(crds) > 0 {
			// Objects of the new kinds follow in later stages (and in
			// other apps of the session): wait until the CRDs are served,
			// then forget cached discovery.
			if err := m.Wait(ctx, crds); err != nil {
				return err
			}
			if err := m.waitServed(ctx, crds); err != nil {
				return err
			}
		}
	}
	return nil
}

// secretPlaces reports whether every entry's Secrets are recorded: the
// inventory read had them all, or this run recorded each entry it keeps.
// Called with no stage running.
func (r *run) secretPlaces() bool {
	if r.p.inventory.SecretPlaces {
		return true
	}
	for id := range r.entries {
		if !r.placed[id] {
			return false
		}
	}
	return true
}
