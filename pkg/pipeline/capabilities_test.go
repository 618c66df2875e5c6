package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	applypkg "github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
)

// capsProbes are API versions a chart may ask .Capabilities.APIVersions
// about: served built-in groups, versions and kinds, versions client-go
// still knows but the API server no longer serves (Helm's offline default
// set has them), kinds of no installed CRD, and (added per test) the
// groups of CRDs the test creates.
var capsProbes = []string{
	"v1", "v1/ConfigMap", "v1/Binding", "apps/v1", "apps/v1/Deployment", "apps/v1/Scale",
	"policy/v1/PodDisruptionBudget", "policy/v1beta1/PodDisruptionBudget", "batch/v1beta1/CronJob",
	"autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v2beta2/HorizontalPodAutoscaler",
	"networking.k8s.io/v1/Ingress", "flowcontrol.apiserver.k8s.io/v1beta3",
	"apiregistration.k8s.io/v1", "apiextensions.k8s.io/v1/CustomResourceDefinition",
	"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor",
}

// capsChart is a chart that prints what it sees of .Capabilities into a
// ConfigMap and renders an object of a custom kind only when the cluster
// serves it: the shape of public charts that add a ServiceMonitor when
// the Prometheus operator is installed, or pick an apiVersion by the
// server's version.
func capsChart(name, group, kind string, probes []string, crd string) map[string]string {
	var values strings.Builder
	fmt.Fprintf(&values, "group: %s\nkind: %s\nprobes:\n", group, kind)
	for _, p := range probes {
		fmt.Fprintf(&values, "- %q\n", p)
	}
	files := map[string]string{
		"charts/" + name + "/Chart.yaml":  "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\n",
		"charts/" + name + "/values.yaml": values.String(),
		"charts/" + name + "/templates/caps.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: caps-{{ .Chart.Name }}
data:
  version: {{ .Capabilities.KubeVersion.Version | quote }}
  gitVersion: {{ .Capabilities.KubeVersion.GitVersion | quote }}
  major: {{ .Capabilities.KubeVersion.Major | quote }}
  minor: {{ .Capabilities.KubeVersion.Minor | quote }}
  atLeast130: {{ semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version | quote }}
  pdb: {{ ternary "policy/v1" "policy/v1beta1" (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") | quote }}
  {{- range $i, $p := .Values.probes }}
  probe{{ $i }}: {{ printf "%s=%t" $p ($.Capabilities.APIVersions.Has $p) | quote }}
  {{- end }}
`,
		"charts/" + name + "/templates/custom.yaml": `{{- if .Capabilities.APIVersions.Has (printf "%s/v1/%s" .Values.group .Values.kind) }}
apiVersion: {{ .Values.group }}/v1
kind: {{ .Values.kind }}
metadata:
  name: {{ .Chart.Name }}
spec:
  size: 1
{{- end }}
`,
	}
	if crd != "" {
		files["charts/"+name+"/crds/crd.yaml"] = crd
	}
	return files
}

// capsCRD is a CRD of group whose v1 is served, with a scale subresource,
// and whose v2 is not served.
func capsCRD(group, kind, plural string) string {
	return "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: " + plural + "." + group + "}\n" +
		"spec:\n  group: " + group + "\n  scope: Namespaced\n  names: {plural: " + plural + ", singular: " + strings.ToLower(kind) + ", kind: " + kind + ", listKind: " + kind + "List}\n" +
		"  versions:\n  - name: v1\n    served: true\n    storage: true\n" +
		"    subresources:\n      status: {}\n      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size}\n" +
		"    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n" +
		"  - name: v2\n    served: false\n    storage: false\n" +
		"    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n"
}

// TestHelmCapabilitiesAsHelmInstall: diff and apply render a chart with
// the cluster's .Capabilities, as `helm install` and `helm upgrade` do
// (and Flux's helm-controller), not with the offline defaults of `helm
// template`: the server's version, the API versions its discovery
// serves, CRDs included. Compared object for object with the helm CLI
// against the same control plane:
//   - with a CRD of the chart's custom kind absent, then installed by
//     someone else (the oracle: helm template --validate, which reads the
//     cluster as install does); installing it is an input of the app: the
//     next diff renders the app again (no commit) and shows the custom
//     object to create;
//   - a chart whose crds/ folder holds the CRD of its kind (includeCRDs):
//     `helm install` creates those CRDs before it reads the cluster, so
//     the templates see their kinds; deliver renders it, with the CRD
//     absent, as that install does (the oracle: a real `helm install`
//     into another namespace, after deliver's diff).
//
// Offline render still sees Helm's defaults, as `helm template`.
func TestHelmCapabilitiesAsHelmInstall(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	gadgets := "gadgets." + ns + ".caps.deliver.dev"
	own := "own." + ns + ".caps.deliver.dev"
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	t.Cleanup(func() {
		_ = crds.Delete(context.Background(), "gadgets."+gadgets, metav1.DeleteOptions{})
		_ = crds.Delete(context.Background(), "widgets."+own, metav1.DeleteOptions{})
	})
	// The own chart is compared with an install made after the gadget CRD
	// was installed: it asks about its own kinds only.
	ownProbes := append(slices.Clone(capsProbes), own+"/v1", own+"/v1/Widget", own+"/v1/Scale", own+"/v2")
	probes := append(slices.Clone(ownProbes), gadgets+"/v1", gadgets+"/v1/Gadget", gadgets+"/v1/Scale", gadgets+"/v2", gadgets+"/v2/Gadget")
	files := map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n" +
			"- {name: caps, namespace: " + ns + ", wait: false, helm: {chart: charts/caps}}\n" +
			"- {name: own, namespace: " + ns + ", wait: false, helm: {chart: charts/own, includeCRDs: true}}\n",
	}
	for k, v := range capsChart("caps", gadgets, "Gadget", probes, "") {
		files[k] = v
	}
	for k, v := range capsChart("own", own, "Widget", ownProbes, capsCRD(own, "Widget", "widgets")) {
		files[k] = v
	}
	_, opts := servedRepo(t, ns, files)
	// helm runs in namespaces of its own: template --validate refuses
	// objects that exist already, as install does.
	helmNS := env.Namespace(t)
	chartDir := t.TempDir()
	testenv.WriteFiles(t, chartDir, files)

	// rendered returns the objects app rendered, as YAML by Kind/name,
	// CRDs left out (helm's manifests do not hold crds/).
	rendered := func(res *Result, app string) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, a := range res.Apps {
			if a.Name != app {
				continue
			}
			if a.Set == nil {
				t.Fatalf("app %s was not rendered", app)
			}
			for _, o := range a.Set.Objects {
				if o.GetKind() == "CustomResourceDefinition" {
					continue
				}
				u := o.DeepCopy()
				u.SetNamespace("")
				delete(u.Object["metadata"].(map[string]any), "labels")
				b, err := yaml.Marshal(u.Object)
				if err != nil {
					t.Fatal(err)
				}
				out[u.GetKind()+"/"+u.GetName()] = string(b)
			}
		}
		return out
	}
	diff := func(what string) *Result { t.Helper(); return mustRun(t, what, Diff, opts) }
	apply := func(what string) { t.Helper(); mustRun(t, what, Apply, opts) }

	// The CRD of the own chart is absent: deliver renders it as helm
	// install will, which creates it first.
	res := diff("diff before any CRD")
	gotOwn := rendered(res, "own")
	if got, want := rendered(res, "caps"), helmObjects(t, env.Kubeconfig, helmNS, "template", "caps", filepath.Join(chartDir, "charts/caps"), "--validate"); !cmp.Equal(want, got) {
		t.Errorf("caps, no CRD (-helm template --validate +deliver diff):\n%s", cmp.Diff(want, got))
	}
	if _, ok := gotOwn["Widget/own"]; !ok {
		t.Errorf("own: no Widget rendered: the chart's crds/ did not count as installed, as helm install creates them first")
	}
	apply("apply before the gadget CRD")
	// The apply created the own chart's CRD: the cluster changed for
	// both charts, which consulted its API versions. Rendered again, the
	// own chart is as applied (it counted its CRD as installed); the caps
	// chart's ConfigMap now sees the own kinds, as helm upgrade would.
	res = diff("diff after apply")
	var changed []string
	for _, a := range res.Apps {
		if a.Unchanged {
			t.Errorf("app %s planned unchanged: the cluster's new kinds are not an input", a.Name)
		}
		for _, c := range a.Plan.Changes {
			if c.Type != applypkg.ChangeUnchanged {
				changed = append(changed, a.Name+": "+c.ID.String()+" "+string(c.Type))
			}
		}
	}
	if want := []string{"caps: ConfigMap/" + ns + "/caps-caps update"}; !slices.Equal(changed, want) {
		t.Errorf("diff after the apply: %q, want %q", changed, want)
	}

	// Someone installs the gadget CRD: the cluster changed, so the caps
	// app renders again and creates its Gadget.
	kubectlApply(t, capsCRD(gadgets, "Gadget", "gadgets"))
	waitServed(t, gadgets+"/v1")
	res = diff("diff after the gadget CRD")
	if got, want := rendered(res, "caps"), helmObjects(t, env.Kubeconfig, helmNS, "template", "caps", filepath.Join(chartDir, "charts/caps"), "--validate"); !cmp.Equal(want, got) {
		t.Errorf("caps, CRD installed (-helm template --validate +deliver diff):\n%s", cmp.Diff(want, got))
	}
	var gadget bool
	for _, a := range res.Apps {
		if a.Name != "caps" || a.Plan == nil {
			continue
		}
		for _, c := range a.Plan.Changes {
			gadget = gadget || c.ID.String() == "Gadget/"+ns+"/caps"
		}
	}
	if !gadget {
		t.Errorf("diff after the CRD was installed does not create Gadget/%s/caps", ns)
	}
	apply("apply after the gadget CRD")
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: gadgets, Version: "v1", Resource: "gadgets"}).Namespace(ns).Get(ctx, "caps", metav1.GetOptions{}); err != nil {
		t.Errorf("Gadget not created: %v", err)
	}

	// The oracle of the own chart: helm install, which creates the CRD
	// of its crds/ (deliver did too, in its apply: delete it first, so
	// that helm's install is the one that creates it, as on a cluster
	// that never had it).
	if err := crds.Delete(ctx, "widgets."+own, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, own+"/v1")
	if want := helmObjects(t, env.Kubeconfig, helmNS, "install", "own", filepath.Join(chartDir, "charts/own")); !cmp.Equal(want, gotOwn) {
		t.Errorf("own, its CRD absent (-helm install +deliver diff):\n%s", cmp.Diff(want, gotOwn))
	}

	// Offline, charts see Helm's defaults: no CRD kinds.
	ro := opts
	ro.Kube = nil
	rres := mustRun(t, "render", Render, ro)
	if _, ok := rendered(rres, "caps")["Gadget/caps"]; ok {
		t.Errorf("render (offline) rendered the Gadget: it saw the cluster")
	}
}

// helmObjects runs the helm CLI (template, install or upgrade) of chart as
// release name into ns against the control plane of kubeconfig and returns
// its objects as rendered() does; for install and upgrade, those of `helm
// get manifest`.
func helmObjects(t *testing.T, kubeconfig, ns, verb, name, chart string, args ...string) map[string]string {
	t.Helper()
	helm, err := testenv.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(helm, append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...)
		cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	out := run(append([]string{verb, name, chart}, args...)...)
	if verb == "install" || verb == "upgrade" {
		out = run("get", "manifest", name)
	}
	objs := map[string]string{}
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("helm output: %v\n%s", err, doc)
		}
		if m == nil || m["kind"] == nil {
			continue
		}
		meta := m["metadata"].(map[string]any)
		delete(meta, "namespace")
		delete(meta, "labels")
		b, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		objs[fmt.Sprint(m["kind"])+"/"+fmt.Sprint(meta["name"])] = string(b)
	}
	return objs
}

