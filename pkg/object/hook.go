package object

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

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

// GeneratedNameMark ends the name in the ID of a hook named by
// metadata.generateName (see HookID). No object can be named so: a name
// is a DNS subdomain, and "*" is not allowed in one.
const GeneratedNameMark = "*"

// HookID returns the identity of a hook. A hook named by
// metadata.generateName gets a fresh object, with a new name, on each
// run, so its identity is what stays the same from run to run: its
// group, kind, namespace and generateName prefix, the name of its ID
// being the prefix followed by GeneratedNameMark (Job/ns/migrate-*).
// Any other object's identity is IDOf.
func HookID(u *unstructured.Unstructured) ID {
	id := IDOf(u)
	if id.Name == "" && u.GetGenerateName() != "" {
		id.Name = u.GetGenerateName() + GeneratedNameMark
	}
	return id
}

// GeneratedPrefix returns the generateName prefix of a hook identity made
// by HookID for a hook named by metadata.generateName; ok is false for
// the ID of an object with a name.
func GeneratedPrefix(id ID) (prefix string, ok bool) {
	return strings.CutSuffix(id.Name, GeneratedNameMark)
}
