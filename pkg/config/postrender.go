package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PostRenderer changes a Helm chart's rendered manifests before deliver
// handles them: Flux HelmRelease's spec.postRenderers[] shape.
type PostRenderer struct {
	// Kustomize is built like a kustomization whose only resource is the
	// chart's output.
	Kustomize *PostRenderKustomize `yaml:"kustomize" json:"kustomize"`
}

// PostRenderKustomize is the kustomize post-renderer: Flux's
// postRenderers[].kustomize (patches, images) plus commonLabels, with the
// meaning of the same fields of a kustomization.
type PostRenderKustomize struct {
	// Patches are strategic merge or JSON 6902 patches, applied in order.
	Patches []KustomizePatch `yaml:"patches,omitempty" json:"patches,omitempty"`
	// Images replace container image names, tags or digests.
	Images []KustomizeImage `yaml:"images,omitempty" json:"images,omitempty"`
	// CommonLabels are added to every object and to its selectors and pod
	// templates, as kustomize's commonLabels (a changed selector of a
	// Deployment cannot be applied to an existing one).
	CommonLabels map[string]string `yaml:"commonLabels,omitempty" json:"commonLabels,omitempty"`
}

// KustomizePatch is an inline patch: a strategic merge patch (a YAML
// object) or a JSON 6902 patch (a list of operations, which needs a
// target).
type KustomizePatch struct {
	// Patch is the patch itself, YAML or JSON.
	Patch string `yaml:"patch" json:"patch"`
	// Target selects the objects patched; a strategic merge patch without
	// one patches the object it names.
	Target *PatchTarget `yaml:"target,omitempty" json:"target,omitempty"`
}

// PatchTarget selects objects as kustomize's patch targets do: every set
// field must match; name and namespace are regular expressions matching
// the whole value.
type PatchTarget struct {
	Group              string `yaml:"group,omitempty" json:"group,omitempty"`
	Version            string `yaml:"version,omitempty" json:"version,omitempty"`
	Kind               string `yaml:"kind,omitempty" json:"kind,omitempty"`
	Name               string `yaml:"name,omitempty" json:"name,omitempty"`
	Namespace          string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	LabelSelector      string `yaml:"labelSelector,omitempty" json:"labelSelector,omitempty"`
	AnnotationSelector string `yaml:"annotationSelector,omitempty" json:"annotationSelector,omitempty"`
}

// KustomizeImage replaces the image Name (without tag) of containers and
// init containers.
type KustomizeImage struct {
	Name    string `yaml:"name" json:"name"`
	NewName string `yaml:"newName,omitempty" json:"newName,omitempty"`
	NewTag  string `yaml:"newTag,omitempty" json:"newTag,omitempty"`
	// Digest replaces the tag with a digest (sha256:...); it wins over
	// NewTag.
	Digest string `yaml:"digest,omitempty" json:"digest,omitempty"`
}

// jsonPatchOps are the operations of RFC 6902.
var jsonPatchOps = map[string]bool{"add": true, "remove": true, "replace": true, "move": true, "copy": true, "test": true}

// validatePostRenderers checks what kustomize would refuse only when the
// chart is rendered: a patch that is not YAML, a JSON 6902 patch without a
// target or with an unknown operation, a strategic merge patch without
// kind or name, selectors and name patterns that do not parse, images without
// a change and labels Kubernetes refuses.
func validatePostRenderers(where string, prs []PostRenderer) []error {
	var errs []error
	for i, pr := range prs {
		at := fmt.Sprintf("%s: helm.postRenderers[%d].kustomize", where, i)
		k := pr.Kustomize
		if k == nil {
			errs = append(errs, fmt.Errorf("%s: required (the only kind of post-renderer)", at))
			continue
		}
		if len(k.Patches) == 0 && len(k.Images) == 0 && len(k.CommonLabels) == 0 {
			errs = append(errs, fmt.Errorf("%s: set patches, images or commonLabels", at))
		}
		for j, p := range k.Patches {
			if err := checkPatch(p); err != nil {
				errs = append(errs, fmt.Errorf("%s.patches[%d]: %w", at, j, err))
			}
		}
		for j, im := range k.Images {
			if err := checkImage(im); err != nil {
				errs = append(errs, fmt.Errorf("%s.images[%d]: %w", at, j, err))
			}
		}
		for _, key := range slices.Sorted(maps.Keys(k.CommonLabels)) {
			v := k.CommonLabels[key]
			if msgs := validation.IsQualifiedName(key); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s.commonLabels: key %q: %s", at, key, strings.Join(msgs, "; ")))
			}
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s.commonLabels.%s: value %q: %s", at, key, v, strings.Join(msgs, "; ")))
			}
		}
	}
	return errs
}

// checkImage checks one image replacement.
func checkImage(im KustomizeImage) error {
	if im.Name == "" {
		return fmt.Errorf("name is required")
	}
	if im.NewName == "" && im.NewTag == "" && im.Digest == "" {
		return fmt.Errorf("set newName, newTag or digest")
	}
	return nil
}

// checkPatch checks one patch and its target.
func checkPatch(p KustomizePatch) error {
	if strings.TrimSpace(p.Patch) == "" {
		return fmt.Errorf("patch is required")
	}
	var doc any
	if err := yaml.Unmarshal([]byte(p.Patch), &doc); err != nil {
		return fmt.Errorf("patch: not YAML or JSON: %w", cleanYAMLError(err))
	}
	// kustomize reads a patch that starts with [ as JSON, not YAML
	// (jsonPatchFromBytes): [{op: add, ...}] is refused there.
	if t := strings.TrimSpace(p.Patch); strings.HasPrefix(t, "[") && !json.Valid([]byte(t)) {
		return fmt.Errorf("patch: a JSON 6902 patch that starts with [ must be JSON (kustomize reads it as JSON): quote its keys and strings, or write it as a YAML list")
	}
	switch d := doc.(type) {
	case []any:
		if p.Target == nil {
			return fmt.Errorf("patch: a JSON 6902 patch (a list of operations) needs a target")
		}
		for i, op := range d {
			m, _ := op.(map[string]any)
			name, _ := m["op"].(string)
			if !jsonPatchOps[name] {
				return fmt.Errorf("patch: operation %d: op must be one of add, remove, replace, move, copy, test", i)
			}
			if path, _ := m["path"].(string); path != "" && !strings.HasPrefix(path, "/") {
				return fmt.Errorf("patch: operation %d: path %q must start with /", i, path)
			}
		}
	case map[string]any:
		// kustomize reads a strategic merge patch as an object: it needs
		// a kind and a name even with a target, which then overrides them.
		md, _ := d["metadata"].(map[string]any)
		if d["kind"] == nil || md["name"] == nil {
			return fmt.Errorf("patch: a strategic merge patch needs kind and metadata.name (the object it patches, or any with a target)")
		}
	default:
		return fmt.Errorf("patch: want a strategic merge patch (an object) or a JSON 6902 patch (a list of operations)")
	}
	if t := p.Target; t != nil {
		for _, f := range [][2]string{{"labelSelector", t.LabelSelector}, {"annotationSelector", t.AnnotationSelector}} {
			if _, err := labels.Parse(f[1]); err != nil {
				return fmt.Errorf("target.%s: %w", f[0], err)
			}
		}
		for _, f := range [][2]string{{"name", t.Name}, {"namespace", t.Namespace}} {
			if _, err := regexp.Compile("^(?:" + f[1] + ")$"); err != nil {
				return fmt.Errorf("target.%s: not a regular expression: %w", f[0], err)
			}
		}
	}
	return nil
}