// kubectlApply applies a manifest to the test control plane.
func kubectlApply(t *testing.T, manifest string) {
	t.Helper()
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// waitServed waits until discovery serves the group/version gv.
func waitServed(t *testing.T, gv string) { t.Helper(); waitDiscovery(t, gv, true) }

// waitGone waits until discovery no longer serves the group/version gv.
func waitGone(t *testing.T, gv string) { t.Helper(); waitDiscovery(t, gv, false) }

func waitDiscovery(t *testing.T, gv string, served bool) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := dc.ServerResourcesForGroupVersion(gv)
		if (err == nil) == served {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery: %s served is not %t after a minute (%v)", gv, served, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestInputsCheckReadsEachObjectOnce: an InputsCheck reads the version of
// a ConfigMap or Secret that many apps read (a shared cluster-vars) once
// for all of them, present or absent, while a run reads it at each ask:
// between two asks its own applies may have changed it.
func TestInputsCheckReadsEachObjectOnce(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-vars"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		caps  func(*applypkg.Session) *clusterCaps
		reads int
	}{
		{"inputs check", func(s *applypkg.Session) *clusterCaps { return NewInputsCheck(nil, Options{Session: s}).caps }, 1},
		{"run", newClusterCaps, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, obj := range []string{"ConfigMap/" + ns + "/cluster-vars", "Secret/" + ns + "/absent"} {
				c := newRequestCounter(nil)
				sess, err := applypkg.NewSession(c.config(), applypkg.SessionOptions{})
				if err != nil {
					t.Fatal(err)
				}
				caps := tc.caps(sess)
				var versions []string
				for i := range 5 {
					v, err := caps.objectVersion(ctx, config.ResolvedApp{App: config.App{Name: fmt.Sprintf("app-%d", i), Namespace: ns}}, obj)
					if err != nil {
						t.Fatal(err)
					}
					versions = append(versions, v)
				}
				if versions[0] == "" || len(slices.Compact(slices.Clone(versions))) != 1 {
					t.Errorf("%s: versions %q, want one", obj, versions)
				}
				if strings.HasPrefix(obj, "Secret/") && versions[0] != render.ObjectAbsent {
					t.Errorf("%s: version %q, want absent", obj, versions[0])
				}
				gets := 0
				for k, n := range c.run {
					if strings.HasPrefix(k, "get ") {
						gets += n
					}
				}
				if gets != tc.reads {
					t.Errorf("%s: %d reads for 5 apps, want %d:\n%s", obj, gets, tc.reads, formatCounts(c.run))
				}
			}
		})
	}
}
