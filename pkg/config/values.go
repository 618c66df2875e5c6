package config

import (
	"fmt"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// Values are Helm values written inline in deliver.yaml (an app's
// helm.values, an environment's values).
//
// They are read as Helm reads a values file given with -f (and as Flux and
// Argo CD pass inline values to Helm): by sigs.k8s.io/yaml, from the text
// written. deliver.yaml itself is read by yaml.v3, whose YAML 1.2 reading
// of untyped values differs from Helm's, and a chart prints what it is
// given: `yes` would stay the string "yes" where Helm has true, 1000000
// the integer where Helm has the float a template prints as 1e+06, and a
// date would become a time.Time printed as "2001-12-14 00:00:00 +0000
// UTC". The same values must render the same inline and in a file
// (TestInlineValuesReadAsHelm compares them with Helm's own reading).
type Values map[string]any

// maxValuesNodes bounds the nodes of one values mapping once its aliases
// are expanded: the text is re-read by another parser, which must not
// be handed a billion laughs.
const maxValuesNodes = 1 << 20

// UnmarshalYAML implements yaml.Unmarshaler: the mapping is written back
// as YAML, as it was written (yaml.v3 keeps each scalar's text and style),
// and read by sigs.k8s.io/yaml.
func (v *Values) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*v = nil
		return nil
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: values: want a mapping", n.Line)
	}
	// yaml.v3's own decoding refuses an alias that contains itself and
	// excessive aliasing (a billion laughs), before they are expanded.
	var check any
	if err := n.Decode(&check); err != nil {
		return fmt.Errorf("line %d: values: %w", n.Line, err)
	}
	// Anchors outside the mapping (a YAML anchor in defaults used by an
	// app) would be undefined in its text alone: aliases are expanded.
	budget := maxValuesNodes
	expanded, err := expandAliases(n, &budget)
	if err != nil {
		return fmt.Errorf("line %d: values: %w", n.Line, err)
	}
	text, err := yaml.Marshal(expanded)
	if err != nil {
		return fmt.Errorf("line %d: values: %w", n.Line, err)
	}
	m := map[string]any{}
	if err := sigsyaml.Unmarshal(text, &m); err != nil {
		return fmt.Errorf("line %d: values: %w", n.Line, err)
	}
	*v = m
	return nil
}

// expandAliases returns a copy of n with every alias replaced by a copy
// of what it names, and no anchors; budget counts the nodes left.
func expandAliases(n *yaml.Node, budget *int) (*yaml.Node, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("more than %d nodes once aliases are expanded", maxValuesNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: unknown alias %q", n.Line, n.Value)
		}
		return expandAliases(n.Alias, budget)
	}
	c := *n
	c.Anchor = ""
	if c.Kind == yaml.ScalarNode && c.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 && (c.Tag == "" || c.Tag == "!!str") {
		// A block scalar is a string: written double-quoted, its value
		// cannot change. yaml.v3 writes some folded values back in a
		// form that reads differently ("a\n  b" folded gains a line).
		c.Style = c.Style&^(yaml.LiteralStyle|yaml.FoldedStyle) | yaml.DoubleQuotedStyle
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, sub := range n.Content {
		e, err := expandAliases(sub, budget)
		if err != nil {
			return nil, err
		}
		c.Content[i] = e
	}
	return &c, nil
}

// JSONSchema describes Values in deliver.schema.json: any mapping.
func (Values) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", Description: "Helm values, read as Helm reads a values file given with -f"}
}
