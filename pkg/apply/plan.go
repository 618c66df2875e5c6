package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// ChangeType is what a plan will do to one object.
type ChangeType string

// The closed set of change types.
const (
	ChangeCreate    ChangeType = "create"
	ChangeUpdate    ChangeType = "update"
	ChangeDelete    ChangeType = "delete"
	ChangeUnchanged ChangeType = "unchanged"
)

// Change is the planned change of one object.
type Change struct {
	ID     object.ID     `json:"id"`
	Origin object.Origin `json:"origin"`
	Type   ChangeType    `json:"type"`
	// Note explains an unusual plan, such as an object whose CRD is created
	// in the same run and so could not be dry-run.
	Note string `json:"note,omitempty"`
	// Desired is the object as deliver sends it: namespace defaulted and the
	// ownership label set. Nil for deletes.
	Desired *unstructured.Unstructured `json:"-"`
	// Live is the object in the cluster; nil for creates, and for objects
	// the fast path found unchanged without reading them.
	Live *unstructured.Unstructured `json:"-"`
	// Merged is the server's dry-run result: Live after the apply.
	Merged *unstructured.Unstructured `json:"-"`
	// AdoptedFrom is the app the live object belongs to, when the object
	// in git asks to take it over (AnnotationAdopt).
	AdoptedFrom string `json:"adoptedFrom,omitempty"`
	// Recreate is set on an update that changes an immutable field: the
	// object will be deleted and re-created (see dryRun).
	Recreate bool `json:"recreate,omitempty"`

	stage   Stage
	gvr     schema.GroupVersionResource
	version string
	digest  string
	body    []byte // Desired as JSON, as digested; nil once Desired changes
	// ignore are the fields of the object left to others (ignoreFields);
	// rendered is the object with them, for a delete and re-create, which
	// starts the object anew and so complete. Nil when nothing is ignored.
	ignore   []object.Pointer
	rendered *unstructured.Unstructured
	// handover are the live values of ignored fields handed over before
	// the apply (see keepIgnored); nil for most changes.
	handover []keptField
	// toRecreate says the apply turns a Deployment whose live strategy
	// has rollingUpdate settings into a Recreate one (see
	// switchToRecreate).
	toRecreate bool
	// leftSecrets are the places of secret values when deliver last
	// applied the object (Entry.Secrets), masked in the diff where git no
	// longer has the live value (maskLeftSecrets).
	leftSecrets []string
	// unknownSecrets says the inventory lists the object but not the
	// places of its secrets (Inventory.SecretPlaces): the diff masks
	// every live value git does not hold now (maskUnknownSecrets).
	unknownSecrets bool
	// listed says the plan found the object in the cluster, not being
	// deleted (see settled).
	listed bool
	// policy is the object's apply policy (AnnotationApplyPolicy).
	policy ApplyPolicy
	// wave is the object's sync wave (AnnotationWave, or Argo CD's
	// sync-wave on an object that is no hook): the workloads stage
	// applies lower waves first and waits until they are ready before
	// the next. Default 0.
	wave int
}

