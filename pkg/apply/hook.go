package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/deliverhq/deliver/pkg/object"
)

// HookPhase is when a hook runs.
type HookPhase string

// The closed set of hook phases.
const (
	// PreApply hooks (migrations) run after the new config (Namespaces,
	// ServiceAccounts, ConfigMaps, Secrets, Services) is applied and before
	// any workload changes, so a migration sees the new credentials.
	PreApply HookPhase = "pre-apply"
	// PostApply hooks (smoke tests, cache warm-up) run once the workloads
	// are ready.
	PostApply HookPhase = "post-apply"
	// OnFailure hooks (notifications, cleanup) run when a hook or the
	// rollout failed.
	OnFailure HookPhase = "on-failure"
)

// HookDeletePolicy says when deliver deletes a hook's Job.
type HookDeletePolicy string

// The delete policies, as in Helm. Without any, the last run is kept for
// inspection and replaced by the next run (BeforeHookCreation).
const (
	BeforeHookCreation HookDeletePolicy = "before-hook-creation"
	HookSucceeded      HookDeletePolicy = "hook-succeeded"
	HookFailed         HookDeletePolicy = "hook-failed"
)

// Annotations that make an object a deliver hook.
const (
	// AnnotationHook lists the phases: pre-apply, post-apply, on-failure.
	AnnotationHook = "deliver.dev/hook"
	// AnnotationHookWeight orders hooks of a phase, ascending; equal
	// weights run in parallel. Default 0.
	AnnotationHookWeight = "deliver.dev/hook-weight"
	// AnnotationHookDeletePolicy lists delete policies.
	AnnotationHookDeletePolicy = "deliver.dev/hook-delete-policy"
	// AnnotationHookRun set to "always" runs the hook on every apply, not
	// only when its spec or the config it references changed.
	AnnotationHookRun = "deliver.dev/hook-run"
	// AnnotationHookTimeout bounds one run of the hook (a Go duration).
	AnnotationHookTimeout = "deliver.dev/hook-timeout"

	helmHook             = "helm.sh/hook"
	helmHookWeight       = "helm.sh/hook-weight"
	helmHookDeletePolicy = "helm.sh/hook-delete-policy"
	argoHook             = "argocd.argoproj.io/hook"
	argoSyncWave         = "argocd.argoproj.io/sync-wave"
	argoHookDeletePolicy = "argocd.argoproj.io/hook-delete-policy"
)

// LabelHookID marks each run of a hook named by metadata.generateName with
// a digest of the hook's identity (hookLabel). Each run is a new object
// with a new name, so this label, with LabelApp, is how the next run finds
// the earlier runs to delete them, and how prune finds them once the hook
// left git.
const LabelHookID = "deliver.dev/hook-id"

// hookLabel is the value of LabelHookID for the hook identified by id:
// an ID holds a slash and may be longer than the 63 characters a label
// value may have, so a digest of it. 80 bits keep apart any number of
// hooks an app may have.
func hookLabel(id object.ID) string {
	sum := sha256.Sum256([]byte(id.Group + "/" + id.String()))
	return hex.EncodeToString(sum[:10])
}

// HookDeliveries says in which deliveries of its app a phase of a hook
// runs, for Helm's hooks: Helm runs its install hooks only when it
// installs a release and its upgrade hooks only when it upgrades one, and
// a chart's one-time setup (a pre-install Secret of generated tokens, a
// post-install Job that creates the first admin) relies on that.
type HookDeliveries int

// The closed set of HookDeliveries.
const (
	// EveryDelivery: deliver's own hooks, Argo CD's, and Helm's that name
	// both the install and the upgrade event of a phase.
	EveryDelivery HookDeliveries = iota
	// FirstDelivery: helm.sh/hook pre-install or post-install without its
	// upgrade counterpart; only while the app has never been delivered
	// successfully (Helm's install).
	FirstDelivery
	// LaterDeliveries: helm.sh/hook pre-upgrade or post-upgrade without its
	// install counterpart; only once the app has been delivered
	// successfully (Helm's upgrade).
	LaterDeliveries
)

// Hook is a parsed hook object.
type Hook struct {
	*object.Object
	// Phases are the phases it runs in; Deliveries, when set for a phase,
	// restricts it to some deliveries of the app (a plan keeps in Phases
	// only those of its delivery).
	Phases         []HookPhase
	Deliveries     map[HookPhase]HookDeliveries
	Weight         int
	DeletePolicies []HookDeletePolicy
	// Always runs the hook on every apply.
	Always bool
	// Timeout bounds one run; zero means the manager's HookTimeout.
	Timeout time.Duration
}

// ID returns the hook's identity, object.HookID: for a hook named by
// metadata.generateName, the same from run to run though each run creates
// an object with a new name.
func (h *Hook) ID() object.ID { return object.HookID(h.Unstructured) }

// Has reports whether the hook runs in phase p.
func (h *Hook) Has(p HookPhase) bool {
	for _, q := range h.Phases {
		if q == p {
			return true
		}
	}
	return false
}

func (h *Hook) deletes(p HookDeletePolicy) bool {
	for _, q := range h.DeletePolicies {
		if q == p {
			return true
		}
	}
	return false
}

