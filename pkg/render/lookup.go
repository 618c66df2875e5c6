package render

import (
	"context"
	"fmt"

	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Lookup serves a Helm chart's lookup function from the cluster, as
// `helm install` and `helm upgrade` do (and Flux's helm-controller): a
// chart that keeps a generated password in a Secret finds it again
// instead of generating a new one on every render. Without a Lookup,
// lookups find nothing, as in `helm template`.
type Lookup struct {
	// Mapper maps a lookup's apiVersion and kind to its resource.
	Mapper meta.RESTMapper
	// Client reads the objects, with the identity the app's objects are
	// read with (its ServiceAccount, when it has one).
	Client dynamic.Interface
	// Seen, when set, is given every object a lookup returns before the
	// template sees it: to register the values of a Secret with the
	// redactor.
	Seen func(*unstructured.Unstructured)
}

// clientProvider is the Lookup as helm's engine asks for it; read records
// that the chart looked something up.
type clientProvider struct {
	l    *Lookup
	read func()
}

var _ engine.ClientProvider = clientProvider{}

// GetClientFor implements engine.ClientProvider.
func (p clientProvider) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	p.read()
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, false, fmt.Errorf("lookup %s %s: %w", apiVersion, kind, err)
	}
	m, err := p.l.Mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, gv.Version)
	if err != nil {
		return nil, false, fmt.Errorf("lookup %s %s: %w", apiVersion, kind, err)
	}
	r := p.l.Client.Resource(m.Resource)
	if p.l.Seen == nil {
		return r, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
	}
	seen := func(u *unstructured.Unstructured) {
		if u.GetKind() == "" { // a list's items may come without
			u.SetGroupVersionKind(m.GroupVersionKind)
		}
		p.l.Seen(u)
	}
	return seenResource{NamespaceableResourceInterface: r, seen: seen}, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// seenResource gives what Get and List return to seen; the lookup
// function calls nothing else.
type seenResource struct {
	dynamic.NamespaceableResourceInterface
	seen func(*unstructured.Unstructured)
}

func (r seenResource) Namespace(ns string) dynamic.ResourceInterface {
	return seenNamespaced{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), seen: r.seen}
}

func (r seenResource) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*unstructured.Unstructured, error) {
	u, err := r.NamespaceableResourceInterface.Get(ctx, name, opts, sub...)
	return seeOne(u, err, r.seen)
}

func (r seenResource) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	l, err := r.NamespaceableResourceInterface.List(ctx, opts)
	return seeList(l, err, r.seen)
}

type seenNamespaced struct {
	dynamic.ResourceInterface
	seen func(*unstructured.Unstructured)
}

func (r seenNamespaced) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*unstructured.Unstructured, error) {
	u, err := r.ResourceInterface.Get(ctx, name, opts, sub...)
	return seeOne(u, err, r.seen)
}

func (r seenNamespaced) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	l, err := r.ResourceInterface.List(ctx, opts)
	return seeList(l, err, r.seen)
}

func seeOne(u *unstructured.Unstructured, err error, seen func(*unstructured.Unstructured)) (*unstructured.Unstructured, error) {
	if err == nil {
		seen(u)
	}
	return u, err
}

func seeList(l *unstructured.UnstructuredList, err error, seen func(*unstructured.Unstructured)) (*unstructured.UnstructuredList, error) {
	if err == nil {
		for i := range l.Items {
			seen(&l.Items[i])
		}
	}
	return l, err
}
