package render

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// capsGetter is the RESTClientGetter Helm's install reads the cluster
// through: here it serves a fake discovery, so that Helm's own
// getCapabilities builds .Capabilities from the same answer deliver gets.
type capsGetter struct {
	disc discovery.CachedDiscoveryInterface
}

func (g capsGetter) ToRESTConfig() (*rest.Config, error) { return &rest.Config{}, nil }
func (g capsGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.disc, nil
}
func (g capsGetter) ToRESTMapper() (meta.RESTMapper, error) {
	return restmapper.NewDeferredDiscoveryRESTMapper(g.disc), nil
}
func (g capsGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(clientcmdapi.Config{}, nil)
}

var _ genericclioptions.RESTClientGetter = capsGetter{}

// capsFiles is a chart (with a subchart) that reads .Capabilities in
// every way templates do: fields, the printed KubeVersion, toJson,
// semverCompare, Has in the chart, its subchart and a tpl, the whole set
// sorted, and Chart.yaml's kubeVersion.
var capsFiles = map[string]string{
	"caps/Chart.yaml": "apiVersion: v2\nname: caps\nversion: 0.1.0\nkubeVersion: '>=1.20.0-0'\n" +
		"dependencies:\n- {name: sub, version: 0.1.0, repository: 'file://charts/sub'}\n",
	"caps/values.yaml": "probes: [v1, v1/ConfigMap, v1/Binding, apps/v1, apps/v1/Deployment, apps/v1/Scale, batch/v1beta1/CronJob, " +
		"policy/v1beta1/PodDisruptionBudget, example.com/v1, example.com/v1/Gadget, example.com/v1/Scale, example.com/v2]\n",
	"caps/templates/cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: caps
data:
  printed: "{{ .Capabilities.KubeVersion }}"
  quoted: {{ .Capabilities.KubeVersion | quote }}
  printf: {{ printf "%s|%v" .Capabilities.KubeVersion (.Capabilities.APIVersions.Has "v1") | quote }}
  helm: {{ printf "%T" .Capabilities.HelmVersion | quote }}
  whole: {{ .Capabilities | toJson | fromJson | keys | sortAlpha | join "," | quote }}
  version: {{ .Capabilities.KubeVersion.Version | quote }}
  gitVersion: {{ .Capabilities.KubeVersion.GitVersion | quote }}
  major: {{ .Capabilities.KubeVersion.Major | quote }}
  minor: {{ .Capabilities.KubeVersion.Minor | quote }}
  json: {{ .Capabilities.KubeVersion | toJson | quote }}
  atLeast128: {{ semverCompare ">=1.28-0" .Capabilities.KubeVersion.GitVersion | quote }}
  all: {{ .Capabilities.APIVersions | sortAlpha | join "," | quote }}
  count: {{ len .Capabilities.APIVersions | quote }}
  tpl: {{ tpl "{{ .Capabilities.KubeVersion.Minor }}/{{ .Capabilities.APIVersions.Has \"apps/v1\" }}" . | quote }}
  {{- range $i, $p := .Values.probes }}
  probe{{ $i }}: {{ printf "%s=%t" $p ($.Capabilities.APIVersions.Has $p) | quote }}
  {{- end }}
`,
	"caps/charts/sub/Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
	"caps/charts/sub/templates/gadget.yaml": `{{- if .Capabilities.APIVersions.Has "example.com/v1/Gadget" }}
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: sub-{{ .Capabilities.KubeVersion.Minor | trimSuffix "+" }}
{{- end }}
`,
	"plain/Chart.yaml":          "apiVersion: v2\nname: plain\nversion: 0.1.0\n",
	"plain/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  release: {{ .Release.Name | quote }}\n",
	"version/Chart.yaml":        "apiVersion: v2\nname: version\nversion: 0.1.0\nkubeVersion: '>=1.25.0-0'\n",
	"version/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: version\n",
}

// TestHelmClusterCapabilitiesAsHelm: with a cluster (HelmOptions.Cluster),
// a chart sees .Capabilities exactly as Helm's own install builds them
// from the same discovery (action.Install, not client-only, which reads
// the cluster through its RESTClientGetter: here a fake discovery):
// server versions as managed clusters report them (a Minor of "28+", a
// GitVersion with a suffix), API versions with CRDs, subresource kinds,
// versions client-go knows but the server does not serve. The render
// records the parts of the cluster each chart consulted, and none for a
// chart that consulted none.
func TestHelmClusterCapabilitiesAsHelm(t *testing.T) {
	root := t.TempDir()
	for name, content := range capsFiles {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resources := []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "configmaps", Kind: "ConfigMap", Namespaced: true},
			{Name: "bindings", Kind: "Binding", Namespaced: true},
			{Name: "pods", Kind: "Pod", Namespaced: true},
			{Name: "pods/status", Kind: "Pod", Namespaced: true},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "deployments", Kind: "Deployment", Namespaced: true},
			{Name: "deployments/scale", Kind: "Scale", Group: "autoscaling", Version: "v1", Namespaced: true},
		}},
		{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
			{Name: "gadgets", Kind: "Gadget", Namespaced: true},
			{Name: "gadgets/scale", Kind: "Scale", Group: "autoscaling", Version: "v1", Namespaced: true},
		}},
	}
	for _, v := range []version.Info{
		{GitVersion: "v1.28.3-eks-4f4795d", Major: "1", Minor: "28+"},
		{GitVersion: "v1.37.0", Major: "1", Minor: "37"},
		{GitVersion: "v1.30.1+k3s1", Major: "1", Minor: "30"},
		{GitVersion: "v1.24.0", Major: "1", Minor: "24"}, // below version's kubeVersion
	} {
		t.Run(v.GitVersion, func(t *testing.T) {
			fake := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{Resources: resources}, FakedServerVersion: &v}
			groups, res, err := fake.ServerGroupsAndResources()
			if err != nil {
				t.Fatal(err)
			}
			cluster, err := NewCluster(v, groups, res)
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				chart string
				reads []string
			}{
				{"caps", []string{ReadCluster + CapAPIVersions, ReadCluster + CapKubeVersion}},
				{"plain", nil},
				{"version", []string{ReadCluster + CapKubeVersion}},
			} {
				want, herr := helmClusterInstall(t, filepath.Join(root, tt.chart), fake)
				reads := &Reads{}
				set, err := Helm(context.Background(), HelmOptions{Root: root, Chart: tt.chart, ReleaseName: "rel", Namespace: "ns", Cluster: cluster, Reads: reads})
				if herr != nil || err != nil {
					if herr == nil || err == nil || !strings.Contains(err.Error(), "incompatible with Kubernetes") {
						t.Fatalf("%s: helm install: %v\ndeliver: %v", tt.chart, herr, err)
					}
					continue // both refuse the kubeVersion
				}
				var got []string
				for _, o := range set.Objects {
					got = append(got, canonicalJSON(t, o.Object))
				}
				slices.Sort(got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: objects (-want helm install +got deliver):\n%s", tt.chart, diff)
				}
				var cl []string
				for _, p := range reads.Paths() {
					if strings.HasPrefix(p, ReadCluster) {
						cl = append(cl, p)
					}
				}
				if !slices.Equal(cl, tt.reads) {
					t.Errorf("%s: cluster reads %v, want %v", tt.chart, cl, tt.reads)
				}
			}
		})
	}
}

// helmClusterInstall runs Helm's install of the chart in dry run against
// a cluster that disc describes, and returns its objects as canonical
// JSON, sorted.
func helmClusterInstall(t *testing.T, chartDir string, disc discovery.DiscoveryInterface) ([]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &action.Configuration{
		Releases:         storage.Init(driver.NewMemory()),
		KubeClient:       &kubefake.PrintingKubeClient{Out: io.Discard},
		RESTClientGetter: capsGetter{disc: memory.NewMemCacheClient(disc)},
		Log:              func(string, ...any) {},
	}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.DryRunOption = true, "client"
	inst.ReleaseName, inst.Namespace = "rel", "ns"
	rel, err := inst.RunWithContext(context.Background(), ch, map[string]any{})
	if err != nil {
		return nil, err
	}
	objs, err := kubectlDecode(rel.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(objs)
	return objs, nil
}
