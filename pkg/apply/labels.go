package apply

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
)

// pruneDisabled reports whether annotations opt an object out of pruning.
func pruneDisabled(ann map[string]string) bool {
	return ann[AnnotationPrune] == "disabled" || ann[fluxPrune] == "disabled" || ann[helmResourcePolicy] == "keep"
}

// adoptRequested reports whether annotations ask to take the object over
// from another app.
func adoptRequested(ann map[string]string) bool { return ann[AnnotationAdopt] == "true" }

// recreateAllowed reports whether annotations allow delete and re-create.
func recreateAllowed(ann map[string]string) bool {
	return ann[AnnotationRecreate] == "true" || ann[fluxForce] == "Enabled"
}
