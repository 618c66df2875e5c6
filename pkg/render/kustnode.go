package render

import (
	"math"
	"strconv"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/api/resource"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// maxNodeDepth bounds the nesting resourceMap converts; deeper resources
// take the JSON path.
const maxNodeDepth = 1000

// resourceMap returns a built resource as the map json.Unmarshal gives for
// its JSON (resource.MarshalJSON), read straight from its YAML node tree.
// MarshalJSON encodes the tree as YAML text, parses that back and encodes
// it as JSON, which deliver then parsed again: a tenth of rendering a small
// overlay. Only what converts unambiguously is converted here: strings,
// decimal integers and floats, true and false, null, mappings with string
// keys, sequences. Anything else (timestamps, binary, hexadecimal or octal
// integers, infinities, aliases, merge keys, custom tags, duplicate keys,
// invalid UTF-8, very deep nesting) makes resourceMap give up, and the
// caller takes the JSON path. TestResourceMap compares the two on every
// kustomization of the test data and on edge cases.
func resourceMap(res *resource.Resource) (m map[string]any, ok bool) {
	defer func() {
		if recover() != nil {
			m, ok = nil, false
		}
	}()
	n := res.YNode()
	if n == nil || n.Kind != kyaml.MappingNode {
		return nil, false
	}
	v, ok := nodeValue(n, 0)
	if !ok {
		return nil, false
	}
	m, ok = v.(map[string]any)
	return m, ok
}

// nodeValue converts n as json.Unmarshal would read the JSON of its YAML.
func nodeValue(n *kyaml.Node, depth int) (any, bool) {
	if depth > maxNodeDepth {
		return nil, false
	}
	switch n.Kind {
	case kyaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != kyaml.ScalarNode || k.ShortTag() != kyaml.NodeTagString || !utf8.ValidString(k.Value) {
				return nil, false
			}
			if _, dup := m[k.Value]; dup {
				return nil, false // yaml.v3 refuses it: the JSON path reports the error
			}
			v, ok := nodeValue(n.Content[i+1], depth+1)
			if !ok {
				return nil, false
			}
			m[k.Value] = v
		}
		return m, true
	case kyaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, item := range n.Content {
			v, ok := nodeValue(item, depth+1)
			if !ok {
				return nil, false
			}
			s = append(s, v)
		}
		return s, true
	case kyaml.ScalarNode:
		return scalarValue(n)
	}
	return nil, false // aliases, documents
}

// scalarValue converts a scalar by its resolved tag, as yaml.v3 decodes it
// and JSON then carries it (every number a float64).
func scalarValue(n *kyaml.Node) (any, bool) {
	switch n.ShortTag() {
	case kyaml.NodeTagString:
		if !utf8.ValidString(n.Value) {
			return nil, false // JSON would replace the invalid bytes
		}
		return n.Value, true
	case kyaml.NodeTagBool:
		switch n.Value {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	case kyaml.NodeTagNull:
		switch n.Value {
		case "", "~", "null":
			return nil, true
		}
	case kyaml.NodeTagInt:
		if !decimalInt(n.Value) {
			return nil, false
		}
		// Through JSON an integer becomes the float64 nearest its digits
		// ("-0" an integer zero, so 0).
		i, err := strconv.ParseInt(n.Value, 10, 64)
		return float64(i), err == nil
	case kyaml.NodeTagFloat:
		if !decimalFloat(n.Value) {
			return nil, false
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, false
		}
		return f, true
	}
	return nil, false
}

// decimalInt reports whether s is a plain decimal integer of at most 18
// digits (which int64 holds whatever the digits): no sign but "-", no base
// prefix, no underscores, no leading zeros.
func decimalInt(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	return skipDigits(s, 0) == len(s)
}

// decimalFloat reports whether s is digits, an optional fraction and an
// optional exponent, with an optional leading "-": no ".5", "1.", ".inf"
// or "+1".
func decimalFloat(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	j := skipDigits(s, i)
	if j == i {
		return false
	}
	if i = j; i < len(s) && s[i] == '.' {
		if j = skipDigits(s, i+1); j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if j = skipDigits(s, i); j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

// skipDigits returns the index of the first non-digit of s at or after i.
func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
