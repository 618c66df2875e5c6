package render

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/fluxcd/pkg/envsubst"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// SubstituteKey is the label or annotation that, set to
// SubstituteDisabled, leaves an object out of the post-build
// substitution: Flux's, so that a repository written for Flux keeps its
// meaning (a ConfigMap holding a shell script with ${HOME} in it).
const (
	SubstituteKey      = "kustomize.toolkit.fluxcd.io/substitute"
	SubstituteDisabled = "disabled"
)

// PostBuild is Flux's post-build variable substitution (a Kustomization's
// spec.postBuild): after an app is built, every ${var} in its objects is
// replaced with the value of var, with the bash string functions
// github.com/fluxcd/pkg/envsubst implements (${var:=default},
// ${var/a/b}, ${var:0:8}, ...). As Flux, each object is written as YAML
// from its JSON, substituted as text and read back, so a value put where
// the YAML had a plain ${var} is read by its YAML type (replicas:
// ${replicas} becomes a number) whatever quotes the source file had, and
// $${var} leaves ${var}. TestSubstituteAsFlux compares it with Flux's own
// function over a generated corpus.
type PostBuild struct {
	// Vars are the variables. Names match [_a-zA-Z][_a-zA-Z0-9]*;
	// newlines in values are dropped, as Flux does.
	Vars map[string]string
	// Strict makes a ${var} without a default whose var is not in Vars an
	// error, as Flux's StrictPostBuildSubstitutions feature gate (on by
	// default since kustomize-controller v1.9). Otherwise it becomes "".
	Strict bool
	// Always substitutes even when Vars is empty, so that defaults apply
	// (Flux's substituteStrategy: Always). Otherwise an empty Vars
	// leaves the objects as they are (WithVariables, Flux's default).
	Always bool
}

// varName is what Flux accepts as a variable name.
var varName = regexp.MustCompile(`^[_[:alpha:]][_[:alpha:][:digit:]]*$`)

// ValidVarName reports whether name can be a post-build variable.
func ValidVarName(name string) bool { return varName.MatchString(name) }

// substitute replaces the variables in every object and hook of set, but
// those marked with SubstituteKey. Errors name the object and its origin;
// none carries a value (envsubst's errors name the variable only).
func (p *PostBuild) substitute(set *object.Set) error {
	if len(p.Vars) == 0 && !p.Always {
		return nil
	}
	// An invalid name is an error once an object is to be substituted,
	// as in Flux, which checks the names object by object.
	var nameErr error
	vars := make(map[string]string, len(p.Vars))
	for _, k := range slices.Sorted(maps.Keys(p.Vars)) {
		if !ValidVarName(k) && nameErr == nil {
			nameErr = fmt.Errorf("post-build: variable name %q is invalid: it must match %s", k, varName)
		}
		vars[k] = strings.ReplaceAll(p.Vars[k], "\n", "")
	}
	mapping := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok || !p.Strict
	}
	for _, list := range [][]*object.Object{set.Objects, set.Hooks} {
		for _, o := range list {
			if o.GetLabels()[SubstituteKey] == SubstituteDisabled || o.GetAnnotations()[SubstituteKey] == SubstituteDisabled {
				continue
			}
			if nameErr != nil {
				return nameErr
			}
			m, err := substituteObject(o.Object, mapping)
			if err != nil {
				return fmt.Errorf("%s: %s: post-build substitution: %w", originString(o.Origin), object.HookID(o.Unstructured), err)
			}
			u := &unstructured.Unstructured{Object: m}
			if err := validate(u); err != nil {
				return fmt.Errorf("%s: after post-build substitution: %w", originString(o.Origin), err)
			}
			o.Unstructured = u
		}
	}
	return nil
}

// substituteObject is Flux's varSubstitution on one object: YAML written
// from the object's JSON (Flux's resource.AsYAML), substituted, and read
// back through JSON.
func substituteObject(obj map[string]any, mapping func(string) (string, bool)) (map[string]any, error) {
	doc, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	text, err := yaml.JSONToYAML(doc)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	out, err := envsubst.Eval(string(text), mapping)
	if err != nil {
		return nil, err
	}
	doc, err = yaml.YAMLToJSON([]byte(out))
	if err != nil {
		// The YAML the values made is not YAML (a value with a quote
		// closing a quoted scalar); the text holds values, and is not
		// in the message.
		return nil, fmt.Errorf("the substituted object is not valid YAML")
	}
	m, err := decodeJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("the substituted object is not an object")
	}
	return m, nil
}
