package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/deliverhq/deliver/pkg/object"
)

// HookRun is the plan for one hook.
type HookRun struct {
	ID     object.ID     `json:"id"`
	Origin object.Origin `json:"origin"`
	Phases []HookPhase   `json:"phases"`
	Weight int           `json:"weight"`
	// Run says whether the hook runs in this apply; Reason says why or why
	// not: first run, spec changed, always, or unchanged since its last
	// successful run.
	Run    bool   `json:"run"`
	Reason string `json:"reason"`

	hook   *Hook
	change *Change // the desired object, resolved like any other
}

// HookRecord is what the inventory remembers of a hook.
type HookRecord struct {
	object.ID
	// Digest covers the hook's spec and the config objects it references.
	Digest string `json:"digest"`
	// Succeeded is when it last completed.
	Succeeded time.Time `json:"succeeded"`
}

// Hook run reasons.
const (
	reasonFirst     = "first run"
	reasonChanged   = "spec or referenced config changed"
	reasonAlways    = "runs on every apply (" + AnnotationHookRun + ": always)"
	reasonUnchanged = "unchanged since its last successful run"
	reasonOnFailure = "runs only when the apply fails"
)

// planHooks parses the set's hooks and decides which run. A hook's digest
// covers its own spec and the ConfigMaps and Secrets of the set it
// references, so a migration re-runs when its credentials change.
func (m *Manager) planHooks(p *Plan, set *object.Set, opts PlanOptions) error {
	config := map[object.ID]string{}
	for _, c := range p.Changes {
		if c.ID.Group == "" && (c.ID.Kind == "ConfigMap" || c.ID.Kind == "Secret") {
			config[c.ID] = c.digest
		}
	}
	last := map[object.ID]HookRecord{}
	for _, r := range p.inventory.Hooks {
		last[r.ID] = r
	}
	first := !p.inventory.delivered()
	var errs []error
	for _, o := range set.Hooks {
		h, ok, err := ParseHook(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		c, err := m.desired(o, opts, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if id := object.HookID(c.Desired); id != c.ID {
			// Named by generateName: the hook is known by its prefix, and
			// its runs by the label that says whose runs they are.
			c.ID = id
			l := c.Desired.GetLabels()
			l[LabelHookID] = hookLabel(id)
			c.Desired.SetLabels(l)
			c.body = nil
		}
		h.Object = &object.Object{Unstructured: c.Desired, Origin: o.Origin}
		digest := hookDigest(c, config)
		c.digest = digest
		hadPhases := len(h.Phases) > 0
		notNow := h.forDelivery(first)
		r := &HookRun{ID: c.ID, Origin: o.Origin, Phases: h.Phases, Weight: h.Weight, hook: h, change: c}
		prev, seen := last[c.ID]
		switch {
		case hadPhases && len(h.Phases) == 0:
			r.Reason = notNow
		case !h.Has(PreApply) && !h.Has(PostApply):
			r.Reason = reasonOnFailure
		case h.Always:
			r.Run, r.Reason = true, reasonAlways
		case !seen:
			r.Run, r.Reason = true, reasonFirst
		case prev.Digest != digest:
			r.Run, r.Reason = true, reasonChanged
		default:
			r.Reason = reasonUnchanged
		}
		p.Hooks = append(p.Hooks, r)
	}
	sort.SliceStable(p.Hooks, func(i, j int) bool {
		if p.Hooks[i].Weight != p.Hooks[j].Weight {
			return p.Hooks[i].Weight < p.Hooks[j].Weight
		}
		return less(p.Hooks[i].ID, p.Hooks[j].ID)
	})
	return errors.Join(errs...)
}

func hookDigest(c *Change, config map[object.ID]string) string {
	h := sha256.New()
	spec := c.Desired.DeepCopy()
	ann := spec.GetAnnotations()
	for k := range ann {
		// Policies say how to run the hook, not what it does.
		if strings.HasSuffix(k, "hook-delete-policy") || k == AnnotationHookRun || k == AnnotationHookTimeout {
			delete(ann, k)
		}
	}
	spec.SetAnnotations(ann)
	data, _ := json.Marshal(spec.Object)
	h.Write(data)
	var refs []string
	for _, name := range referencedConfig(spec.Object) {
		for _, kind := range []string{"ConfigMap", "Secret"} {
			id := object.ID{Kind: kind, Namespace: c.ID.Namespace, Name: name}
			if d, ok := config[id]; ok {
				refs = append(refs, id.String()+"="+d)
			}
		}
	}
	sort.Strings(refs)
	h.Write([]byte(strings.Join(refs, "\n")))
	return hex.EncodeToString(h.Sum(nil))
}

// referencedConfig finds the names of ConfigMaps and Secrets a pod spec
// refers to: envFrom, env valueFrom, volumes and projected sources.
func referencedConfig(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				switch k {
				case "configMapRef", "configMapKeyRef", "secretRef", "secretKeyRef", "configMap":
					if m, ok := child.(map[string]any); ok {
						if n, ok := m["name"].(string); ok {
							out = append(out, n)
						}
					}
				case "secret":
					if m, ok := child.(map[string]any); ok {
						if n, ok := m["secretName"].(string); ok {
							out = append(out, n)
						}
						if n, ok := m["name"].(string); ok { // projected volume source
							out = append(out, n)
						}
					}
				}
				walk(child)
			}
		case []any:
			for _, child := range t {
				walk(child)
			}
		}
	}
	walk(v)
	return out
}

