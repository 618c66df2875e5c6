package config

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// JSONSchema describes Duration in the generated schema.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, Description: "a duration such as 90s or 5m"}
}

// Schema returns the JSON Schema of deliver.yaml, generated from the Go
// types so that it cannot drift from what Parse accepts. Editors use it
// through a `# yaml-language-server: $schema=...` comment.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{
		// Parse refuses unknown fields; so does the schema.
		AllowAdditionalProperties:  false,
		RequiredFromJSONSchemaTags: false,
		ExpandedStruct:             true,
	}
	s := r.Reflect(&Config{})
	s.ID = "https://deliver.dev/schemas/v1alpha1/deliver.json"
	s.Title = "deliver.yaml"
	return json.MarshalIndent(s, "", "  ")
}
