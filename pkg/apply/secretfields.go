package apply

import (
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

// A secret value that git no longer names is unknown to the redactor of a
// later run: the live value of a field that left git, or of an object that
// left it (a prune, deliver delete), would show in clear in a diff. So the
// inventory records where the secrets were (Entry.Secrets: places, never
// values), and a diff masks the live value there when git no longer has
// it. Secrets themselves are masked whole by kind (maskSecrets).

// secretPointers returns the places of the string leaves of u whose value
// holds a secret value (redact changes it), as JSON pointers whose list
// items are all "*": an item's index may differ in the live object (items
// other managers added), and masking the same field of every item leaves
// none out. Sorted; none for a Secret.
func secretPointers(u *unstructured.Unstructured, redact func(string) string) []string {
	if u == nil || redact == nil || u.GetKind() == "Secret" && u.GroupVersionKind().Group == "" {
		return nil
	}
	set := map[string]bool{}
	stringLeaves(u.Object, nil, true, func(path object.Path, s string) {
		if len(path) > 0 && redact(s) != s {
			set[path.String()] = true
		}
	})
	if len(set) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(set))
}

// maskLeftSecrets returns before (the live object) with the string value
// at each of pointers (Entry.Secrets of the last apply) masked where after
// (what git wants now, nil for a delete) does not hold the same value: the
// value there is a secret git no longer names. Where after holds the same
// value, git still names it, and the redactor masks it if it is a secret.
func maskLeftSecrets(before, after *unstructured.Unstructured, pointers []string) *unstructured.Unstructured {
	if before == nil || len(pointers) == 0 {
		return before
	}
	var out *unstructured.Unstructured
	for _, s := range pointers {
		// "*" as a map key is the key "*" (RFC 6901), which the walk
		// above never records: its keys are a map's own.
		p, err := object.ParsePointer(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		for _, path := range p.Paths(before.Object) {
			bv, _ := object.GetAt(before.Object, path)
			if _, ok := bv.(string); !ok {
				continue
			}
			if after != nil {
				if av, ok := object.GetAt(after.Object, path); ok && av == bv {
					continue
				}
			}
			if out == nil {
				out = before.DeepCopy()
			}
			object.SetAt(out.Object, path, maskBefore)
		}
	}
	if out == nil {
		return before
	}
	return out
}

// maskUnknownSecrets returns before (the live object) with every string
// value masked that after (nil for a delete) does not hold at the same
// place, but the object's identity: the inventory of an earlier deliver
// does not say which of them were secrets, and any could be one git no
// longer names. Until a run records the places (Inventory.SecretPlaces),
// a diff shows where the object changes, not what it held.
func maskUnknownSecrets(before, after *unstructured.Unstructured) *unstructured.Unstructured {
	if before == nil {
		return nil
	}
	out := before.DeepCopy()
	stringLeaves(before.Object, nil, false, func(path object.Path, s string) {
		if identityField(path) {
			return
		}
		if after != nil {
			if av, ok := object.GetAt(after.Object, path); ok && av == s {
				return
			}
		}
		object.SetAt(out.Object, path, maskBefore)
	})
	return out
}

// stringLeaves calls fn with each string leaf of v and its path under
// path, a list item's path element being its index, or "*" with
// wildcard. fn must not keep the path: it is reused.
func stringLeaves(v any, path object.Path, wildcard bool, fn func(object.Path, string)) {
	switch t := v.(type) {
	case map[string]any:
		for k, item := range t {
			stringLeaves(item, append(path, k), wildcard, fn)
		}
	case []any:
		for i, item := range t {
			var e any = i
			if wildcard {
				e = "*"
			}
			stringLeaves(item, append(path, e), wildcard, fn)
		}
	case string:
		fn(path, t)
	}
}

// identityField reports whether path is apiVersion, kind, or the
// object's name or namespace: what names the object, never a secret.
func identityField(path object.Path) bool {
	switch len(path) {
	case 1:
		return path[0] == "apiVersion" || path[0] == "kind"
	case 2:
		return path[0] == "metadata" && (path[1] == "name" || path[1] == "namespace")
	}
	return false
}
