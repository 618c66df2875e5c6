package apply_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// scaledObjectCRD is the least of KEDA's CRD that the API server needs to
// serve ScaledObjects: the group, version, kind and scope of KEDA's, and
// a schema that keeps every field.
const scaledObjectCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scaledobjects.keda.sh}
spec:
  group: keda.sh
  scope: Namespaced
  names: {plural: scaledobjects, singular: scaledobject, kind: ScaledObject, listKind: ScaledObjectList, shortNames: [so]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// scaledObject is a KEDA ScaledObject of web. Its scaleTargetRef names no
// kind: KEDA's default, a Deployment. No KEDA runs in the test cluster,
// so nothing acts on it; what counts is that deliver leaves the count to it.
const scaledObject = `
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web, namespace: NS}
spec:
  scaleTargetRef: {name: web}
  minReplicaCount: 1
  maxReplicaCount: 10
  triggers:
  - type: cpu
    metricType: Utilization
    metadata: {value: "80"}
`

var scaledObjectGVR = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

var kedaCRD struct {
	once sync.Once
	err  error
}

// installScaledObjectCRD installs the ScaledObject CRD once for the
// package's tests and waits until it is served. It stays: tests running
// in parallel may use it, and the test cluster goes with the package.
// Managers made after it know the kind.
func installScaledObjectCRD(t *testing.T) {
	t.Helper()
	kedaCRD.once.Do(func() {
		ctx := context.Background()
		var u map[string]any
		if kedaCRD.err = yaml.Unmarshal([]byte(scaledObjectCRD), &u); kedaCRD.err != nil {
			return
		}
		dyn, err := dynamic.NewForConfig(env.Config)
		if err != nil {
			kedaCRD.err = err
			return
		}
		crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		if _, err := dyn.Resource(crds).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			kedaCRD.err = err
			return
		}
		dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
		if err != nil {
			kedaCRD.err = err
			return
		}
		if _, ok := testenv.Until(30*time.Second, 50*time.Millisecond, func() bool {
			list, err := dc.ServerResourcesForGroupVersion("keda.sh/v1alpha1")
			if err != nil {
				return false
			}
			for _, r := range list.APIResources {
				if r.Name == "scaledobjects" {
					return true
				}
			}
			return false
		}); !ok {
			kedaCRD.err = apierrors.NewServiceUnavailable("scaledobjects.keda.sh not served after 30s")
		}
	})
	if kedaCRD.err != nil {
		t.Fatalf("install the ScaledObject CRD: %v", kedaCRD.err)
	}
}

// createScaledObject creates the ScaledObject in the cluster, outside the
// app, as KEDA's users do with kubectl.
func createScaledObject(t *testing.T, ns string) {
	t.Helper()
	var u map[string]any
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(scaledObject, "NS", ns)), &u); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(scaledObjectGVR).Namespace(ns).Create(context.Background(), &unstructured.Unstructured{Object: u}, metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
}

// deliverOwnsReplicas reports whether deliver's field manager owns the
// Deployment web's spec.replicas, and returns its replica count.
func deliverOwnsReplicas(t *testing.T, ns string) (bool, int32) {
	t.Helper()
	d, err := env.Client().AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range d.ManagedFields {
		if f.Manager == apply.DefaultFieldManager && f.FieldsV1 != nil && strings.Contains(string(f.FieldsV1.Raw), `"f:replicas"`) {
			return true, *d.Spec.Replicas
		}
	}
	return false, *d.Spec.Replicas
}

