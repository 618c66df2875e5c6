package pipeline

import (
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"

	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
)

// postRenderers turns an app's helm.postRenderers into the kustomize
// fields the renderer builds with. config keeps its own types (the
// schema of deliver.yaml, without kustomize's other fields); each maps
// field for field.
func postRenderers(prs []config.PostRenderer) []render.PostRenderer {
	var out []render.PostRenderer
	for _, pr := range prs {
		k := pr.Kustomize
		if k == nil {
			continue // refused by config.Validate
		}
		out = append(out, render.PostRenderer{CommonLabels: k.CommonLabels, Patches: kustomizePatches(k.Patches), Images: kustomizeImages(k.Images)})
	}
	return out
}

// kustomizeAdditions turns the Flux Kustomization fields of a kustomize
// app into what the renderer adds to its overlay; nil when none is set.
func kustomizeAdditions(k *config.Kustomize) *render.KustomizeAdditions {
	if k.TargetNamespace == "" && k.NamePrefix == "" && k.NameSuffix == "" && len(k.Patches) == 0 && len(k.Images) == 0 && len(k.Components) == 0 {
		return nil
	}
	return &render.KustomizeAdditions{
		Namespace: k.TargetNamespace, NamePrefix: k.NamePrefix, NameSuffix: k.NameSuffix,
		Patches: kustomizePatches(k.Patches), Images: kustomizeImages(k.Images),
		Components: k.Components, IgnoreMissingComponents: k.IgnoreMissingComponents,
	}
}

// kustomizePatches maps deliver.yaml's patches to kustomize's.
func kustomizePatches(ps []config.KustomizePatch) []types.Patch {
	var out []types.Patch
	for _, p := range ps {
		tp := types.Patch{Patch: p.Patch}
		if t := p.Target; t != nil {
			tp.Target = &types.Selector{
				ResId: resid.ResId{
					Gvk:  resid.Gvk{Group: t.Group, Version: t.Version, Kind: t.Kind},
					Name: t.Name, Namespace: t.Namespace,
				},
				LabelSelector: t.LabelSelector, AnnotationSelector: t.AnnotationSelector,
			}
		}
		out = append(out, tp)
	}
	return out
}

// kustomizeImages maps deliver.yaml's images to kustomize's.
func kustomizeImages(ims []config.KustomizeImage) []types.Image {
	var out []types.Image
	for _, im := range ims {
		out = append(out, types.Image{Name: im.Name, NewName: im.NewName, NewTag: im.NewTag, Digest: im.Digest})
	}
	return out
}
