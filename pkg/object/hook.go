package object

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// Annotations that mark an object as a hook: one that runs at a moment of
// the sync (before, after, on failure) instead of being applied with the
// other objects. When to run it is read from the annotation's value
// elsewhere; here an object is only classified.
const (
	// HelmHookAnnotation is Helm's hook annotation.
	HelmHookAnnotation = "helm.sh/hook"
	// ArgoCDHookAnnotation is Argo CD's hook annotation, honoured so that
	// charts and overlays written for Argo CD keep their hooks apart.
	ArgoCDHookAnnotation = "argocd.argoproj.io/hook"
	// HookAnnotation is deliver's own hook annotation.
	HookAnnotation = "deliver.dev/hook"
)

// IsHook reports whether u carries one of the hook annotations with a value
// that is not empty.
func IsHook(u *unstructured.Unstructured) bool {
	if u == nil {
		return false
	}
	a := u.GetAnnotations()
	for _, k := range []string{HelmHookAnnotation, ArgoCDHookAnnotation, HookAnnotation} {
		if a[k] != "" {
			return true
		}
	}
	return false
}
