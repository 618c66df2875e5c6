package pipeline

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// scopeFunc tells whether objects of a kind live in a namespace. The
// cross-app check needs it: a cluster-scoped object has one identity
// whatever namespace its app defaults to, so two apps declaring it would
// otherwise look like two objects and take it from each other on every run.
type scopeFunc func(gk schema.GroupKind) (namespaced bool, err error)

// builtinClusterScoped are the cluster-scoped kinds Kubernetes 1.37 serves
// itself (every type marked +genclient:nonNamespaced in k8s.io/api v0.37,
// plus the CRD and APIService kinds of the apiextensions and aggregator
// servers). It is the answer when there is no cluster to ask (render);
// diff and apply ask the cluster (see mapperScope), which also knows the
// custom resources.
var builtinClusterScoped = map[schema.GroupKind]bool{
	{Group: "", Kind: "ComponentStatus"}:                                              true,
	{Group: "", Kind: "Namespace"}:                                                    true,
	{Group: "", Kind: "Node"}:                                                         true,
	{Group: "", Kind: "PersistentVolume"}:                                             true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   true,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:                 true,
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                             true,
	{Group: "authentication.k8s.io", Kind: "SelfSubjectReview"}:                       true,
	{Group: "authentication.k8s.io", Kind: "TokenReview"}:                             true,
	{Group: "authorization.k8s.io", Kind: "SelfSubjectAccessReview"}:                  true,
	{Group: "authorization.k8s.io", Kind: "SelfSubjectRulesReview"}:                   true,
	{Group: "authorization.k8s.io", Kind: "SubjectAccessReview"}:                      true,
	{Group: "certificates.k8s.io", Kind: "CertificateSigningRequest"}:                 true,
	{Group: "certificates.k8s.io", Kind: "ClusterTrustBundle"}:                        true,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "FlowSchema"}:                       true,
	{Group: "flowcontrol.apiserver.k8s.io", Kind: "PriorityLevelConfiguration"}:       true,
	{Group: "imagepolicy.k8s.io", Kind: "ImageReview"}:                                true,
	{Group: "internal.apiserver.k8s.io", Kind: "StorageVersion"}:                      true,
	{Group: "networking.k8s.io", Kind: "IPAddress"}:                                   true,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:                                true,
	{Group: "networking.k8s.io", Kind: "ServiceCIDR"}:                                 true,
	{Group: "node.k8s.io", Kind: "RuntimeClass"}:                                      true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                         true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:                  true,
	{Group: "resource.k8s.io", Kind: "DeviceClass"}:                                   true,
	{Group: "resource.k8s.io", Kind: "DeviceTaintRule"}:                               true,
	{Group: "resource.k8s.io", Kind: "ResourcePoolStatusRequest"}:                     true,
	{Group: "resource.k8s.io", Kind: "ResourceSlice"}:                                 true,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:                               true,
	{Group: "storage.k8s.io", Kind: "CSIDriver"}:                                      true,
	{Group: "storage.k8s.io", Kind: "CSINode"}:                                        true,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                                   true,
	{Group: "storage.k8s.io", Kind: "VolumeAttachment"}:                               true,
	{Group: "storage.k8s.io", Kind: "VolumeAttributesClass"}:                          true,
	{Group: "storagemigration.k8s.io", Kind: "StorageVersionMigration"}:               true,
}

// builtinScope answers from builtinClusterScoped and the CRDs of the run:
// every other kind is taken to be namespaced, as kubectl does for a kind
// it cannot look up.
func builtinScope(crds map[schema.GroupKind]bool) scopeFunc {
	return func(gk schema.GroupKind) (bool, error) {
		if namespaced, ok := crds[gk]; ok {
			return namespaced, nil
		}
		return !builtinClusterScoped[gk], nil
	}
}

// mapperScope answers from the CRDs of the run first (their kinds may not
// be served yet, and a CRD's scope cannot change), then from the cluster's
// discovery. A kind neither knows is answered from the built-in table: the
// plan of its app fails on it anyway, and says why.
func mapperScope(mapper meta.RESTMapper, crds map[schema.GroupKind]bool) scopeFunc {
	fallback := builtinScope(nil)
	return func(gk schema.GroupKind) (bool, error) {
		if namespaced, ok := crds[gk]; ok {
			return namespaced, nil
		}
		m, err := mapper.RESTMapping(gk)
		switch {
		case meta.IsNoMatchError(err):
			return fallback(gk)
		case err != nil:
			return false, fmt.Errorf("scope of %s: %w", gk, err)
		}
		return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
	}
}

// crdScopes returns the kinds the CRDs among objs define, each with whether
// it is namespaced (spec.scope). A CRD without a valid scope is left out:
// the server rejects it, and the plan says so.
func crdScopes(objs []*unstructured.Unstructured) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if o.GroupVersionKind().GroupKind() != (schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}) {
			continue
		}
		g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		if g == "" || k == "" || (scope != "Cluster" && scope != "Namespaced") {
			continue
		}
		out[schema.GroupKind{Group: g, Kind: k}] = scope == "Namespaced"
	}
	return out
}
