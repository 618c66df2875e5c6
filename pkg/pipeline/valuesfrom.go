package pipeline

import (
	"context"
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"

	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
)

// helmValuesFrom returns the values of app a's helm.valuesFrom merged in
// order, as Flux's helm-controller merges a HelmRelease's: each key's
// YAML document merged over the earlier ones, or with targetPath its
// value set there as --set does (a value in quotes as --set-string); a
// missing object or key is skipped when the reference is optional. The
// objects are read as postBuild reads its substituteFrom: through cluster
// (the app's identity), from the render of a dependency in the same run
// when one renders them (noted in *fromRun), their versions recorded in
// reads; without a cluster (deliver render) none is read. Values from a
// Secret go to the redactor before any template sees them.
func helmValuesFrom(ctx context.Context, a config.ResolvedApp, cluster *render.Lookup, deps depObjects, sec *runSecrets, reads *render.Reads, fromRun *[]runVars) (map[string]any, error) {
	out := map[string]any{}
	if cluster == nil {
		return out, nil
	}
	for i, ref := range a.Helm.ValuesFrom {
		where := fmt.Sprintf("deliver.yaml: apps.%s.helm.valuesFrom[%d]", a.Name, i)
		obj := refObject(ref.SubstituteReference, a.Namespace)
		u, dep, err := deps.find(ctx, obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", where, obj, err)
		}
		var data map[string]string
		if u != nil {
			if data, err = objectData(obj, u, sec); err == nil {
				*fromRun = append(*fromRun, runVars{obj: obj, app: dep, vars: data})
			}
		} else {
			_, data, err = readData(ctx, cluster.Client, obj, ref.Optional, sec, reads)
			if err == nil && data == nil {
				continue // optional, and not there
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		v, ok := data[ref.Key()]
		if !ok {
			if ref.Optional {
				continue
			}
			return nil, fmt.Errorf("%s: %s: no key %q", where, obj, ref.Key())
		}
		if obj.kind == "Secret" && ref.TargetPath == "" {
			// Each value of the document, as the templates will print it:
			// objectData registered the document whole. Read once more
			// here, so that values merged from ConfigMaps stay readable.
			if doc, err := chartutil.ReadValues([]byte(v)); err == nil {
				addValueLeaves(sec, doc.AsMap())
			}
		}
		if out, err = mergeValuesFrom(out, ref, v); err != nil {
			return nil, fmt.Errorf("%s: %s: key %q: %w", where, obj, ref.Key(), err)
		}
	}
	return out, nil
}

// mergeValuesFrom merges the value v of one valuesFrom reference into
// values: at its targetPath, or as a document of values.
func mergeValuesFrom(values map[string]any, ref config.ValuesReference, v string) (map[string]any, error) {
	if ref.TargetPath != "" {
		// As Flux: a value in quotes is a string (their quotes dropped),
		// anything else is typed as --set types it.
		single := len(v) >= 2 && strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'")
		double := len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`)
		if single || double {
			return values, strvals.ParseIntoString(ref.TargetPath+"="+strings.Trim(v, `'"`), values)
		}
		return values, strvals.ParseInto(ref.TargetPath+"="+v, values)
	}
	doc, err := chartutil.ReadValues([]byte(v))
	if err != nil {
		return nil, err
	}
	return render.MergeValues(values, doc.AsMap()), nil
}

// addValueLeaves registers every string and number in values with the
// redactor (a numeric password is printed as its digits).
func addValueLeaves(sec *runSecrets, v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			addValueLeaves(sec, x)
		}
	case []any:
		for _, x := range v {
			addValueLeaves(sec, x)
		}
	case string:
		sec.red.Add(v)
	case int, int64, float64, uint64:
		sec.red.Add(fmt.Sprint(v))
	}
}
