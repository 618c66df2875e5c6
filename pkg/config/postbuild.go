package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation"
)

// PostBuild substitutes variables in the objects of a kustomize or
// manifests app after they are built: Flux Kustomization's
// spec.postBuild, with the same fields and meaning (docs/postbuild.md).
type PostBuild struct {
	// SubstituteStrategy is WithVariables (default: nothing is substituted
	// when no variable is defined) or Always (defaults such as
	// ${var:=x} apply even then).
	SubstituteStrategy string `yaml:"substituteStrategy,omitempty" json:"substituteStrategy,omitempty" jsonschema:"enum=WithVariables,enum=Always"`
	// Substitute are variables by name. A value may be a secret ref
	// (ref+vault://..., ref+sops://...): the ref is put in place and
	// resolved in the objects afterwards, masked in every output. They
	// win over SubstituteFrom.
	Substitute map[string]string `yaml:"substitute,omitempty" json:"substitute,omitempty"`
	// SubstituteFrom are ConfigMaps and Secrets of the cluster whose data
	// keys are variables, read in order (a later one wins) with the app's
	// identity when deliver diffs or applies; `deliver render`, which
	// reads no cluster, leaves them out. Values of Secrets are masked in
	// every output.
	SubstituteFrom []SubstituteReference `yaml:"substituteFrom,omitempty" json:"substituteFrom,omitempty"`
	// Strict makes a ${var} without a default whose variable is not
	// defined an error. Default true, as Flux since kustomize-controller
	// v1.9 (its StrictPostBuildSubstitutions feature gate); false makes
	// it "".
	Strict *bool `yaml:"strict,omitempty" json:"strict,omitempty"`
}

// SubstituteReference names a ConfigMap or Secret of post-build variables.
type SubstituteReference struct {
	// Kind is ConfigMap or Secret.
	Kind string `yaml:"kind" json:"kind" jsonschema:"enum=ConfigMap,enum=Secret"`
	// Name of the object.
	Name string `yaml:"name" json:"name"`
	// Namespace of the object. Default: the app's namespace.
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// Optional lets the app render when the object does not exist.
	Optional bool `yaml:"optional,omitempty" json:"optional,omitempty"`
}

// The substitute strategies.
const (
	SubstituteWithVariables = "WithVariables"
	SubstituteAlways        = "Always"
)

// varName is Flux's rule for variable names, the one render.ValidVarName
// applies (config does not import the render engines;
// TestVarNamesAsRender checks that the two agree).
var varName = regexp.MustCompile(`^[_[:alpha:]][_[:alpha:][:digit:]]*$`)

// IsStrict reports whether undefined variables are errors.
func (p *PostBuild) IsStrict() bool { return p.Strict == nil || *p.Strict }

// validatePostBuild checks what Flux would refuse only when substituting:
// invalid variable names, a reference without a name or of another kind;
// and that the app is built from kustomize or manifests (Flux's
// HelmReleases have no post-build; a chart has values).
func validatePostBuild(where string, a App) []error {
	p := a.PostBuild
	if p == nil {
		return nil
	}
	var errs []error
	if a.Helm != nil {
		errs = append(errs, fmt.Errorf("%s: postBuild applies to kustomize and manifests apps; a Helm chart takes values", where))
	}
	switch p.SubstituteStrategy {
	case "", SubstituteWithVariables, SubstituteAlways:
	default:
		errs = append(errs, fmt.Errorf("%s: postBuild.substituteStrategy must be %s or %s, got %q", where, SubstituteWithVariables, SubstituteAlways, p.SubstituteStrategy))
	}
	errs = append(errs, checkVarNames(where+": postBuild.substitute", p.Substitute)...)
	for i, r := range p.SubstituteFrom {
		at := fmt.Sprintf("%s: postBuild.substituteFrom[%d]", where, i)
		if r.Kind != "ConfigMap" && r.Kind != "Secret" {
			errs = append(errs, fmt.Errorf("%s: kind must be ConfigMap or Secret, got %q", at, r.Kind))
		}
		if len(validation.IsDNS1123Subdomain(r.Name)) > 0 {
			errs = append(errs, fmt.Errorf("%s: name %q is not a valid object name", at, r.Name))
		}
		if r.Namespace != "" && len(validation.IsDNS1123Label(r.Namespace)) > 0 {
			errs = append(errs, fmt.Errorf("%s: namespace %q is not a valid namespace", at, r.Namespace))
		}
	}
	return errs
}

// checkVarNames refuses names Flux would refuse.
func checkVarNames(where string, vars map[string]string) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if !varName.MatchString(k) {
			errs = append(errs, fmt.Errorf("%s: variable name %q is invalid: it must match %s", where, k, varName))
		}
	}
	return errs
}

// ReadsClusterVars reports whether the app's post-build reads variables
// from objects of the cluster (substituteFrom): objects an app it depends
// on may deliver, so that a run renders it after those apps and a new
// revision that changes them changes it too (docs/postbuild.md).
func (a *App) ReadsClusterVars() bool {
	return a.PostBuild != nil && len(a.PostBuild.SubstituteFrom) > 0
}
