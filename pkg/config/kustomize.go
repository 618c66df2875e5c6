package config

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validateKustomize checks what a Flux Kustomization's generator or the
// build would refuse in the fields deliver adds to an overlay: patches
// that are not patches, images without a change, components that are
// not local relative paths, a namespace Kubernetes refuses.
func validateKustomize(where string, k *Kustomize) []error {
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
