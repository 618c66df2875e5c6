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
		data, err := refData(ctx, cluster, deps, obj, ref.Optional, sec, reads, fromRun)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if data == nil {
			continue // optional, and not there
		}
		v, ok := data[ref.Key()]
		if !ok {
			if ref.Optional {
				continue
			}
			return nil, fmt.Errorf("%s: %s: no key %q", where, obj, ref.Key())
		}
		merged, doc, err := mergeValuesFrom(out, ref, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: key %q: %w", where, obj, ref.Key(), err)
		}
		out = merged
		if obj.kind == "Secret" {
			// Each value of the document, as the templates will print it:
			// objectData registered the key's value whole (all of it, at
			// a targetPath). Not the merged values: those of ConfigMaps
			// stay readable.
			addValueLeaves(sec, doc)
		}
	}
	return out, nil
}

// mergeValuesFrom merges the value v of one valuesFrom reference into
// values: at its targetPath, or as a document of values, which it
// returns too (doc; nil for a targetPath).
func mergeValuesFrom(values map[string]any, ref config.ValuesReference, v string) (merged, doc map[string]any, err error) {
	if ref.TargetPath != "" {
		// As Flux: a value in quotes is a string (their quotes dropped),
		// anything else is typed as --set types it.
		single := len(v) >= 2 && strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'")
		double := len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`)
		if single || double {
			return values, nil, strvals.ParseIntoString(ref.TargetPath+"="+strings.Trim(v, `'"`), values)
		}
		return values, nil, strvals.ParseInto(ref.TargetPath+"="+v, values)
	}
	vals, err := chartutil.ReadValues([]byte(v))
	if err != nil {
		return nil, nil, err
	}
	doc = vals.AsMap()
	return render.MergeValues(values, doc), doc, nil
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