// runHooks runs the hooks of phase that the plan marks to run (all of
// them for OnFailure), weight group by weight group, in parallel inside a
// group. It stops at the first failed group.
func (m *Manager) runHooks(ctx context.Context, p *Plan, phase HookPhase, rep *Report, done map[object.ID]HookRecord) error {
	hooks := p.hooksToRun(phase)
	runs := map[object.ID]*HookRun{}
	for _, r := range p.Hooks {
		runs[r.ID] = r
	}
	var mu sync.Mutex
	for _, group := range byWeight(hooks) {
		var errs []error
		m.forEach(ctx, len(group), func(i int) {
			h := group[i]
			r := runs[h.ID()]
			res, err := m.runHook(ctx, h, r.change)
			mu.Lock()
			defer mu.Unlock()
			res.Hook = string(phase)
			rep.Results = append(rep.Results, res)
			if err != nil {
				errs = append(errs, err)
				return
			}
			done[r.ID] = HookRecord{ID: r.ID, Digest: r.change.digest, Succeeded: time.Now().UTC()}
		})
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return nil
}

// runHook replaces the previous run of a hook (Jobs are immutable), starts
// it and waits until it finished. A hook named by generateName is created
// anew (server-side apply cannot create an object without a name) once the
// earlier runs are gone: like a named hook's, the last run stays for
// inspection until the next one, whatever the delete policies say
// (before-hook-creation is what deliver always does), so an app keeps at
// most one run of each hook.
func (m *Manager) runHook(ctx context.Context, h *Hook, c *Change) (Result, error) {
	res := Result{ID: c.ID, Origin: c.Origin, Action: HookRan}
	fail := func(err error) (Result, error) {
		if !strings.HasPrefix(err.Error(), c.ID.String()+":") {
			err = fmt.Errorf("%s: %w", c.ID, err)
		}
		err = fmt.Errorf("hook %w", err)
		res.Action, res.Error = Failed, m.opts.Redact(err.Error())
		return res, errors.New(res.Error)
	}
	if c.gvr.Resource == "" {
		gvr, _, err := m.gvrFor(c.ID.GroupKind(), c.version)
		if err != nil {
			return fail(err)
		}
		c.gvr = gvr
	}
	run, obj := c, h.Object // this run's object
	if _, generated := object.GeneratedPrefix(c.ID); generated {
		if err := m.deleteHookRuns(ctx, c); err != nil {
			return fail(fmt.Errorf("delete previous runs: %w", err))
		}
		created, err := m.client(c).Create(ctx, c.Desired, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
		if err != nil {
			return fail(fmt.Errorf("create: %w", explain(m.denied(err, "create", c.ID.String()), c)))
		}
		id := c.ID
		id.Name = created.GetName()
		run = &Change{ID: id, Origin: c.Origin, gvr: c.gvr}
		u := h.Object.DeepCopy()
		u.SetName(id.Name)
		obj = &object.Object{Unstructured: u, Origin: h.Object.Origin}
	} else {
		if err := m.deleteAndWait(ctx, c); err != nil {
			return fail(fmt.Errorf("delete previous run: %w", err))
		}
		if _, err := m.client(c).Apply(ctx, c.ID.Name, c.Desired, metav1.ApplyOptions{FieldManager: m.opts.FieldManager, Force: true}); err != nil {
			return fail(fmt.Errorf("create: %w", explain(m.denied(err, "apply", c.ID.String()), c)))
		}
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = m.opts.HookTimeout
	}
	err := m.waitFor(ctx, []*object.Object{obj}, nil, timeout, true, nil)
	if err != nil {
		if detail := m.jobDetail(ctx, run.ID); detail != "" {
			err = fmt.Errorf("%w; %s", err, detail)
		}
		if h.deletes(HookFailed) {
			_ = m.deleteAndWait(detach(ctx), run)
		}
		return fail(err)
	}
	if h.deletes(HookSucceeded) {
		if err := m.deleteAndWait(ctx, run); err != nil {
			return fail(fmt.Errorf("delete after success: %w", err))
		}
	}
	return res, nil
}

// hookRuns lists the runs of the hook named by generateName that c
// stands for: the objects carrying the app's label and the hook's
// LabelHookID.
func (m *Manager) hookRuns(ctx context.Context, c *Change, app string) ([]unstructured.Unstructured, error) {
	selector := labels.Set{LabelApp: app, LabelHookID: hookLabel(c.ID)}.AsSelector().String()
	list, err := m.client(c).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list: %w", m.denied(err, "list", fmt.Sprintf("%s in namespace %q", c.gvr.GroupResource(), c.ID.Namespace)))
	}
	return list.Items, nil
}

// deleteHookRuns deletes the earlier runs of the hook named by
// generateName that c stands for, and waits until they are gone, so that
// two runs of a migration never overlap.
func (m *Manager) deleteHookRuns(ctx context.Context, c *Change) error {
	runs, err := m.hookRuns(ctx, c, c.Desired.GetLabels()[LabelApp])
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range runs {
		id := c.ID
		id.Name = u.GetName()
		if err := m.deleteAndWait(ctx, &Change{ID: id, gvr: c.gvr}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// pruneHookRuns deletes the runs kept of a hook named by generateName
// that left git, on the same terms as prune: c stands for the hook (its
// ID is the hook's identity).
func (m *Manager) pruneHookRuns(ctx context.Context, c *Change, app string) ([]Result, error) {
	runs, err := m.hookRuns(ctx, c, app)
	if err != nil {
		return nil, err
	}
	var (
		out  []Result
		errs []error
	)
	for _, u := range runs {
		id := c.ID
		id.Name = u.GetName()
		// Hook runs are found by LabelApp and the hook's label in its
		// namespace; the environment is not checked.
		r := m.prune(ctx, &Change{ID: id, Type: ChangeDelete, gvr: c.gvr}, app, "")
		switch r.Action {
		case Failed:
			errs = append(errs, fmt.Errorf("%s: %s", id, r.Error))
		case Deleted:
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

// jobDetail describes a hook Job's Pods: phase, reason, exit code and the
// tail of a failed Pod's log when the cluster can give it.
// A hook that is a bare Pod is described the same way.
func (m *Manager) jobDetail(ctx context.Context, id object.ID) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var items []corev1.Pod
	switch id.GroupKind().String() {
	case "Job.batch":
		pods, err := m.objects.kube.CoreV1().Pods(id.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + id.Name})
		if err != nil {
			return ""
		}
		items = pods.Items
	case "Pod":
		pod, err := m.objects.kube.CoreV1().Pods(id.Namespace).Get(ctx, id.Name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		items = []corev1.Pod{*pod}
	}
	var parts []string
	for _, pod := range items {
		s := fmt.Sprintf("Pod %s: %s", pod.Name, pod.Status.Phase)
		if pod.Status.Reason != "" {
			s += " (" + pod.Status.Reason + ")"
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				s += fmt.Sprintf(", container %s exited %d (%s)", cs.Name, t.ExitCode, t.Reason)
			}
		}
		if pod.Status.Phase == corev1.PodFailed {
			tail := int64(20)
			logs, err := m.objects.kube.CoreV1().Pods(id.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
			if err == nil && len(logs) > 0 {
				s += ", log: " + strings.TrimSpace(string(logs))
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// hooksToRun returns the hooks of phase the plan marks to run; all of
// them for OnFailure.
func (p *Plan) hooksToRun(phase HookPhase) []*Hook {
	var out []*Hook
	for _, r := range p.Hooks {
		if r.hook.Has(phase) && (r.Run || phase == OnFailure) {
			out = append(out, r.hook)
		}
	}
	return out
}

// runs reports whether any hook of phase runs in this apply.
func (p *Plan) runs(phase HookPhase) bool { return len(p.hooksToRun(phase)) > 0 }

// removedHooks lists the hooks with a recorded run that are no longer in
// the set; a successful apply deletes their last run (pruneHooks).
func (p *Plan) removedHooks() []object.ID {
	if p.removalPolicy() == DeletionOrphan {
		return nil // a removal that leaves everything, hooks' runs too
	}
	planned := map[object.ID]bool{}
	for _, h := range p.Hooks {
		planned[h.ID] = true
	}
	var out []object.ID
	for _, r := range p.inventory.Hooks {
		if !planned[r.ID] {
			out = append(out, r.ID)
		}
	}
	return out
}
