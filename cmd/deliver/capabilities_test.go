package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
)

// TestRenderCapabilityFlags: deliver render (offline) takes helm
// template's --kube-version and --api-versions for what charts see in
// .Capabilities; diff and apply read them from the cluster, so they do not
// take the flags (a flag that would be ignored is refused).
func TestRenderCapabilityFlags(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "repo")
	repo := gitserver.NewRepo(t, dir)
	for name, content := range map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: web, helm: {chart: chart}}\n- {name: kust, namespace: kust, kustomize: {path: k}}\n",
		// The same chart through kustomize's helmCharts.
		"k/kustomization.yaml":           "helmCharts:\n- {name: web, releaseName: web, kubeVersion: 1.20.0}\n",
		"k/charts/web/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"k/charts/web/values.yaml":       "{}\n",
		"k/charts/web/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n  monitoring: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1/ServiceMonitor\" | quote }}\n",
		"chart/Chart.yaml":               "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		"chart/templates/cm.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n  monitoring: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1/ServiceMonitor\" | quote }}\n",
	} {
		repo.WriteFile(name, content)
	}
	repo.CommitAll("chart")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		// The helmCharts' own kubeVersion, unless the flag replaces it.
		{nil, []string{`minor: "37"`, `minor: "20"`, `monitoring: "false"`}},
		{[]string{"--kube-version", "1.29.3", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}, []string{`minor: "29"`, `monitoring: "true"`}},
		{[]string{"--kube-version=v1.30.0", "-a", "x.dev/v1", "-a", "monitoring.coreos.com/v1/ServiceMonitor"}, []string{`minor: "30"`, `monitoring: "true"`}},
	} {
		out := runExpect(t, 0, append([]string{"render", "--path", dir}, tt.args...))
		for _, w := range tt.want {
			// Each app's ConfigMap says it, but the helmCharts' own
			// minor version.
			want := 2
			if tt.args == nil && strings.HasPrefix(w, "minor") {
				want = 1
			}
			if n := strings.Count(out, w); n != want {
				t.Errorf("render %v: output has %s %d times, want %d:\n%s", tt.args, w, n, want, out)
			}
		}
	}
	for _, cmd := range []string{"diff", "apply"} {
		for _, flag := range []string{"--kube-version=1.29.3", "--api-versions=x.dev/v1"} {
			if out := runExpect(t, 1, []string{cmd, "--path", dir, flag}); !strings.Contains(out, "unknown flag") {
				t.Errorf("%s %s: %s, want an unknown flag", cmd, flag, out)
			}
		}
	}
}
