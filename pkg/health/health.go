// Package health decides whether a custom resource is ready with the CEL
// expressions of deliver.yaml's healthChecks, for the kinds whose
// readiness kstatus cannot tell (an operator's resource whose status has
// no Ready condition, or one whose Failed state kstatus calls Current).
//
// The rules have the shape of Flux's Kustomization healthCheckExprs and
// are evaluated in the same order (Flux RFC 0009): a status whose
// observedGeneration is not the object's generation is in progress; then
// inProgress, failed and current are tried in that order and the first
// that is true decides; when none is, the object is in progress.
package health

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// CostLimit bounds the work of one evaluation, in CEL's cost units: the
// per-expression limit the Kubernetes API server gives a CRD's
// validation rules. An expression that exceeds it (a comprehension over a
// huge list, nested several deep) fails to evaluate instead of holding
// up the wait.
const CostLimit = 1_000_000

// Check is one rule of healthChecks: CEL expressions over the live object
// of one apiVersion and kind. The object is bound as self; its top-level
// fields apiVersion, kind, metadata, spec and status are bound under their
// own names too, as Flux binds them, so that Flux's expressions work as
// they are.
type Check struct {
	// APIVersion and Kind select the objects, as written in their
	// manifests ("example.com/v1", "Widget").
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	// Current is true once the object is ready. Required.
	Current string `yaml:"current" json:"current"`
	// InProgress, when true, says the object is not ready yet, whatever
	// Failed and Current say. Optional.
	InProgress string `yaml:"inProgress,omitempty" json:"inProgress,omitempty"`
	// Failed, when true, says the object will not become ready: the wait
	// stops at once. Optional.
	Failed string `yaml:"failed,omitempty" json:"failed,omitempty"`
}

// Field names one of a Check's expressions.
type Field string

// The closed set of fields, in evaluation order.
const (
	FieldInProgress Field = "inProgress"
	FieldFailed     Field = "failed"
	FieldCurrent    Field = "current"
)

// Verdict is a rule's decision on one object.
type Verdict struct {
	// Status is Current, InProgress or Failed.
	Status status.Status
	// Field and Expr are the expression that decided (or failed to
	// evaluate); empty when the generation check decided or no
	// expression was true.
	Field Field
	Expr  string
	// Err is an expression's evaluation error (a field read without
	// has() that the object lacks, a non-bool result, the cost limit):
	// the object then counts as in progress, since an operator may not
	// have written its status yet.
	Err error
	// Message says why, naming the expression.
	Message string
}

// Rules are compiled Checks, looked up by apiVersion and kind. The zero
// value and nil have no rules.
type Rules struct {
	byKind map[schema.GroupVersionKind]*rule
}

type rule struct {
	check Check
	exprs []expr // in evaluation order, the unset ones left out
}

type expr struct {
	field Field
	text  string
	prog  cel.Program
}

// variables are the names an expression may use besides self.
func variables() []string { return []string{"apiVersion", "kind", "metadata", "spec", "status"} }

// Compile checks and compiles checks. Errors name the check by where the
// list is, its index and the field (`app "web": healthChecks[1].current:
// ...`); every error is reported, not just the first.
func Compile(where string, checks []Check) (*Rules, error) {
	if len(checks) == 0 {
		return &Rules{}, nil
	}
	opts := []cel.EnvOption{
		cel.Variable("self", cel.DynType),
		// Numbers decoded from JSON are int64 or float64; comparing the
		// two must not be a type error.
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Lists(),
	}
	for _, v := range variables() {
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	r := &Rules{byKind: map[schema.GroupVersionKind]*rule{}}
	var errs []error
	for i, c := range checks {
		where := fmt.Sprintf("%s[%d]", where, i)
		gv, err := schema.ParseGroupVersion(c.APIVersion)
		switch {
		case c.APIVersion == "" || err != nil:
			errs = append(errs, fmt.Errorf("%s.apiVersion: %q is not an apiVersion like example.com/v1", where, c.APIVersion))
		case c.Kind == "":
			errs = append(errs, fmt.Errorf("%s.kind is required", where))
		}
		if c.Current == "" {
			errs = append(errs, fmt.Errorf("%s.current is required", where))
		}
		gvk := gv.WithKind(c.Kind)
		if prev, ok := r.byKind[gvk]; ok && c.Kind != "" {
			errs = append(errs, fmt.Errorf("%s: a second rule for %s %s (one rule per apiVersion and kind)", where, prev.check.APIVersion, prev.check.Kind))
		}
		ru := &rule{check: c}
		for _, f := range []struct {
			field Field
			text  string
		}{{FieldInProgress, c.InProgress}, {FieldFailed, c.Failed}, {FieldCurrent, c.Current}} {
			if f.text == "" {
				continue
			}
			prog, err := compile(env, f.text)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", where, f.field, err))
				continue
			}
			ru.exprs = append(ru.exprs, expr{field: f.field, text: f.text, prog: prog})
		}
		r.byKind[gvk] = ru
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// compile type-checks text (an unknown variable or a syntax error fails
// here, not while waiting) and makes its program, bounded by CostLimit.
func compile(env *cel.Env, text string) (cel.Program, error) {
	ast, iss := env.Compile(text)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%s", strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("%q is of type %s, want bool", text, t)
	}
	prog, err := env.Program(ast,
		cel.CostLimit(CostLimit),
		// Let a cancelled wait stop a long comprehension.
		cel.InterruptCheckFrequency(100),
	)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", text, err)
	}
	return prog, nil
}