// Plan is the difference between the desired set and the cluster.
type Plan struct {
	// App and Revision are copied from the PlanOptions.
	App      string `json:"app"`
	Revision string `json:"revision,omitempty"`
	// Changes are in apply order, deletes last in reverse apply order.
	Changes []*Change `json:"changes"`
	// DryRuns counts the dry-run requests the plan needed; the fast path
	// keeps it near the number of objects that really changed.
	DryRuns int `json:"dryRuns"`
	// Hooks are the app's hooks in run order, each saying whether it runs.
	Hooks []*HookRun `json:"hooks,omitempty"`
	// ScaleDown lists the workloads a recreate stops before the pre-apply
	// hooks run.
	ScaleDown []object.ID `json:"scaleDown,omitempty"`
	// Rollback lists the workloads put back to the last successful run's
	// objects if their rollout fails (PlanOptions.RollbackOnFailure).
	Rollback []object.ID `json:"rollback,omitempty"`
	// Conflicts are objects in git that another app owns in the cluster
	// (see ownership.go); Execute refuses a plan that has any.
	Conflicts []OtherApp `json:"conflicts,omitempty"`
	// Kept are objects that left git and that another app owns now: not
	// deleted, and dropped from the inventory.
	Kept []OtherApp `json:"kept,omitempty"`
	// Orphaned are the objects a removal (PlanRemove, Remove) leaves in
	// the cluster because its deletion policy (the caller's, else the
	// inventory's) is DeletionOrphan; none in any other plan.
	Orphaned []object.ID `json:"orphaned,omitempty"`
	// CreateNamespace is the namespace the run creates first, as it is
	// missing (PlanOptions.CreateNamespace); "" when none.
	CreateNamespace string `json:"createNamespace,omitempty"`
	// WaitFor are the objects outside the app the run waits for
	// (PlanOptions.WaitFor).
	WaitFor []object.ID `json:"waitFor,omitempty"`
	// waitFor are those objects, their namespaces as the cluster scopes
	// them.
	waitFor []*object.Object
	// IdentityConflict is set when the app's inventory records another
	// identity than PlanOptions.Identity (see identity.go): Execute
	// refuses the plan.
	IdentityConflict *IdentityConflict `json:"identityConflict,omitempty"`
	// AdoptedIdentity is set when it does, but the inventory is annotated
	// with AnnotationAdopt: the run takes the app over.
	AdoptedIdentity *IdentityConflict `json:"adoptedIdentity,omitempty"`
	// HealthChecks are the objects created or changed whose readiness a
	// health check (Options.Health) decides, when the run waits.
	HealthChecks []HealthCheckNote `json:"healthChecks,omitempty"`

	inventory          *Inventory
	inventoryNamespace string
	redact             func(string) string
	opts               PlanOptions
}

// HealthCheckNote is an object the wait judges by a health check, and
// the rule's expressions.
type HealthCheckNote struct {
	ID    object.ID    `json:"id"`
	Check health.Check `json:"check"`
}

// PlanOptions configure one plan.
type PlanOptions struct {
	// App names the app; objects get LabelApp with it, and the inventory is
	// kept per app. Required.
	App string
	// Revision is the git commit recorded in the inventory.
	Revision string
	// FullDryRun dry-runs every object instead of trusting the inventory
	// for objects that did not change since deliver applied them.
	FullDryRun bool
	// Strategy is rolling (default) or recreate; a workload's
	// AnnotationStrategy overrides it.
	Strategy Strategy
	// Wait waits for the applied objects to be ready before Execute
	// returns. Post-apply hooks wait for them in any case.
	Wait bool
	// RollbackOnFailure, when the rollout does not complete (Wait fails),
	// re-applies the changed Deployments, StatefulSets and DaemonSets as
	// the last successful run left them, kept in the inventory, and waits
	// for them. The run still fails. It needs Wait.
	RollbackOnFailure bool
	// NoPrune keeps objects that left git in the cluster (and in the
	// inventory, so a later run with prune on still deletes them).
	NoPrune bool
	// DeletionPolicy is what removing the app later does with its
	// objects (Remove), recorded in the inventory by Execute. Default:
	// what the inventory recorded, else DeletionDelete. Given to Remove
	// or PlanRemove, it replaces the recorded one for that removal.
	DeletionPolicy DeletionPolicy
	// removal says the plan removes the whole app (Remove, PlanRemove):
	// objects annotated with Argo CD's Delete=false stay.
	removal bool
	// UnlessDelivered makes Apply, once it holds the app's lock, return
	// ErrDelivered without planning or writing when the inventory records
	// a successful run of Revision. The reconciler's shards set it for a
	// new revision: an app that moved between replicas while the old one
	// was delivering it is then delivered once, however the two replicas'
	// views of the membership overlapped, because the lock orders them.
	UnlessDelivered bool
	// Identity says who delivers the app, recorded in its inventory. A
	// plan whose app's inventory records another identity has an
	// IdentityConflict, which Execute refuses (see identity.go). Nil: not
	// checked, and the recorded identity is kept.
	Identity *Identity
	// Ignore are the app's ignore rules (see IgnoreRule); objects add
	// theirs with AnnotationIgnoreFields. Default: none but the built-in
	// ones (an autoscaler's replicas, an injected caBundle).
	Ignore []IgnoreRule
	// Inputs, when set, is recorded in the inventory by a successful run
	// (see Inventory.Inputs and PlanUnchanged). Default: none, and the
	// next run renders.
	Inputs *Inputs
	// CreateNamespace is the app's namespace, to create when it is
	// missing and git does not hold it (see createnamespace.go). Default
	// "": a missing namespace fails the objects in it.
	CreateNamespace string
	// WaitFor are objects outside the app whose readiness the run waits
	// for after applying, even without Wait (see waitfor.go): only their
	// apiVersion, kind, name and namespace are read. Default: none.
	WaitFor []*object.Object
}

