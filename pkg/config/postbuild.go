package config

import (
	"cmp"
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

// ValuesReference names a key of a ConfigMap or Secret of the cluster
// that holds Helm values, as a Flux HelmRelease's valuesFrom entry. It is
// read with the app's identity when deliver diffs or applies (an object a
// dependency renders in the same run is taken from that render); deliver
// render, which reads no cluster, leaves it out. Values from a Secret are
// masked in every output.
type ValuesReference struct {
	SubstituteReference `yaml:",inline"`
	// ValuesKey is the data key holding the values. Default "values.yaml".
	ValuesKey string `yaml:"valuesKey,omitempty" json:"valuesKey,omitempty"`
	// TargetPath, when set, is where the key's value goes, as
	// --set TARGETPATH=VALUE (a quoted value as --set-string), instead of
	// the key holding a YAML document of values.
	TargetPath string `yaml:"targetPath,omitempty" json:"targetPath,omitempty"`
}

// DefaultValuesKey is ValuesReference's default key, Flux's.
const DefaultValuesKey = "values.yaml"

// Key is the data key holding the values.
func (r ValuesReference) Key() string {
	if r.ValuesKey == "" {
		return DefaultValuesKey
	}
	return r.ValuesKey
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
		errs = append(errs, checkObjectRef(fmt.Sprintf("%s: postBuild.substituteFrom[%d]", where, i), r)...)
	}
	return errs
}

// validateValuesFrom checks a Helm app's valuesFrom as Flux's API does.
func validateValuesFrom(where string, refs []ValuesReference) []error {
	var errs []error
	for i, r := range refs {
		at := fmt.Sprintf("%s: helm.valuesFrom[%d]", where, i)
		errs = append(errs, checkObjectRef(at, r.SubstituteReference)...)
		if r.ValuesKey != "" && len(validation.IsConfigMapKey(r.ValuesKey)) > 0 {
			errs = append(errs, fmt.Errorf("%s: valuesKey %q is not a valid data key", at, r.ValuesKey))
		}
	}
	return errs
}

// checkObjectRef checks a reference to a ConfigMap or Secret.
func checkObjectRef(at string, r SubstituteReference) []error {
	var errs []error
	if r.Kind != "ConfigMap" && r.Kind != "Secret" {
		errs = append(errs, fmt.Errorf("%s: kind must be ConfigMap or Secret, got %q", at, r.Kind))
	}
	if len(validation.IsDNS1123Subdomain(r.Name)) > 0 {
		errs = append(errs, fmt.Errorf("%s: name %q is not a valid object name", at, r.Name))
	}
	if r.Namespace != "" && len(validation.IsDNS1123Label(r.Namespace)) > 0 {
		errs = append(errs, fmt.Errorf("%s: namespace %q is not a valid namespace", at, r.Namespace))
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

// ReadsClusterVars reports whether the app's render reads objects of the
// cluster (ClusterRefs): objects an app it depends on may deliver, so that
// a run renders it after those apps and a new revision that changes them
// changes it too (docs/postbuild.md).
func (a *App) ReadsClusterVars() bool {
	return len(a.ClusterRefs()) > 0
}

// ClusterRefs are the ConfigMaps and Secrets of the cluster the app's
// render reads: its post-build's substituteFrom, or its chart's
// valuesFrom; each in the app's namespace unless it names one.
func (a *App) ClusterRefs() []SubstituteReference {
	var refs []SubstituteReference
	if a.PostBuild != nil {
		refs = append(refs, a.PostBuild.SubstituteFrom...)
	}
	if a.Helm != nil {
		for _, r := range a.Helm.ValuesFrom {
			refs = append(refs, r.SubstituteReference)
		}
	}
	for i := range refs {
		refs[i].Namespace = cmp.Or(refs[i].Namespace, a.Namespace)
	}
	return refs
}
