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
		r := render.PostRenderer{CommonLabels: k.CommonLabels}
		for _, p := range k.Patches {
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
			r.Patches = append(r.Patches, tp)
		}
		for _, im := range k.Images {
			r.Images = append(r.Images, types.Image{Name: im.Name, NewName: im.NewName, NewTag: im.NewTag, Digest: im.Digest})
		}
		out = append(out, r)
	}
	return out
}