// Count returns how many changes have type t.
func (p *Plan) Count(t ChangeType) int {
	n := 0
	for _, c := range p.Changes {
		if c.Type == t {
			n++
		}
	}
	return n
}

// HasChanges reports whether applying the plan would change the cluster.
func (p *Plan) HasChanges() bool {
	return p.Count(ChangeUnchanged) != len(p.Changes) || p.CreateNamespace != ""
}

// Summary formats the counts as one line.
func (p *Plan) Summary() string {
	return fmt.Sprintf("%d to create, %d to change, %d to delete, %d unchanged",
		p.Count(ChangeCreate), p.Count(ChangeUpdate), p.Count(ChangeDelete), p.Count(ChangeUnchanged))
}

// Plan compares the desired objects with the cluster. It reads the app's
// inventory and lists the metadata of the kinds involved (one request per
// kind and namespace); only objects that are new to the inventory, changed
// in git or changed in the cluster since deliver applied them are dry-run.
// Hooks in set are not planned here.
func (m *Manager) Plan(ctx context.Context, set *object.Set, opts PlanOptions) (*Plan, error) {
	return m.plan(ctx, set, opts, nil, nil)
}

// plan is Plan; lock is the app's lock when the caller holds it, read the
// inventory when the caller read it under that lock (see planInventory).
func (m *Manager) plan(ctx context.Context, set *object.Set, opts PlanOptions, lock *appLock, read *lockedInventory) (*Plan, error) {
	if opts.App == "" {
		return nil, errors.New("plan: app name is required")
	}
	if m.err != nil {
		return nil, fmt.Errorf("plan: %w", m.err)
	}
	if _, err := ParseStrategy(string(opts.Strategy)); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if opts.RollbackOnFailure && !opts.Wait {
		return nil, errors.New("plan: rollback on failure needs wait: a rollout that is not waited for cannot fail")
	}
	inv, listed, since, err := m.planInventory(ctx, opts.App, lock, read)
	if err != nil {
		return nil, err
	}
	p := &Plan{App: opts.App, Revision: opts.Revision, inventory: inv, inventoryNamespace: m.opts.InventoryNamespace, redact: m.opts.Redact, opts: opts}
	p.checkIdentity(inv, opts.Identity)
	pendingCRDs := crdKinds(set.Objects)
	// Preparing the objects (copy, labels, digest) is CPU work: on every
	// core, with one RESTMapper lookup per kind instead of per object.
	mappings := &gvrCache{m: m}
	prepared := make([]*Change, len(set.Objects))
	prepErrs := make([]error, len(set.Objects))
	parallel(len(set.Objects), func(i int) {
		prepared[i], prepErrs[i] = m.desiredWith(set.Objects[i], opts, pendingCRDs, mappings.gvrFor)
	})
	var errs []error
	for i, c := range prepared {
		if prepErrs[i] != nil {
			errs = append(errs, prepErrs[i])
			continue
		}
		p.Changes = append(p.Changes, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	desired := map[object.ID]bool{}
	for _, c := range p.Changes {
		desired[c.ID] = true
	}
	var deletes []*Change
	for _, e := range inv.Entries {
		if desired[e.ID] {
			continue
		}
		gvr, namespaced, err := mappings.gvrFor(e.GroupKind(), e.Version)
		if err != nil {
			continue // the kind is gone from the cluster, so are its objects
		}
		if !namespaced {
			e.Namespace = ""
		}
		deletes = append(deletes, &Change{ID: e.ID, Type: ChangeDelete, stage: StageOf(e.ID), gvr: gvr, version: e.Version, leftSecrets: e.Secrets, unknownSecrets: !inv.SecretPlaces})
	}

	// The autoscalers, whose targets' replicas deliver leaves alone, are
	// looked up while the objects are listed.
	var (
		scalers   map[object.ID]object.ID
		scalerErr error
		scalersWG sync.WaitGroup
	)
	scalersWG.Go(func() { scalers, scalerErr = m.autoscalers(ctx, p.Changes, opts.App, since) })
	live, full, err := m.listLive(ctx, append(append([]*Change(nil), p.Changes...), deletes...), opts.FullDryRun, listed, since)
	scalersWG.Wait()
	if err == nil && scalerErr == nil {
		scalerErr = leaveReplicas(p.Changes, scalers)
	}
	if err = errors.Join(err, scalerErr); err != nil {
		return nil, err
	}
	if err := m.ignoreFields(ctx, p.Changes, opts.Ignore, live); err != nil {
		return nil, err
	}
	p.checkOwnership(live)
	entries := inv.index()
	for _, c := range p.Changes {
		e, listed := entries[c.ID]
		c.leftSecrets, c.unknownSecrets = e.Secrets, listed && !inv.SecretPlaces
	}
	// Namespaces this run creates: their objects cannot be dry-run yet.
	newNamespaces := map[string]bool{}
	for _, c := range p.Changes {
		if c.ID.Group == "" && c.ID.Kind == "Namespace" {
			if _, exists := live[c.ID]; !exists {
				newNamespaces[c.ID.Name] = true
			}
		}
	}
	if err := m.planNamespace(ctx, p, opts.CreateNamespace, newNamespaces); err != nil {
		return nil, err
	}
	if err := m.planWaitFor(p, opts.WaitFor, mappings); err != nil {
		return nil, err
	}
	// New objects of an app that runs are validated before the first
	// write; a first revision is not: nothing of the app runs that a
	// half-applied run could break, and the inventory, written before the
	// first write, covers whatever a failed run created.
	//
	// An app that impersonates a ServiceAccount is validated also in its
	// first revision: the dry run is where a missing permission shows,
	// before anything of the app is written.
	validateNew := !m.opts.NoCreateDryRun && (!firstRevision(inv) || m.impersonated() != "")
	var mu sync.Mutex
	m.forEach(ctx, len(p.Changes), func(i int) {
		c := p.Changes[i]
		lm, exists := live[c.ID]
		c.listed = exists && lm.DeletionTimestamp == nil
		if exists && reconcileDisabled(lm.GetAnnotations()) {
			c.policy = ApplyPaused
		}
		if c.policy == ApplyNever || c.policy == ApplyPaused || (c.policy == ApplyIfNotPresent && exists) {
			// Left as it is (and not tracked for drift: see record).
			c.Type, c.Note = ChangeUnchanged, policyNote(c.policy)
			return
		}
		if c.Type == ChangeCreate { // kind not served yet
			return
		}
		if !exists {
			c.Type = ChangeCreate
			if !validateNew {
				return
			}
			// Validate the new object with the server before anything is
			// written, so a rejected object fails the plan, not the middle
			// of a stage with its siblings already created.
			err := m.dryRunCreate(ctx, c, newNamespaces)
			mu.Lock()
			defer mu.Unlock()
			p.DryRuns++
			if err != nil {
				errs = append(errs, &ObjectError{ID: c.ID, Origin: c.Origin, Step: "dry-run", Err: err})
			}
			return
		}
		if e, ok := entries[c.ID]; ok && !opts.FullDryRun && unchangedSince(e, c, lm) {
			c.Type = ChangeUnchanged
			return
		}
		if c.Live == nil { // read already for the caBundle rule (ignoreFields)
			c.Live = full[c.ID] // listed whole for a full dry run: no GET per object
		}
		err := m.dryRun(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		p.DryRuns++
		if err != nil {
			errs = append(errs, &ObjectError{ID: c.ID, Origin: c.Origin, Step: "dry-run", Err: err})
		}
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, d := range deletes {
		lm, exists := live[d.ID]
		if owner, env := otherOwner(lm, opts.App, p.ownerEnv()); exists && owner != "" {
			p.Kept = append(p.Kept, OtherApp{ID: d.ID, App: owner, Env: env})
			continue
		}
		if opts.NoPrune || !exists || lm.GetLabels()[LabelApp] != opts.App || pruneDisabled(lm.GetAnnotations()) {
			continue
		}
		if opts.removal && argoSyncOption(lm.GetAnnotations(), "Delete=false") {
			continue // Argo CD keeps it when its Application is deleted
		}
		if p.removalPolicy() == DeletionOrphan {
			p.Orphaned = append(p.Orphaned, d.ID)
			continue
		}
		p.Changes = append(p.Changes, d)
	}
	// Read what will be deleted, so the diff can show it; deletes are rare.
	m.forEach(ctx, len(p.Changes), func(i int) {
		if c := p.Changes[i]; c.Type == ChangeDelete {
			c.Live, _ = m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
		}
	})
	sortChanges(p.Changes)
	if err := m.planHooks(p, set, opts); err != nil {
		return nil, err
	}
	p.ScaleDown = scaleDownPlan(p)
	if opts.RollbackOnFailure {
		p.Rollback = rollbackPlan(p, m.opts.Health)
	}
	if opts.Wait || p.runs(PostApply) {
		p.HealthChecks = healthPlan(p, m.opts.Health)
	}
	return p, nil
}

// policyNote says why the plan leaves an object of git alone.
func policyNote(p ApplyPolicy) string {
	switch p {
	case ApplyNever:
		return AnnotationApplyPolicy + ": " + p.String() + ": not applied"
	case ApplyPaused:
		return AnnotationReconcile + ": disabled: left as it is"
	}
	return AnnotationApplyPolicy + ": " + p.String() + ": exists, left as it is"
}

// healthPlan lists the objects the plan creates or changes whose
// readiness a rule of rules decides.
func healthPlan(p *Plan, rules *health.Rules) []HealthCheckNote {
	var out []HealthCheckNote
	for _, c := range p.Changes {
		if c.Type != ChangeCreate && c.Type != ChangeUpdate {
			continue
		}
		if chk, ok := rules.Check(c.Desired.GroupVersionKind()); ok {
			out = append(out, HealthCheckNote{ID: c.ID, Check: chk})
		}
	}
	return out
}

// firstRevision reports whether no version of the app can be running: no
// run of it succeeded and no object of it was ever applied (no inventory
// yet, or a first run that failed or was stopped before its first write).
// A first run that failed after creating some objects does not count: the
// inventory cannot tell it from a later run that failed, so its objects are
// treated as running.
func firstRevision(inv *Inventory) bool {
	if inv.Result == ResultSucceeded || len(inv.Workloads) > 0 {
		return false
	}
	for _, e := range inv.Entries {
		if e.Digest != "" { // applied by deliver once
			return false
		}
	}
	return true
}

// desired prepares the object deliver will send and its change.
func (m *Manager) desired(o *object.Object, opts PlanOptions, pendingCRDs map[schema.GroupKind]bool) (*Change, error) {
	return m.desiredWith(o, opts, pendingCRDs, m.gvrFor)
}

// desiredWith is desired with the kind resolved by gvrFor.
func (m *Manager) desiredWith(o *object.Object, opts PlanOptions, pendingCRDs map[schema.GroupKind]bool, gvrFor func(schema.GroupKind, string) (schema.GroupVersionResource, bool, error)) (*Change, error) {
	u := o.DeepCopy()
	u.SetManagedFields(nil)
	u.SetResourceVersion("")
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelApp] = opts.App
	if env := opts.env(); env != "" {
		labels[LabelEnv] = env
	}
	u.SetLabels(labels)
	gvk := u.GroupVersionKind()
	c := &Change{Origin: o.Origin, Desired: u, version: gvk.Version}
	if err := checkStrategy(u); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", object.IDOf(u), o.Origin, err)
	}
	policy, err := applyPolicyOf(u.GetAnnotations())
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", object.IDOf(u), o.Origin, err)
	}
	c.policy = policy
	if c.wave, err = waveOf(u.GetAnnotations()); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", object.IDOf(u), o.Origin, err)
	}
	if strategyOf(u, opts.Strategy) == Recreate && gvk.GroupKind().String() == "Deployment.apps" {
		// Old and new Pods never run side by side in a recreate.
		_ = unstructured.SetNestedMap(u.Object, map[string]any{"type": "Recreate"}, "spec", "strategy")
	}
	gvr, namespaced, err := gvrFor(gvk.GroupKind(), gvk.Version)
	switch {
	case err != nil && meta.IsNoMatchError(err) && pendingCRDs[gvk.GroupKind()]:
		// Cannot be dry-run before its CRD exists; scope is unknown too, so
		// a missing namespace is filled in at apply time.
		c.Type = ChangeCreate
		c.Note = "its CustomResourceDefinition is created in the same run; not dry-run"
	case err != nil && meta.IsNoMatchError(err):
		return nil, fmt.Errorf("%s (%s): unknown kind %s in %s: is its CRD installed?", object.IDOf(u), o.Origin, gvk.Kind, gvk.GroupVersion())
	case err != nil:
		return nil, fmt.Errorf("%s (%s): %w", object.IDOf(u), o.Origin, err)
	case namespaced && u.GetNamespace() == "":
		u.SetNamespace(m.opts.DefaultNamespace)
	case !namespaced:
		u.SetNamespace("")
	}
	c.gvr = gvr
	c.ID = object.IDOf(u)
	c.stage = StageOf(c.ID)
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.ID, err)
	}
	sum := sha256.Sum256(data)
	c.digest = hex.EncodeToString(sum[:])
	c.body = data
	// The resolved identity flows back to the caller (Wait needs it).
	o.SetNamespace(u.GetNamespace())
	return c, nil
}

