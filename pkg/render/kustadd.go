package render

import (
	"fmt"
	"path"
	"slices"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// KustomizeAdditions are what a Flux Kustomization adds to the
// kustomization of its path before the build (the generator of
// github.com/fluxcd/pkg/kustomize), with the same effect:
// TestKustomizeAdditionsAsFlux compares the two over the kustomize
// corpus.
type KustomizeAdditions struct {
	// Namespace, NamePrefix and NameSuffix, when set, replace the
	// kustomization's (Flux's targetNamespace, namePrefix, nameSuffix).
	Namespace, NamePrefix, NameSuffix string
	// Patches are added after the kustomization's own.
	Patches []types.Patch
	// Images are merged with the kustomization's by name: a new name is
	// added; for a known one, NewName replaces its newName when set, and
	// NewTag and Digest replace both of its own when either is set.
	Images []types.Image
	// Components, local relative paths, are added after its own; those
	// that do not exist are left out with IgnoreMissingComponents.
	Components              []string
	IgnoreMissingComponents bool
}

// addToKustomization writes, in the build's overlay, the kustomization of
// folder rel (relative to the root) with the additions: kustomize then
// builds that one instead of the file.
func addToKustomization(fsys *confinedFS, rel string, add *KustomizeAdditions) error {
	data, file, err := fsys.readKustomization(rel)
	if err != nil {
		return err
	}
	if file == "" {
		return fmt.Errorf("%s: no kustomization to add the app's kustomize fields to", rel)
	}
	// Read and written back as Flux's generator does: the fields kustomize
	// reads, nothing converted (kustomize fixes deprecated fields when it
	// loads the result).
	k := types.Kustomization{TypeMeta: types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind}}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if add.Namespace != "" {
		k.Namespace = add.Namespace
	}
	if add.NamePrefix != "" {
		k.NamePrefix = add.NamePrefix
	}
	if add.NameSuffix != "" {
		k.NameSuffix = add.NameSuffix
	}
	k.Patches = append(k.Patches, add.Patches...)
	for _, c := range add.Components {
		if add.IgnoreMissingComponents && !fsys.Exists(fsys.abs(path.Join(rel, c))) {
			continue
		}
		k.Components = append(k.Components, c)
	}
	for _, im := range add.Images {
		i := slices.IndexFunc(k.Images, func(known types.Image) bool { return known.Name == im.Name })
		if i < 0 {
			k.Images = append(k.Images, types.Image{Name: im.Name, NewName: im.NewName, NewTag: im.NewTag, Digest: im.Digest})
			continue
		}
		if im.NewName != "" {
			k.Images[i].NewName = im.NewName
		}
		// A tag and a digest both pick the version: either replaces both,
		// as kustomize's image transformer does.
		if im.NewTag != "" || im.Digest != "" {
			k.Images[i].NewTag, k.Images[i].Digest = im.NewTag, im.Digest
		}
	}
	out, err := yaml.Marshal(k)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fsys.overlay[fsys.abs(file)] = out
	return nil
}