// ParseHook reads the hook annotations of o: deliver's own, Helm's and
// Argo CD's, in that order of precedence. ok is false for a hook deliver
// never runs (Helm test, delete and rollback hooks, Argo CD Skip, PreDelete
// and PostDelete): such objects are neither applied nor run. Unknown phase
// values are an error naming the object.
func ParseHook(o *object.Object) (h *Hook, ok bool, err error) {
	ann := o.GetAnnotations()
	h = &Hook{Object: o}
	fail := func(format string, args ...any) (*Hook, bool, error) {
		return nil, false, fmt.Errorf("%s (%s): %s", object.HookID(o.Unstructured), o.Origin, fmt.Sprintf(format, args...))
	}
	var weightKey, policyKey string
	switch {
	case ann[AnnotationHook] != "":
		weightKey, policyKey = AnnotationHookWeight, AnnotationHookDeletePolicy
		for _, v := range splitList(ann[AnnotationHook]) {
			switch p := HookPhase(v); p {
			case PreApply, PostApply, OnFailure:
				h.Phases = append(h.Phases, p)
			default:
				return fail("unknown hook phase %q in %s (want pre-apply, post-apply or on-failure)", v, AnnotationHook)
			}
		}
	case ann[helmHook] != "":
		weightKey, policyKey = helmHookWeight, helmHookDeletePolicy
		// Per phase, whether the install and the upgrade event name it.
		install, upgrade := map[HookPhase]bool{}, map[HookPhase]bool{}
		for _, v := range splitList(ann[helmHook]) {
			switch v {
			case "pre-install":
				install[PreApply] = true
			case "pre-upgrade":
				upgrade[PreApply] = true
			case "post-install":
				install[PostApply] = true
			case "post-upgrade":
				upgrade[PostApply] = true
			case "test", "test-success", "test-failure", "pre-delete", "post-delete", "pre-rollback", "post-rollback":
				// Helm runs these on `helm test`, uninstall and rollback,
				// none of which deliver does.
			default:
				return fail("unknown hook %q in %s", v, helmHook)
			}
		}
		for _, p := range []HookPhase{PreApply, PostApply} {
			switch {
			case install[p] && upgrade[p]:
				h.Phases = append(h.Phases, p)
			case install[p] || upgrade[p]:
				h.Phases = append(h.Phases, p)
				if h.Deliveries == nil {
					h.Deliveries = map[HookPhase]HookDeliveries{}
				}
				h.Deliveries[p] = FirstDelivery
				if upgrade[p] {
					h.Deliveries[p] = LaterDeliveries
				}
			}
		}
	case ann[argoHook] != "":
		weightKey, policyKey = argoSyncWave, argoHookDeletePolicy
		for _, v := range splitList(ann[argoHook]) {
			switch v {
			case "PreSync":
				h.Phases = appendPhase(h.Phases, PreApply)
			case "Sync", "PostSync":
				// Argo CD runs Sync hooks with the app's objects; deliver
				// runs them once those are applied and ready.
				h.Phases = appendPhase(h.Phases, PostApply)
			case "SyncFail":
				h.Phases = appendPhase(h.Phases, OnFailure)
			case "Skip", "PreDelete", "PostDelete":
			default:
				return fail("unknown hook %q in %s", v, argoHook)
			}
		}
	default:
		return fail("not a hook")
	}
	if len(h.Phases) == 0 {
		return nil, false, nil
	}
	if w := ann[weightKey]; w != "" {
		if h.Weight, err = annotationInt(weightKey, w); err != nil {
			return fail("%v", err)
		}
	}
	for _, v := range splitList(ann[policyKey]) {
		switch v {
		case "before-hook-creation", "BeforeHookCreation":
			h.DeletePolicies = append(h.DeletePolicies, BeforeHookCreation)
		case "hook-succeeded", "HookSucceeded":
			h.DeletePolicies = append(h.DeletePolicies, HookSucceeded)
		case "hook-failed", "HookFailed":
			h.DeletePolicies = append(h.DeletePolicies, HookFailed)
		default:
			return fail("unknown delete policy %q in %s", v, policyKey)
		}
	}
	switch v := ann[AnnotationHookRun]; v {
	case "", "on-change":
	case "always":
		h.Always = true
	default:
		return fail("%s: %q is not always or on-change", AnnotationHookRun, v)
	}
	if v := ann[AnnotationHookTimeout]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fail("%s: %q is not a positive duration", AnnotationHookTimeout, v)
		}
		h.Timeout = d
	}
	return h, true, nil
}

// forDelivery keeps in h.Phases the phases that run in this delivery of
// the app: its first successful one (first), or a later one. It returns
// why it dropped any, for the plan's reason when none is left.
func (h *Hook) forDelivery(first bool) (why string) {
	var kept []HookPhase
	for _, p := range h.Phases {
		switch h.Deliveries[p] {
		case FirstDelivery:
			if !first {
				why = "runs only in the app's first delivery (" + helmHook + ": " + helmEvent(p, "install") + ", as Helm runs it only on install)"
				continue
			}
		case LaterDeliveries:
			if first {
				why = "runs only once the app has been delivered (" + helmHook + ": " + helmEvent(p, "upgrade") + ", as Helm runs it only on upgrade)"
				continue
			}
		}
		kept = append(kept, p)
	}
	h.Phases = kept
	return why
}

// helmEvent names Helm's hook event of phase p (pre-apply, post-apply) on
// install or upgrade.
func helmEvent(p HookPhase, event string) string {
	if p == PreApply {
		return "pre-" + event
	}
	return "post-" + event
}

func appendPhase(ps []HookPhase, p HookPhase) []HookPhase {
	for _, q := range ps {
		if q == p {
			return ps
		}
	}
	return append(ps, p)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// byWeight groups hooks of a phase by weight, ascending; each group runs
// in parallel.
func byWeight(hooks []*Hook) [][]*Hook {
	sorted := append([]*Hook(nil), hooks...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Weight != sorted[j].Weight {
			return sorted[i].Weight < sorted[j].Weight
		}
		return less(sorted[i].ID(), sorted[j].ID())
	})
	var out [][]*Hook
	for i, h := range sorted {
		if i == 0 || h.Weight != sorted[i-1].Weight {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], h)
	}
	return out
}
