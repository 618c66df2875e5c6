package pipeline

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
)

// postBuild makes the render's post-build substitution of app a: the
// variables of its substituteFrom ConfigMaps and Secrets, read through
// cluster (the app's identity) in order, then its substitute over them,
// as Flux's kustomize-controller merges them. Without a cluster (deliver
// render) the references are left out and undefined variables are not
// errors, since they may be defined there. Values read from Secrets are
// given to the redactor before any template sees them. Each object read
// is an input of the app by the version read (render.Reads.AddObject: its
// uid and resourceVersion, or absent), never by its data: a later run
// renders the app again when one of them changed, and plans it from its
// inventory otherwise.
func postBuild(ctx context.Context, a config.ResolvedApp, cluster *render.Lookup, sec *runSecrets, reads *render.Reads) (*render.PostBuild, error) {
	pb := a.PostBuild
	if pb == nil {
		return nil, nil
	}
	out := &render.PostBuild{
		Vars:   map[string]string{},
		Strict: pb.IsStrict(),
		Always: pb.SubstituteStrategy == config.SubstituteAlways,
	}
	if len(pb.SubstituteFrom) > 0 && cluster == nil {
		out.Strict = false
	}
	for i, ref := range pb.SubstituteFrom {
		if cluster == nil {
			break
		}
		where := fmt.Sprintf("deliver.yaml: apps.%s.postBuild.substituteFrom[%d]", a.Name, i)
		vars, err := readVars(ctx, cluster.Client, ref, a.Namespace, sec, reads)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		maps.Copy(out.Vars, vars)
	}
	maps.Copy(out.Vars, pb.Substitute)
	return out, nil
}

// varsObject is a ConfigMap or Secret a post-build reads variables from,
// written Kind/namespace/name in messages and in the render's reads
// (render.ReadObject), which the digest of the app's inputs parses back.
type varsObject struct{ kind, namespace, name string }

func (o varsObject) String() string { return o.kind + "/" + o.namespace + "/" + o.name }

// resource is the object's API resource.
func (o varsObject) resource() schema.GroupVersionResource {
	if o.kind == "Secret" {
		return schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	}
	return schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
}

// parseVarsObject reads what varsObject.String wrote.
func parseVarsObject(s string) (varsObject, error) {
	kind, rest, _ := strings.Cut(s, "/")
	ns, name, _ := strings.Cut(rest, "/")
	if kind != "ConfigMap" && kind != "Secret" || ns == "" || name == "" {
		return varsObject{}, fmt.Errorf("object %s: not a ConfigMap or Secret", s)
	}
	return varsObject{kind, ns, name}, nil
}

// readVars reads the data of one ConfigMap or Secret as variables.
func readVars(ctx context.Context, client dynamic.Interface, ref config.SubstituteReference, namespace string, sec *runSecrets, reads *render.Reads) (map[string]string, error) {
	obj := varsObject{ref.Kind, cmp.Or(ref.Namespace, namespace), ref.Name}
	id := obj.String()
	u, err := client.Resource(obj.resource()).Namespace(obj.namespace).Get(ctx, obj.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && ref.Optional {
		reads.AddObject(id, render.ObjectAbsent)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	reads.AddObject(id, render.ObjectVersion(string(u.GetUID()), u.GetResourceVersion()))
	data, _, err := unstructured.NestedStringMap(u.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("%s: data: %w", id, err)
	}
	vars := make(map[string]string, len(data))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if !render.ValidVarName(k) {
			return nil, fmt.Errorf("%s: key %q is not a valid variable name (letters, digits and _, not first a digit)", id, k)
		}
		v := data[k]
		if ref.Kind == "Secret" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("%s: key %q: not base64", id, k)
			}
			v = string(b)
			// Registered as it is and as substituted (Flux drops
			// newlines from values).
			sec.red.Add(v)
			sec.red.Add(strings.ReplaceAll(v, "\n", ""))
		}
		vars[k] = v
	}
	return vars, nil
}