// gvrFor resolves a kind to its resource and scope.
func (m *Manager) gvrFor(gk schema.GroupKind, version string) (schema.GroupVersionResource, bool, error) {
	mapping, err := m.mapper.RESTMapping(gk, version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return schema.GroupVersionResource{}, false, &meta.NoKindMatchError{GroupKind: gk, SearchedVersions: []string{version}}
		}
		return schema.GroupVersionResource{}, false, err
	}
	return mapping.Resource, mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// gvrCache remembers the RESTMapper's answers for the duration of one
// plan: a thousand objects are of a handful of kinds, and each lookup in
// the RESTMapper walks every group it knows. It is not kept longer, since
// the discovery cache is reset when a run creates CRDs.
type gvrCache struct {
	m       *Manager
	mu      sync.Mutex
	entries map[gvrKey]gvrResult
}

type gvrKey struct {
	gk      schema.GroupKind
	version string
}

type gvrResult struct {
	gvr        schema.GroupVersionResource
	namespaced bool
	err        error
}

func (c *gvrCache) gvrFor(gk schema.GroupKind, version string) (schema.GroupVersionResource, bool, error) {
	k := gvrKey{gk, version}
	c.mu.Lock()
	r, ok := c.entries[k]
	c.mu.Unlock()
	if !ok {
		r.gvr, r.namespaced, r.err = c.m.gvrFor(gk, version)
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[gvrKey]gvrResult{}
		}
		c.entries[k] = r
		c.mu.Unlock()
	}
	return r.gvr, r.namespaced, r.err
}

