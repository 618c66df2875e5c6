package apply

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/pkg/object"
)

// PlanOptions.CreateNamespace is Helm's --create-namespace, Argo CD's
// CreateNamespace=true and Flux HelmRelease's install.createNamespace:
// the app's namespace is created when it is missing and git does not
// hold it. As with them it is no object of the app: it carries none of
// deliver's labels, is not in the inventory, and neither a prune nor the
// app's removal deletes it (what runs in it may hold data).

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// planNamespace sets p.CreateNamespace when opts.CreateNamespace names a
// namespace that does not exist and that the plan does not create as an
// object of its own; newNamespaces then holds it, so that the objects
// in it are not dry-run against a namespace that is not there yet.
func (m *Manager) planNamespace(ctx context.Context, p *Plan, ns string, newNamespaces map[string]bool) error {
	if ns == "" || newNamespaces[ns] {
		return nil
	}
	for _, c := range p.Changes {
		if c.ID.Group == "" && c.ID.Kind == "Namespace" && c.ID.Name == ns {
			return nil // git holds it: an object of the app like any other
		}
	}
	_, err := m.objects.dyn.Resource(namespacesGVR).Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		p.CreateNamespace = ns
		newNamespaces[ns] = true
		return nil
	case err != nil:
		return fmt.Errorf("createNamespace: %w", m.denied(err, "get", "Namespace/"+ns))
	}
	return nil
}

// createNamespace creates the namespace the plan found missing
// (Plan.CreateNamespace), before anything else of the run; one created
// meanwhile is fine.
func (r *run) createNamespace(ctx context.Context) error {
	ns := r.p.CreateNamespace
	if ns == "" {
		return nil
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	res := Result{ID: object.ID{Kind: "Namespace", Name: ns}, Action: Created}
	_, err := r.m.objects.dyn.Resource(namespacesGVR).Create(ctx, u, metav1.CreateOptions{FieldManager: r.m.opts.FieldManager})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		err = r.m.denied(err, "create", res.ID.String())
		res.Action, res.Error = Failed, r.m.opts.Redact(err.Error())
		r.rep.Results = append(r.rep.Results, res)
		return fmt.Errorf("%s: createNamespace: %w", res.ID, err)
	}
	r.rep.Results = append(r.rep.Results, res)
	return nil
}
