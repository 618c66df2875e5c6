package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/pkg/object"
)

// Apply server-side applies the objects of set, stage by stage, and reports
// what happened to each. It stops after the first stage with a failure, so
// workloads never start against config that failed to apply. Hooks are not
// run here.
func (m *Manager) Apply(ctx context.Context, set *object.Set) (*Report, error) {
	start := time.Now()
	rep := &Report{}
	var errs []error
	for _, stage := range Stages(set.Objects) {
		results := make([]Result, len(stage))
		m.forEach(ctx, len(stage), func(i int) {
			results[i] = m.applyOne(ctx, stage[i])
		})
		var crds []*object.Object
		for i, r := range results {
			rep.Results = append(rep.Results, r)
			if r.Action == Failed {
				errs = append(errs, fmt.Errorf("%s: apply: %s", r.ID, r.Error))
			}
			if r.ID.GroupKind().String() == "CustomResourceDefinition.apiextensions.k8s.io" {
				crds = append(crds, stage[i])
			}
		}
		if len(errs) > 0 {
			break
		}
		if len(crds) > 0 {
			// Objects of the new kinds follow in later stages: wait until the
			// CRDs serve, then forget the cached discovery.
			if err := m.Wait(ctx, crds); err != nil {
				errs = append(errs, err)
				break
			}
			m.mapper.Reset()
		}
	}
	rep.Duration = time.Since(start)
	return rep, errors.Join(errs...)
}

// forEach calls fn for 0..n-1 with at most Concurrency calls at once.
func (m *Manager) forEach(ctx context.Context, n int, fn func(i int)) {
	sem := make(chan struct{}, m.opts.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			fn(i) // reports the context error for this object
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// resource resolves the REST endpoint of u and sets the default namespace
// on namespaced objects that have none.
func (m *Manager) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("unknown kind %s in %s: is its CRD installed?", gvk.Kind, gvk.GroupVersion())
		}
		return nil, err
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			u.SetNamespace(m.opts.DefaultNamespace)
		}
		return m.dyn.Resource(mapping.Resource).Namespace(u.GetNamespace()), nil
	}
	u.SetNamespace("")
	return m.dyn.Resource(mapping.Resource), nil
}

func (m *Manager) applyOne(ctx context.Context, o *object.Object) Result {
	u := o.DeepCopy()
	res := Result{Origin: o.Origin}
	fail := func(err error) Result {
		res.ID = object.IDOf(u)
		res.Action = Failed
		res.Error = err.Error()
		return res
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	ri, err := m.resource(u)
	if err != nil {
		return fail(err)
	}
	// The resolved namespace is part of the identity reported back.
	o.SetNamespace(u.GetNamespace())
	res.ID = object.IDOf(u)
	u.SetManagedFields(nil)
	u.SetResourceVersion("")

	before, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fail(err)
	}
	after, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: m.opts.FieldManager, Force: !m.opts.NoForce})
	if err != nil {
		return fail(err)
	}
	switch {
	case before == nil:
		res.Action = Created
	case before.GetResourceVersion() == after.GetResourceVersion() || sameContent(before, after):
		res.Action = Unchanged
	default:
		res.Action = Configured
	}
	return res
}

// sameContent compares two versions of an object without the fields the
// server changes on every write. A no-op apply can still rewrite
// managedFields (the apiserver does so once for a new Namespace, whose
// kubernetes.io/metadata.name label it sets itself); that is not a change
// the user made.
func sameContent(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		c.SetManagedFields(nil)
		c.SetResourceVersion("")
		c.SetGeneration(0)
		return c.Object
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}