// parallel calls fn for 0..n-1, GOMAXPROCS calls at once: for CPU work,
// where forEach bounds requests in flight.
func parallel(n int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range n {
		g.Go(func() error {
			fn(i)
			return nil
		})
	}
	_ = g.Wait()
}

func crdKinds(objs []*object.Object) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if o.GroupVersionKind().GroupKind().String() != "CustomResourceDefinition.apiextensions.k8s.io" {
			continue
		}
		g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		out[schema.GroupKind{Group: g, Kind: k}] = true
	}
	return out
}

// unchangedSince decides from metadata alone that an object is as deliver
// left it: the desired object is the one last applied, and the live object
// was not written since, or (for kinds whose status is written by
// controllers) its spec generation did not move and the labels and
// annotations deliver sets still have deliver's values.
func unchangedSince(e Entry, c *Change, lm *metav1.PartialObjectMetadata) bool {
	if e.Digest == "" || e.Digest != c.digest {
		return false
	}
	if lm.ResourceVersion == e.ResourceVersion {
		return true
	}
	if e.Generation == 0 || lm.Generation != e.Generation {
		return false
	}
	for k, v := range c.Desired.GetLabels() {
		if lm.Labels[k] != v {
			return false
		}
	}
	for k, v := range c.Desired.GetAnnotations() {
		if lm.Annotations[k] != v {
			return false
		}
	}
	return true
}

