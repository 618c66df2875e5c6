package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// SetStatus plays a custom resource's operator: once the object exists at
// generation gen or later (a deliver run under way creates or changes
// it), it writes status through the status subresource, with
// observedGeneration set to the object's generation.
func (c *Cluster) SetStatus(tb testing.TB, gvr schema.GroupVersionResource, ns, name string, gen int64, status map[string]any) {
	tb.Helper()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		tb.Fatal(err)
	}
	res := dyn.Resource(gvr).Namespace(ns)
	ctx := context.Background()
	Eventually(tb, time.Minute, 20*time.Millisecond, fmt.Sprintf("%s %s/%s at generation %d", gvr.Resource, ns, name, gen), func() bool {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			tb.Logf("get %s %s/%s: %v", gvr.Resource, ns, name, err)
		}
		return err == nil && u.GetGeneration() >= gen
	})
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := map[string]any{"observedGeneration": u.GetGeneration()}
		for k, v := range status {
			st[k] = v
		}
		if err := unstructured.SetNestedMap(u.Object, st, "status"); err != nil {
			return err
		}
		_, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		tb.Fatalf("set the status of %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

// StatusWidgetCRD is the CRD of a namespaced kind Widget in group, with a
// status subresource (only the status endpoint writes the status, as
// with an operator's resources) and no schema to speak of. A group of
// its own per test keeps parallel tests from sharing the CRD.
func StatusWidgetCRD(group string) string {
	return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.` + group + `}
spec:
  group: ` + group + `
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`
}
