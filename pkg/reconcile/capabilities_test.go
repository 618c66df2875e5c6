package reconcile_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestInputsIntervalSeesNewAPIVersion: a Helm chart that renders an
// object only where an API version is served is rendered again, without
// a commit, once someone else installs the CRD that serves it: the API
// versions a chart consulted are among the inputs that --inputs-interval
// checks, as helm-controller's next interval would render with the new
// .Capabilities. An app that consulted nothing of the cluster does not
// run.
func TestInputsIntervalSeesNewAPIVersion(t *testing.T) {
	ns := env.Namespace(t)
	t.Parallel()
	ctx := context.Background()
	group := ns + ".caps.example.com"
	files := map[string]string{
		"deliver.yaml": deliverYAML(ns,
			"- {name: api, namespace: $NS, helm: {chart: api}}",
			"- {name: other, namespace: $NS, manifests: {path: other}}"),
		"api/Chart.yaml": "apiVersion: v2\nname: api\nversion: 0.1.0\n",
		"api/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\n" +
			`data: {widgets: {{ if .Capabilities.APIVersions.Has "` + group + `/v1" }}"served"{{ else }}"absent"{{ end }}}` + "\n",
		"other/cm.yaml": configMap("other", map[string]string{"v": "one"}),
	}
	repo := newGitRepo(t, files)
	opts := options(t, repo, env.Config)
	opts.Interval = time.Hour // no fetch but the first, and no full resync
	opts.InputsInterval = 300 * time.Millisecond
	r, _ := start(t, opts)
	waitFor(t, 60*time.Second, "first delivery", func() bool {
		for _, app := range []string{"api", "other"} {
			if a := appStatus(r, app); a.Revision != repo.Head() || a.Result != apply.ResultSucceeded {
				return false
			}
		}
		return cmData(t, ns, "api")["widgets"] == "absent"
	})
	other := appStatus(r, "other").LastRun

	var crd map[string]any
	if err := yaml.Unmarshal([]byte(testenv.StatusWidgetCRD(group)), &crd); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, &unstructured.Unstructured{Object: crd}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = crds.Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{}) })

	waitFor(t, 60*time.Second, "api rendered again for the API version served since", func() bool {
		return cmData(t, ns, "api")["widgets"] == "served" && appStatus(r, "api").Result == apply.ResultSucceeded
	})
	if got := appStatus(r, "other").LastRun; !got.Equal(other) {
		t.Errorf("other ran, all its inputs in git: last run %s, was %s", got, other)
	}
}
