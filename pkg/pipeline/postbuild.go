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
//
// An object that an app a depends on renders in the same run is taken
// from that render (deps), not from the cluster: it is what the cluster
// will hold when a is applied, after its dependencies, as Flux builds a
// Kustomization once its dependencies are ready. Such objects are noted
// in *fromRun; their versions are recorded once the dependencies are
// applied (runInputs).
func postBuild(ctx context.Context, a config.ResolvedApp, cluster *render.Lookup, deps depObjects, sec *runSecrets, reads *render.Reads, fromRun *[]runVars) (*render.PostBuild, error) {
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
		obj := refObject(ref, a.Namespace)
		data, err := refData(ctx, cluster, deps, obj, ref.Optional, sec, reads, fromRun)
		var vars map[string]string
		if err == nil && data != nil {
			vars, err = dataVars(obj, data, sec)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		maps.Copy(out.Vars, vars)
	}
	maps.Copy(out.Vars, pb.Substitute)
	return out, nil
}

// runVars are the data a render took from a ConfigMap or Secret that app,
// a dependency, rendered in the same run: a post-build's variables, or a
// chart's valuesFrom.
type runVars struct {
	obj  varsObject
	app  string
	vars map[string]string
}

// depObjects finds the ConfigMaps and Secrets that the dependencies of an
// app render in the run: it waits for their renders (they started first:
// renderAll starts apps in dependency order) and returns the object and
// the app that renders it, nil when none does. The zero value finds none.
type depObjects struct {
	deps []*AppResult
	// rendered is closed when an app's render is over (or skipped), its
	// Set then set or its render failed.
	rendered map[*AppResult]chan struct{}
}

func (d depObjects) find(ctx context.Context, obj varsObject) (*unstructured.Unstructured, string, error) {
	for _, dep := range d.deps {
		select {
		case <-d.rendered[dep]:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
		if dep.Set == nil {
			if dep.Unchanged {
				continue // as deliver left it: the cluster holds its objects
			}
			return nil, "", fmt.Errorf("app %s, a dependency, did not render", dep.Name)
		}
		for _, o := range dep.Set.Objects {
			gvk := o.GroupVersionKind()
			if gvk.Group == "" && gvk.Kind == obj.kind && o.GetName() == obj.name && cmp.Or(o.GetNamespace(), dep.Namespace) == obj.namespace {
				return o.Unstructured, dep.Name, nil
			}
		}
	}
	return nil, "", nil
}

// varsObject is a ConfigMap or Secret a post-build reads variables from,
// written Kind/namespace/name in messages and in the render's reads
// (render.ReadObject), which the digest of the app's inputs parses back.
type varsObject struct{ kind, namespace, name string }

func (o varsObject) String() string { return o.kind + "/" + o.namespace + "/" + o.name }

// refObject is the object ref names, in namespace unless it names one.
func refObject(ref config.SubstituteReference, namespace string) varsObject {
	return varsObject{ref.Kind, cmp.Or(ref.Namespace, namespace), ref.Name}
}

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

// refData is the data of the ConfigMap or Secret obj that a post-build
// or a chart's valuesFrom reads: from the render of a dependency in the
// same run when one renders it (noted in *fromRun), else from the cluster
// (readData: its version recorded in reads); nil when it is optional and
// absent.
func refData(ctx context.Context, cluster *render.Lookup, deps depObjects, obj varsObject, optional bool, sec *runSecrets, reads *render.Reads, fromRun *[]runVars) (map[string]string, error) {
	u, dep, err := deps.find(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	if u == nil {
		return readData(ctx, cluster.Client, obj, optional, sec, reads)
	}
	data, err := objectData(obj, u, sec)
	if err == nil {
		*fromRun = append(*fromRun, runVars{obj: obj, app: dep, vars: data})
	}
	return data, err
}

// readData reads one ConfigMap or Secret of the cluster (liveData),
// recording the version read in reads; nil when it does not exist and is
// optional, its absence recorded.
func readData(ctx context.Context, client dynamic.Interface, obj varsObject, optional bool, sec *runSecrets, reads *render.Reads) (map[string]string, error) {
	u, data, err := liveData(ctx, client, obj, sec)
	if apierrors.IsNotFound(err) && optional {
		reads.AddObject(obj.String(), render.ObjectAbsent)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	reads.AddObject(obj.String(), render.ObjectVersion(string(u.GetUID()), u.GetResourceVersion()))
	return data, nil
}

// liveData reads obj from the cluster through client and returns it with
// its data (objectData). A failed read's error names the object and
// wraps the API's.
func liveData(ctx context.Context, client dynamic.Interface, obj varsObject, sec *runSecrets) (*unstructured.Unstructured, map[string]string, error) {
	u, err := client.Resource(obj.resource()).Namespace(obj.namespace).Get(ctx, obj.name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", obj, err)
	}
	data, err := objectData(obj, u, sec)
	return u, data, err
}

// objectData are the data of a ConfigMap or Secret as the API server
// stores them, so a Secret's stringData (in a rendered one) wins over its
// data. Secret values go to the redactor.
func objectData(obj varsObject, u *unstructured.Unstructured, sec *runSecrets) (map[string]string, error) {
	id := obj.String()
	data, _, err := unstructured.NestedStringMap(u.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("%s: data: %w", id, err)
	}
	out := make(map[string]string, len(data))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		v := data[k]
		if obj.kind == "Secret" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("%s: key %q: not base64", id, k)
			}
			v = string(b)
		}
		out[k] = v
	}
	if obj.kind == "Secret" {
		str, _, err := unstructured.NestedStringMap(u.Object, "stringData")
		if err != nil {
			return nil, fmt.Errorf("%s: stringData: %w", id, err)
		}
		maps.Copy(out, str)
		for _, v := range out {
			sec.red.Add(v)
		}
	}
	return out, nil
}

// dataVars checks that the data keys of obj are variable names, and
// registers a Secret's values as Flux substitutes them (without
// newlines) with the redactor.
func dataVars(obj varsObject, data map[string]string, sec *runSecrets) (map[string]string, error) {
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if !render.ValidVarName(k) {
			return nil, fmt.Errorf("%s: key %q is not a valid variable name (letters, digits and _, not first a digit)", obj, k)
		}
		if obj.kind == "Secret" {
			sec.red.Add(strings.ReplaceAll(data[k], "\n", ""))
		}
	}
	return data, nil
}