// Len is the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.byKind)
}

// Check returns the rule for objects of gvk, as written.
func (r *Rules) Check(gvk schema.GroupVersionKind) (Check, bool) {
	if r == nil {
		return Check{}, false
	}
	ru, ok := r.byKind[gvk]
	if !ok {
		return Check{}, false
	}
	return ru.check, true
}

// Evaluate decides on u with the rule for its apiVersion and kind; ok is
// false when there is none (kstatus decides then).
func (r *Rules) Evaluate(ctx context.Context, u *unstructured.Unstructured) (v Verdict, ok bool) {
	if r == nil {
		return Verdict{}, false
	}
	ru, ok := r.byKind[u.GroupVersionKind()]
	if !ok {
		return Verdict{}, false
	}
	return ru.evaluate(ctx, u.Object), true
}

func (ru *rule) evaluate(ctx context.Context, obj map[string]any) Verdict {
	// As Flux (and kstatus): a status not yet written for the current
	// spec says nothing about it.
	if og, ok, _ := unstructured.NestedInt64(obj, "status", "observedGeneration"); ok {
		if g, ok, _ := unstructured.NestedInt64(obj, "metadata", "generation"); ok && g != og {
			return Verdict{Status: status.InProgressStatus,
				Message: fmt.Sprintf("status.observedGeneration %d is not metadata.generation %d", og, g)}
		}
	}
	vars := map[string]any{"self": obj}
	for _, name := range variables() {
		if v, ok := obj[name]; ok {
			vars[name] = v
		}
	}
	for _, e := range ru.exprs {
		out, _, err := e.prog.ContextEval(ctx, vars)
		if err == nil {
			if _, isBool := out.(types.Bool); !isBool {
				// Not the value: it may be a Secret's.
				err = fmt.Errorf("result is of type %s, want bool", out.Type())
			}
		}
		if err != nil {
			return Verdict{Status: status.InProgressStatus, Field: e.field, Expr: e.text, Err: err,
				Message: fmt.Sprintf("health check %s `%s` did not evaluate: %v", e.field, e.text, err)}
		}
		if out == types.True {
			return Verdict{Status: e.field.Status(), Field: e.field, Expr: e.text,
				Message: fmt.Sprintf("health check %s `%s` is true", e.field, e.text)}
		}
	}
	return Verdict{Status: status.InProgressStatus,
		Message: fmt.Sprintf("health check: no expression is true yet (current `%s`)", ru.check.Current)}
}

// Status is the status an expression of f decides when it is true.
func (f Field) Status() status.Status {
	switch f {
	case FieldFailed:
		return status.FailedStatus
	case FieldCurrent:
		return status.CurrentStatus
	}
	return status.InProgressStatus
}

// Merge returns the defaults' rules followed by the app's, an app's rule
// replacing the defaults' rule for the same apiVersion and kind.
func Merge(defaults, app []Check) []Check {
	if len(defaults) == 0 {
		return app
	}
	mine := map[[2]string]bool{}
	for _, c := range app {
		mine[[2]string{c.APIVersion, c.Kind}] = true
	}
	var out []Check
	for _, c := range defaults {
		if !mine[[2]string{c.APIVersion, c.Kind}] {
			out = append(out, c)
		}
	}
	return append(out, app...)
}