// listLive lists the metadata of every kind and namespace the changes
// touch, one request each, in parallel, and returns it by object ID; what
// was listed ahead (listed) is not listed again, and what the other apps
// of the run listed after since (when the plan's inventory was read) is
// shared (see listAhead): the first apply of a thousand apps in ten
// namespaces lists each kind ten times, not a thousand. With full, it lists
// whole objects instead and returns them too, so that a full dry run needs
// no GET per object.
func (m *Manager) listLive(ctx context.Context, changes []*Change, full bool, listed map[listKey]*metaList, since time.Time) (map[object.ID]*metav1.PartialObjectMetadata, map[object.ID]*unstructured.Unstructured, error) {
	lists := map[listKey]*metaList{}
	var todo []listKey
	for _, c := range changes {
		if c.gvr.Resource == "" {
			continue
		}
		k := listKey{c.gvr, c.ID.Namespace}
		if _, ok := lists[k]; ok {
			continue
		}
		if l, ok := listed[k]; ok && !full {
			lists[k] = l
			continue
		}
		lists[k] = nil
		todo = append(todo, k)
	}
	whole := map[string]*unstructured.Unstructured{} // by listKey's resource, namespace and name
	var (
		mu   sync.Mutex
		errs []error
	)
	m.forEach(ctx, len(todo), func(i int) {
		k := todo[i]
		var (
			l    *metaList
			objs []*unstructured.Unstructured
			err  error
		)
		if full {
			var res *unstructured.UnstructuredList
			if res, err = m.objects.dyn.Resource(k.gvr).Namespace(k.ns).List(ctx, metav1.ListOptions{}); err == nil {
				metas := make([]*metav1.PartialObjectMetadata, 0, len(res.Items))
				for j := range res.Items {
					u := &res.Items[j]
					objs = append(objs, u)
					metas = append(metas, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
						Name: u.GetName(), Namespace: u.GetNamespace(), ResourceVersion: u.GetResourceVersion(),
						Generation: u.GetGeneration(), Labels: u.GetLabels(), Annotations: u.GetAnnotations(),
					}})
				}
				l = newMetaList(metas)
			}
		} else {
			l, err = m.listAhead(ctx, k, since)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if f := m.denied(err, "list", fmt.Sprintf("%s in namespace %q", k.gvr.GroupResource(), k.ns)); f != err {
				errs = append(errs, f)
				return
			}
			errs = append(errs, fmt.Errorf("list %s in namespace %q: %w", k.gvr.GroupResource(), k.ns, err))
			return
		}
		lists[k] = l
		for _, u := range objs {
			whole[k.gvr.String()+"/"+metaKey(u.GetNamespace(), u.GetName())] = u
		}
	})
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	out := map[object.ID]*metav1.PartialObjectMetadata{}
	outFull := map[object.ID]*unstructured.Unstructured{}
	for _, c := range changes {
		if c.gvr.Resource == "" {
			continue
		}
		if lm := lists[listKey{c.gvr, c.ID.Namespace}].get(c.ID.Namespace, c.ID.Name); lm != nil {
			out[c.ID] = lm
		}
		if u, ok := whole[c.gvr.String()+"/"+metaKey(c.ID.Namespace, c.ID.Name)]; ok {
			outFull[c.ID] = u
		}
	}
	return out, outFull, nil
}

