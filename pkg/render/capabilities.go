package render

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
)

// Cluster is the target cluster as `helm install` reads it for a chart's
// .Capabilities, made once (NewCluster) for every chart rendered for it.
type Cluster struct {
	kube        chartutil.KubeVersion
	apiVersions []string // sorted
}

// NewCluster returns the cluster of the API server's version and its
// discovery's answer (discovery.ServerGroupsAndResources), as Helm's
// install builds .Capabilities from them
// (action.Configuration.getCapabilities).
func NewCluster(v version.Info, groups []*metav1.APIGroup, resources []*metav1.APIResourceList) (*Cluster, error) {
	set, err := action.GetVersionSet(servedDiscovery{groups: groups, resources: resources})
	if err != nil {
		return nil, fmt.Errorf("helm: api versions: %w", err)
	}
	return &Cluster{
		// Helm takes the server's strings as they are: a Minor of "28+"
		// (EKS, GKE) or a GitVersion of "v1.28.3-gke.1286000" reach
		// the chart unchanged.
		kube: chartutil.KubeVersion{Version: v.GitVersion, Major: v.Major, Minor: v.Minor},
		// Helm's set comes out of a map, in random order; sorted, a
		// chart that prints it renders the same every time.
		apiVersions: slices.Sorted(slices.Values(set)),
	}, nil
}

// helmCapabilities builds a chart's .Capabilities from the options: the
// cluster's when opts.Cluster is set, as Helm's install builds them
// (action.Configuration.getCapabilities), else the offline ones of `helm
// template` with opts.KubeVersion and opts.APIVersions.
func helmCapabilities(crds []helmDoc, opts HelmOptions) (*chartutil.Capabilities, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	if c := opts.Cluster; c != nil {
		caps.KubeVersion = c.kube
		// helm install creates the chart's crds/ (crds: with
		// IncludeCRDs) before it reads the cluster, so their kinds are
		// in the set the templates see.
		caps.APIVersions = append(slices.Clone(c.apiVersions), crdAPIVersions(crds)...)
	} else {
		kv, err := chartutil.ParseKubeVersion(cmp.Or(opts.KubeVersion, DefaultKubeVersion))
		if err != nil {
			return nil, fmt.Errorf("helm: kube version %q: %w", opts.KubeVersion, err)
		}
		caps.KubeVersion = *kv
		if opts.APIVersions != nil {
			caps.APIVersions = slices.Clone(chartutil.VersionSet(opts.APIVersions))
		} else {
			caps.APIVersions = slices.Clone(caps.APIVersions)
		}
		// Only offline: helm install ignores --api-versions ("this list
		// will be ignored").
		caps.APIVersions = append(caps.APIVersions, opts.ExtraAPIVersions...)
	}
	// The library reports "v3.22"; the CLI of that module version reports
	// the full version.
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "helm.sh/helm/v3" && d.Replace == nil && strings.HasPrefix(d.Version, "v3.") {
				caps.HelmVersion.Version = d.Version
			}
		}
	}
	return caps, nil
}

// servedDiscovery answers Helm's action.GetVersionSet, which turns
// discovery into the API versions a chart sees, from a discovery already
// made (the session's, shared by every app) instead of asking the API
// server again. GetVersionSet calls ServerGroupsAndResources only; the
// interface's other methods are not served (nil: a call would panic, and
// Helm renders behind a recover).
type servedDiscovery struct {
	discovery.ServerResourcesInterface
	groups    []*metav1.APIGroup
	resources []*metav1.APIResourceList
}

// ServerGroupsAndResources implements discovery.ServerResourcesInterface.
func (d servedDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return d.groups, d.resources, nil
}

// crdAPIVersions returns what discovery serves for the CRDs of the chart's
// crds/ folders (and its subcharts': crds, as parsed) once created:
// group/version and group/version/Kind for each served version, and the
// Scale kind of a scale subresource, as discovery lists it. A document
// that is not an apiextensions.k8s.io/v1 CRD adds nothing (helm install
// would fail on it or create something else).
func crdAPIVersions(crds []helmDoc) []string {
	var out []string
	for _, crd := range crds {
		for _, d := range crd.parsed {
			if d["apiVersion"] != "apiextensions.k8s.io/v1" || d["kind"] != "CustomResourceDefinition" {
				continue
			}
			spec, _ := d["spec"].(map[string]any)
			group, _ := spec["group"].(string)
			names, _ := spec["names"].(map[string]any)
			kind, _ := names["kind"].(string)
			versions, _ := spec["versions"].([]any)
			for _, v := range versions {
				v, _ := v.(map[string]any)
				name, _ := v["name"].(string)
				if served, _ := v["served"].(bool); !served || name == "" || group == "" || kind == "" {
					continue
				}
				gv := group + "/" + name
				out = append(out, gv, gv+"/"+kind)
				if sub, _ := v["subresources"].(map[string]any); sub["scale"] != nil {
					out = append(out, gv+"/Scale")
				}
			}
		}
	}
	return out
}

// capsView is the .Capabilities a chart's templates see: Helm's, served
// through methods named as its fields, so that the render records which
// parts of the cluster a chart consulted (ReadCluster). A chart that
// consults nothing of the cluster is not rendered again when the cluster
// changes.
//
// text/template calls a method where it would read a field, and unwraps
// a method's reflect.Value result: each method returns Helm's field itself
// (addressable, as reading it from Helm's *Capabilities gives), so that
// templates see no difference: {{ .Capabilities.KubeVersion }} prints
// through its pointer's String method while a function given it receives
// the struct, .Capabilities.KubeVersion.GitVersion calls the pointer
// method, .Capabilities.APIVersions.Has works on the set.
type capsView struct {
	caps  *chartutil.Capabilities
	reads *Reads
}

// field returns Helm's field name of the capabilities, addressable.
func (c *capsView) field(name string) reflect.Value {
	return reflect.ValueOf(c.caps).Elem().FieldByName(name)
}

// KubeVersion is .Capabilities.KubeVersion.
func (c *capsView) KubeVersion() reflect.Value {
	c.reads.Add(ReadCluster, CapKubeVersion)
	return c.field("KubeVersion")
}

// APIVersions is .Capabilities.APIVersions.
func (c *capsView) APIVersions() reflect.Value {
	c.reads.Add(ReadCluster, CapAPIVersions)
	return c.field("APIVersions")
}

// HelmVersion is .Capabilities.HelmVersion, deliver's Helm library: no
// part of the cluster.
func (c *capsView) HelmVersion() reflect.Value { return c.field("HelmVersion") }

// String prints .Capabilities as printing Helm's struct does.
func (c *capsView) String() string {
	c.reads.Add(ReadCluster, CapKubeVersion)
	c.reads.Add(ReadCluster, CapAPIVersions)
	return fmt.Sprint(c.caps)
}

// MarshalJSON marshals Helm's struct, for toYaml and toJson of
// .Capabilities, which then depend on all of it.
func (c *capsView) MarshalJSON() ([]byte, error) {
	c.reads.Add(ReadCluster, CapKubeVersion)
	c.reads.Add(ReadCluster, CapAPIVersions)
	return json.Marshal(c.caps)
}
