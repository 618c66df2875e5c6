package render

import (
	"encoding/json"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// MarshalYAML returns what sigs.k8s.io/yaml.Marshal(obj) returns, byte for
// byte, for the JSON-like values of a Kubernetes object (maps, slices,
// strings, numbers, booleans, nil), without its round trip: that function
// writes JSON, parses the JSON back with go.yaml.in/yaml/v2 and writes the
// result as YAML. MarshalYAML builds the values that parse would give
// (invalid UTF-8 as U+FFFD, each number as YAML reads the number JSON
// writes) and writes them with the same go.yaml.in/yaml/v2. Any other value
// goes through sigs.k8s.io/yaml.Marshal. It is about twice as fast; for
// printing many objects, such as deliver render does. Kept by measurement:
// with unmarshalObject, 9-15% of a Helm chart's render end to end against
// the library calls (docs/performance.md, "No hand-written YAML parser or
// writer").
func MarshalYAML(obj map[string]any) ([]byte, error) {
	if v, ok := yamlValue(obj, 0); ok {
		return yamlv2.Marshal(v)
	}
	return yaml.Marshal(obj)
}

// yamlValue converts v as json.Marshal followed by a YAML parse would.
func yamlValue(v any, depth int) (any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	switch v := v.(type) {
	case nil, bool:
		return v, true
	case string:
		return jsonString(v), true
	case float64, float32, int, int64, int32, int16, int8, uint, uint64, uint32, uint16, uint8:
		// Numbers are few in an object: the exact text JSON writes,
		// read by the same YAML parser.
		text, err := json.Marshal(v)
		if err != nil {
			return nil, false // NaN, ±Inf: sigs.k8s.io/yaml.Marshal fails
		}
		var out any
		if err := yamlv2.Unmarshal(text, &out); err != nil {
			return nil, false
		}
		return out, true
	case map[string]any:
		out := make(map[any]any, len(v))
		for k, x := range v {
			if jsonString(k) != k {
				return nil, false // json.Marshal would rewrite the key; two might collide
			}
			y, ok := yamlValue(x, depth+1)
			if !ok {
				return nil, false
			}
			out[k] = y
		}
		return out, true
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			y, ok := yamlValue(x, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = y
		}
		return out, true
	}
	return nil, false
}