// metaList is one list of metadata, indexed by namespace and name: the
// plans of a thousand apps that share a list each look up their few
// objects in it.
type metaList struct {
	items  []*metav1.PartialObjectMetadata
	byName map[string]*metav1.PartialObjectMetadata
}

func newMetaList(items []*metav1.PartialObjectMetadata) *metaList {
	l := &metaList{items: items, byName: make(map[string]*metav1.PartialObjectMetadata, len(items))}
	for _, item := range items {
		l.byName[metaKey(item.Namespace, item.Name)] = item
	}
	return l
}

// get returns the item of that namespace and name; nil when the list
// (which may be nil) has none.
func (l *metaList) get(ns, name string) *metav1.PartialObjectMetadata {
	if l == nil {
		return nil
	}
	return l.byName[metaKey(ns, name)]
}

func metaKey(ns, name string) string { return ns + "/" + name }

// listMeta lists the metadata of one resource in one namespace, without
// the managed fields: no plan reads them, and they are most of an
// object's metadata (a plan of many apps holds thousands of items).
func (m *Manager) listMeta(ctx context.Context, k listKey) (*metaList, error) {
	res, err := m.objects.meta.Resource(k.gvr).Namespace(k.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	items := make([]*metav1.PartialObjectMetadata, len(res.Items))
	for j := range res.Items {
		res.Items[j].ManagedFields = nil
		items[j] = &res.Items[j]
	}
	return newMetaList(items), nil
}