// TestScaledObjectReplicasNotDelivers is TestReplicasNotDelivers for a
// KEDA ScaledObject (against the real API server, with the CRD
// installed): whether the ScaledObject is in git or only in the cluster,
// deliver sends no spec.replicas for the Deployment it targets (although
// the manifest sets 2) and does not own the field; a scale made in the
// cluster shows no change in the plan, and the apply keeps it.
func TestScaledObjectReplicasNotDelivers(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	t.Parallel()
	installScaledObjectCRD(t)
	const image = "registry.example/web:1.0"
	for _, tc := range []struct {
		name     string
		manifest string
		// live creates the ScaledObject in the cluster, outside the app.
		live bool
	}{
		{name: "live ScaledObject", manifest: recreateWeb("replicas: 2", "{}", image), live: true},
		{name: "ScaledObject in git", manifest: recreateWeb("replicas: 2", "{}", image) + "\n---\n" + scaledObject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			var pb patchBodies
			m, err := apply.New(pb.config(ns), apply.Options{Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			opts := apply.PlanOptions{App: ns, Wait: true}
			if tc.live {
				createScaledObject(t, ns)
			}
			if _, err := m.Apply(ctx, objects(t, ns, tc.manifest), opts); err != nil {
				t.Fatal(err)
			}
			bodies := pb.take()
			if len(bodies) == 0 {
				t.Fatal("no apply of the Deployment seen")
			}
			for _, b := range bodies {
				if strings.Contains(b, `"replicas":`) {
					t.Errorf("first apply sent spec.replicas:\n%s", b)
				}
			}
			if owns, _ := deliverOwnsReplicas(t, ns); owns {
				t.Error("deliver owns spec.replicas after the first apply")
			}
			webPods(t, ns, 1) // the server's default: git's 2 is the ScaledObject's to decide
			scaleWeb(t, ns, 3)
			before := webPods(t, ns, 3)

			p, err := m.Plan(ctx, objects(t, ns, tc.manifest), opts)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := p.WriteDiff(&out, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if p.HasChanges() {
				t.Errorf("plan after a scale: %s, want no change:\n%s", p.Summary(), out.String())
			}
			rep, err := m.Execute(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(rep)["Deployment/"+ns+"/web"]; got != apply.Unchanged {
				t.Errorf("report: %+v, want the Deployment unchanged", rep.Results)
			}
			for _, b := range pb.take() {
				if strings.Contains(b, `"replicas":`) {
					t.Errorf("apply after the scale sent spec.replicas:\n%s", b)
				}
			}
			// A change of the Deployment is applied with the count kept.
			if _, err := m.Apply(ctx, objects(t, ns, strings.Replace(tc.manifest, "labels: {}", "labels: {team: shop}", 1)), opts); err != nil {
				t.Fatal(err)
			}
			for _, b := range pb.take() {
				if strings.Contains(b, `"replicas":`) {
					t.Errorf("apply of a label sent spec.replicas:\n%s", b)
				}
			}
			owns, replicas := deliverOwnsReplicas(t, ns)
			if owns || replicas != 3 {
				t.Errorf("after applying a label: deliver owns spec.replicas %v, replicas %d; want not owned and 3 kept", owns, replicas)
			}
			if after := webPods(t, ns, 3); !cmp.Equal(before, after) {
				t.Errorf("Pods before %v, after %v: want them kept", before, after)
			}
		})
	}
}

// TestScaledObjectAddedKeepsReplicas is TestAutoscalerAddedKeepsReplicas
// for a KEDA ScaledObject: once a ScaledObject targets a Deployment whose
// replica count deliver applied, deliver stops applying the count without
// the server resetting it to 1.
func TestScaledObjectAddedKeepsReplicas(t *testing.T) {
	if env == nil {
		t.Skip("testenv: no control plane (-short)")
	}
	t.Parallel()
	installScaledObjectCRD(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	before := autoscalerAdded(t, ns, scaledObject, "ScaledObject")
	owns, replicas := deliverOwnsReplicas(t, ns)
	if owns || replicas != 2 {
		t.Errorf("deliver owns spec.replicas %v, replicas %d: want not owned and 2 kept", owns, replicas)
	}
	if after := webPods(t, ns, 2); !cmp.Equal(before, after) {
		t.Errorf("Pods before %v, after %v: want them kept", before, after)
	}
	// The ScaledObject's count is its own from now on: a scale stays.
	scaleWeb(t, ns, 4)
	webPods(t, ns, 4)
	m := newManager(t, apply.Options{})
	p, err := m.Plan(ctx, objects(t, ns, recreateWeb("replicas: 2", "{team: shop}", autoscalerImage)+"\n---\n"+scaledObject), apply.PlanOptions{App: ns})
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() {
		t.Errorf("plan after a scale: %s, want no change", p.Summary())
	}
}
