package config

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validateKustomize checks what a Flux Kustomization's generator or the
// build would refuse in the fields deliver adds to an overlay: patches
// that are not patches, images without a change, components that are
// not local relative paths, a namespace Kubernetes refuses.
func validateKustomize(where string, k *KustomizeFields) []error {
	if k == nil {
		return nil
	}
	var errs []error
	if k.TargetNamespace != "" && len(validation.IsDNS1123Label(k.TargetNamespace)) > 0 {
		errs = append(errs, fmt.Errorf("%s: kustomize.targetNamespace %q is not a valid namespace", where, k.TargetNamespace))
	}
	for i, p := range k.Patches {
		if err := checkPatch(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: kustomize.patches[%d]: %w", where, i, err))
		}
	}
	for i, im := range k.Images {
		if err := checkImage(im); err != nil {
			errs = append(errs, fmt.Errorf("%s: kustomize.images[%d]: %w", where, i, err))
		}
	}
	for i, c := range k.Components {
		if !localRelative(c) {
			errs = append(errs, fmt.Errorf("%s: kustomize.components[%d]: %q must be a local relative path", where, i, c))
		}
	}
	return errs
}

// localRelative is Flux's rule for a component (IsLocalRelativePath): not
// a remote reference kustomize would fetch, not an absolute path. One
// that climbs out of the repository is refused by the build.
func localRelative(p string) bool {
	lower := strings.ToLower(p)
	for _, remote := range []string{"git::", "gh:", "ssh://", "https://", "http://", "git@", "github.com:", "github.com/"} {
		if len(remote) < len(p) && strings.HasPrefix(lower, remote) {
			return false
		}
	}
	return p != "" && !path.IsAbs(p) && !path.IsAbs(strings.TrimPrefix(lower, "file://"))
}

// validateCommonMetadata checks an app's commonMetadata: kustomize and
// manifests apps only (Flux's Kustomization), keys and values Kubernetes
// takes, and none of deliver's own keys, which tell whose an object is.
func validateCommonMetadata(where string, a App) []error {
	m := a.CommonMetadata
	if m == nil {
		return nil
	}
	var errs []error
	if a.Helm != nil {
		errs = append(errs, fmt.Errorf("%s: commonMetadata applies to kustomize and manifests apps", where))
	}
	for _, f := range []struct {
		name string
		kv   map[string]string
	}{{"labels", m.Labels}, {"annotations", m.Annotations}} {
		for _, k := range slices.Sorted(maps.Keys(f.kv)) {
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s: commonMetadata.%s: key %q: %s", where, f.name, k, strings.Join(msgs, "; ")))
			}
			if strings.HasPrefix(k, "deliver.dev/") {
				errs = append(errs, fmt.Errorf("%s: commonMetadata.%s: key %q: deliver.dev/ keys are deliver's own", where, f.name, k))
			}
			if f.name == "labels" {
				if msgs := validation.IsValidLabelValue(f.kv[k]); len(msgs) > 0 {
					errs = append(errs, fmt.Errorf("%s: commonMetadata.labels.%s: value %q: %s", where, k, f.kv[k], strings.Join(msgs, "; ")))
				}
			}
		}
	}
	return errs
}

// Merge returns o (an environment's fields) merged over k (the app's):
// a name, prefix, suffix or namespace o sets replaces k's; o's patches
// and components come after k's; o's image of a name replaces k's of that
// name, a new name is added; IgnoreMissingComponents is set if either
// sets it. Neither is changed.
func (k KustomizeFields) Merge(o KustomizeFields) KustomizeFields {
	out := k
	out.TargetNamespace = cmp.Or(o.TargetNamespace, k.TargetNamespace)
	out.NamePrefix = cmp.Or(o.NamePrefix, k.NamePrefix)
	out.NameSuffix = cmp.Or(o.NameSuffix, k.NameSuffix)
	out.Patches = slices.Concat(k.Patches, o.Patches)
	out.Components = slices.Concat(k.Components, o.Components)
	out.IgnoreMissingComponents = k.IgnoreMissingComponents || o.IgnoreMissingComponents
	out.Images = slices.Clone(k.Images)
	for _, im := range o.Images {
		if i := slices.IndexFunc(out.Images, func(known KustomizeImage) bool { return known.Name == im.Name }); i >= 0 {
			out.Images[i] = im
		} else {
			out.Images = append(out.Images, im)
		}
	}
	return out
}

// Merge returns o's labels and annotations merged over m's; nil when
// both are. Neither is changed.
func (m *CommonMetadata) Merge(o *CommonMetadata) *CommonMetadata {
	if m == nil && o == nil {
		return nil
	}
	out := &CommonMetadata{}
	for _, c := range []*CommonMetadata{m, o} {
		if c == nil {
			continue
		}
		if len(c.Labels) > 0 {
			out.Labels = mergeStrings(out.Labels, c.Labels)
		}
		if len(c.Annotations) > 0 {
			out.Annotations = mergeStrings(out.Annotations, c.Annotations)
		}
	}
	return out
}

func mergeStrings(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = make(map[string]string, len(b))
	}
	maps.Copy(out, b)
	return out
}
