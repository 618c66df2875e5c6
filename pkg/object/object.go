// Package object holds the data that flows between deliver's stages: the
// desired objects of an app, each with the place it came from.
package object

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ID identifies an object in a cluster. Version is left out on purpose: the
// same object served at two versions is one object.
type ID struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String formats the ID the way deliver names objects in messages:
// Kind/namespace/name, or Kind/name for cluster-scoped objects.
func (id ID) String() string {
	if id.Namespace == "" {
		return id.Kind + "/" + id.Name
	}
	return id.Kind + "/" + id.Namespace + "/" + id.Name
}

// GroupKind returns the ID's group and kind.
func (id ID) GroupKind() schema.GroupKind { return schema.GroupKind{Group: id.Group, Kind: id.Kind} }

// IDOf returns the ID of u.
func IDOf(u *unstructured.Unstructured) ID {
	gvk := u.GroupVersionKind()
	return ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Origin says where a desired object came from, for error messages and diffs.
type Origin struct {
	// App is the name of the app in deliver.yaml.
	App string `json:"app,omitempty"`
	// File is the path relative to the repository root.
	File string `json:"file,omitempty"`
	// Doc is the 0-based index of the YAML document inside File.
	Doc int `json:"doc,omitempty"`
	// Template is the Helm chart template that produced the object.
	Template string `json:"template,omitempty"`
}

// String formats the origin as file#doc or chart template.
func (o Origin) String() string {
	var b strings.Builder
	if o.App != "" {
		b.WriteString(o.App + ": ")
	}
	switch {
	case o.Template != "":
		b.WriteString(o.Template)
	case o.File != "":
		fmt.Fprintf(&b, "%s#%d", o.File, o.Doc)
	}
	return b.String()
}

// Object is one desired object and its origin.
type Object struct {
	*unstructured.Unstructured
	Origin Origin
}

// ID returns the object's identity.
func (o *Object) ID() ID { return IDOf(o.Unstructured) }

// Set is the rendered desired state of an app: ordinary objects, and hooks
// kept apart because they run at their own moment.
type Set struct {
	Objects []*Object
	Hooks   []*Object
}

// Len returns the number of objects and hooks in the set.
func (s *Set) Len() int { return len(s.Objects) + len(s.Hooks) }
