package apply

import (
	"fmt"
	"strconv"
	"strings"
)

// Labels and annotations deliver reads and writes on objects.
const (
	// LabelApp marks an object as owned by a deliver app. Prune deletes only
	// objects that carry it with the app's name, so an object someone else
	// created with the same name is never deleted.
	LabelApp = "deliver.dev/app"
	// LabelEnv marks an object with the deliver.yaml environment of the
	// app that owns it, when the run has one (PlanOptions.Identity): two
	// environments may deliver apps of one name to one cluster (each
	// with inventories of its own, see docs/clusters.md), and LabelApp
	// alone would not tell their objects apart. An object without it (of
	// an older version, or of a run without environment) is its LabelApp
	// app's, whatever the environment.
	LabelEnv = "deliver.dev/env"
	// LabelInventory marks the Secret holding an app's inventory.
	LabelInventory = "deliver.dev/inventory"

	// AnnotationAdopt set to "true" on an object in git lets its app take
	// the object over from another app (the live object's LabelApp names
	// another app). Without it such an object is a conflict: the plan
	// lists it, and Apply fails before writing anything.
	AnnotationAdopt = "deliver.dev/adopt"

	// AnnotationPrune set to "disabled" keeps an object in the cluster when
	// it leaves git. Flux's and Helm's equivalents are honoured too.
	AnnotationPrune    = "deliver.dev/prune"
	fluxPrune          = "kustomize.toolkit.fluxcd.io/prune"
	helmResourcePolicy = "helm.sh/resource-policy"
	// AnnotationRecreate set to "true" lets deliver delete and re-create
	// the object when a change touches an immutable field. Flux's
	// kustomize.toolkit.fluxcd.io/force: Enabled is honoured too.
	AnnotationRecreate = "deliver.dev/recreate"
	fluxForce          = "kustomize.toolkit.fluxcd.io/force"

	// AnnotationApplyPolicy is Flux's per-object apply policy, honoured
	// as Flux does (see ApplyPolicy): Override (the default) or Merge,
	// IfNotPresent, Ignore.
	AnnotationApplyPolicy = "kustomize.toolkit.fluxcd.io/ssa"
	// AnnotationReconcile set to "disabled", on the object in git or on
	// the object in the cluster (a hot fix someone is trying), makes
	// deliver leave the object alone: not applied, not pruned, no drift,
	// until the annotation is gone. Flux's
	// kustomize.toolkit.fluxcd.io/reconcile: disabled works too.
	AnnotationReconcile = "deliver.dev/reconcile"
	fluxReconcile       = "kustomize.toolkit.fluxcd.io/reconcile"
	// AnnotationWave orders the objects that are not config (workloads,
	// custom resources, everything of the workloads stage) in waves: an
	// integer, default 0, lower waves first, each ready before the next
	// starts. Argo CD's argocd.argoproj.io/sync-wave works too; config
	// kinds (Namespaces, CRDs, ServiceAccounts, ConfigMaps, Secrets,
	// Services...) are applied first whatever their wave.
	AnnotationWave = "deliver.dev/wave"
	// argoSyncOptions lists Argo CD's per-object sync options
	// (Prune=false, Replace=true, ...), comma-separated.
	argoSyncOptions = "argocd.argoproj.io/sync-options"
)

// pruneDisabled reports whether annotations opt an object out of pruning:
// deliver's, Flux's and Helm's annotations, and Argo CD's Prune=false sync
// option.
func pruneDisabled(ann map[string]string) bool {
	return ann[AnnotationPrune] == "disabled" || ann[fluxPrune] == "disabled" || ann[helmResourcePolicy] == "keep" ||
		reconcileDisabled(ann) || argoSyncOption(ann, "Prune=false")
}

// waveOf reads an object's sync wave: AnnotationWave, else Argo CD's.
func waveOf(ann map[string]string) (int, error) {
	key := AnnotationWave
	v, ok := ann[key]
	if !ok {
		key = argoSyncWave
		v = ann[key]
	}
	if strings.TrimSpace(v) == "" {
		return 0, nil
	}
	return annotationInt(key, v)
}

// annotationInt reads the integer value v of annotation key (a wave, a
// hook's weight), spaces around it allowed.
func annotationInt(key, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", key, v)
	}
	return n, nil
}

// reconcileDisabled reports whether annotations pause deliver for the
// object (AnnotationReconcile).
func reconcileDisabled(ann map[string]string) bool {
	return ann[AnnotationReconcile] == "disabled" || ann[fluxReconcile] == "disabled"
}

// ApplyPolicy is how an object of git is applied: Flux's
// kustomize.toolkit.fluxcd.io/ssa policies, which users migrating from
// Flux bring in their manifests.
type ApplyPolicy int

// The closed set of apply policies.
const (
	// ApplyAlways applies the object on every change: Flux's Override, the
	// default, and its Merge (which differs from Override only in Flux's
	// removal of fields kubectl's client-side apply left, which deliver
	// does not do for any object).
	ApplyAlways ApplyPolicy = iota
	// ApplyIfNotPresent creates the object when it is missing and leaves
	// it as it is once it exists (a Secret or a webhook configuration that
	// another controller fills in): no apply, no drift revert.
	ApplyIfNotPresent
	// ApplyNever leaves the object alone although it is in git (Flux's
	// Ignore): never applied nor pruned.
	ApplyNever
	// ApplyPaused leaves the object alone while AnnotationReconcile says
	// so, on the object in git or in the cluster: an unchanged plan then
	// checks that the object in the cluster still has it.
	ApplyPaused
)

// String names the policy as the annotation does; "" for ApplyAlways.
func (p ApplyPolicy) String() string {
	switch p {
	case ApplyIfNotPresent:
		return "IfNotPresent"
	case ApplyNever:
		return "Ignore"
	case ApplyPaused:
		return "Disabled"
	}
	return ""
}

// applyPolicyOf reads AnnotationApplyPolicy, case-insensitively as Flux,
// and AnnotationReconcile.
func applyPolicyOf(ann map[string]string) (ApplyPolicy, error) {
	if reconcileDisabled(ann) {
		return ApplyPaused, nil
	}
	switch v := ann[AnnotationApplyPolicy]; strings.ToLower(v) {
	case "", "override", "merge":
		return ApplyAlways, nil
	case "ifnotpresent":
		return ApplyIfNotPresent, nil
	case "ignore":
		return ApplyNever, nil
	default:
		return ApplyAlways, fmt.Errorf("%s: unknown policy %q (want Override, Merge, IfNotPresent or Ignore)", AnnotationApplyPolicy, v)
	}
}

// adoptRequested reports whether annotations ask to take the object over
// from another app.
func adoptRequested(ann map[string]string) bool { return ann[AnnotationAdopt] == "true" }

// recreateAllowed reports whether annotations allow delete and re-create:
// deliver's, Flux's force, and Argo CD's Force=true with Replace=true
// (its delete and re-create; Replace alone is a replace, which server-side
// apply makes needless).
func recreateAllowed(ann map[string]string) bool {
	return ann[AnnotationRecreate] == "true" || ann[fluxForce] == "Enabled" ||
		(argoSyncOption(ann, "Force=true") && argoSyncOption(ann, "Replace=true"))
}

// argoSyncOption reports whether Argo CD's sync options annotation lists
// option.
func argoSyncOption(ann map[string]string, option string) bool {
	for _, o := range strings.Split(ann[argoSyncOptions], ",") {
		if strings.EqualFold(strings.TrimSpace(o), option) {
			return true
		}
	}
	return false
}
