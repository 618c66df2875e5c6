package render

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// TestHelmSortMatchesHelm: documents rendered from templates are ordered,
// and told apart as hooks, exactly as helm's releaseutil.SortManifests
// does, for kinds helm knows, kinds it does not, hooks with known and
// unknown events, and documents without a kind.
func TestHelmSortMatchesHelm(t *testing.T) {
	doc := func(kind, name, hook string) string {
		d := "apiVersion: v1\nkind: " + kind + "\nmetadata:\n  name: " + name + "\n"
		if kind == "" {
			d = "metadata:\n  name: " + name + "\n"
		}
		if hook != "" {
			d += "  annotations:\n    helm.sh/hook: " + hook + "\n"
		}
		return d
	}
	tests := map[string]map[string]string{
		"known kinds": {
			"c/templates/b.yaml": strings.Join([]string{doc("Deployment", "d", ""), doc("ConfigMap", "c", ""), doc("Namespace", "n", "")}, "---\n"),
			"c/templates/a.yaml": strings.Join([]string{doc("Service", "s", ""), doc("ConfigMap", "c0", "")}, "\n---\n"),
		},
		"unknown kinds": {
			"c/templates/x.yaml": strings.Join([]string{doc("Zebra", "z", ""), doc("Aardvark", "a", ""), doc("Secret", "s", ""), doc("Zebra", "z2", ""), doc("", "nokind", "")}, "---\n"),
		},
		"hooks": {
			"c/templates/h.yaml": strings.Join([]string{doc("Job", "j", "pre-install"), doc("ConfigMap", "h", "post-install, Pre-Upgrade"), doc("ConfigMap", "u", "not-an-event"), doc("ServiceAccount", "sa", "test")}, "---\n"),
			"c/templates/m.yaml": doc("ConfigMap", "plain", ""),
		},
		"partials, notes and empty output": {
			"c/templates/_helpers.tpl": doc("ConfigMap", "partial", ""),
			"c/templates/NOTES.txt":    "Thanks.",
			"c/templates/empty.yaml":   "\n  \n",
			"c/templates/ok.yaml":      "---\n" + doc("ConfigMap", "ok", "") + "---\n",
		},
	}
	for name, files := range tests {
		t.Run(name, func(t *testing.T) {
			// action.Install takes NOTES.txt out before it sorts.
			helmFiles := copyFiles(files)
			delete(helmFiles, "c/templates/NOTES.txt")
			hooks, manifests, err := releaseutil.SortManifests(helmFiles, nil, releaseutil.InstallOrder)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, m := range manifests {
				want = append(want, fmt.Sprintf("%s: %s", m.Name, m.Content))
			}
			for _, h := range hooks {
				want = append(want, fmt.Sprintf("hook %s: %s", h.Path, h.Manifest))
			}
			got, err := deliverOrder(copyFiles(files))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("order (-helm +deliver):\n%s", diff)
			}
		})
	}
}

// deliverOrder is deliver's side of runHelm on rendered files.
func deliverOrder(files map[string]string) ([]string, error) {
	manifests, hooks, err := sortRendered(splitRendered(files))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range manifests {
		out = append(out, fmt.Sprintf("%s: %s", d.source, d.content))
	}
	for _, d := range hooks {
		out = append(out, fmt.Sprintf("hook %s: %s", d.source, d.content))
	}
	return out, nil
}

func copyFiles(files map[string]string) map[string]string {
	out := make(map[string]string, len(files))
	for k, v := range files {
		out[k] = v
	}
	return out
}

func TestSimpleHeadRefusesWhatHelmRefuses(t *testing.T) {
	for _, tt := range []struct {
		doc     string
		wantErr string
	}{
		{"kind: ConfigMap\nmetadata: {name: a, annotations: {x: y}}", ""},
		{"kind: 5\n", ""}, // a scalar is taken as a string
		{"metadata: {name: 5, annotations: {helm.sh/hook-weight: 5}}\n", ""},
		{"apiVersion: [v1]\n", "apiVersion"},
		{"kind: {a: b}\n", "kind"},
		{"metadata: [a]\n", "metadata"},
		{"metadata: {name: [a]}\n", "metadata.name"},
		{"metadata: {annotations: [a]}\n", "metadata.annotations"},
		{"metadata: {annotations: {helm.sh/hook: [pre-install]}}\n", "metadata.annotations.helm.sh/hook"},
		{"kind: ~\nmetadata: {name: ~, annotations: ~}\n", ""},
	} {
		m, err := unmarshalObject([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = simpleHead(m)
		var head releaseutil.SimpleHead
		helmErr := yaml.Unmarshal([]byte(tt.doc), &head) // what releaseutil.SortManifests does
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.doc, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: error %v, want one naming %s", tt.doc, err, tt.wantErr)
		}
		if (err == nil) != (helmErr == nil) {
			t.Errorf("%q: deliver %v, helm %v: want both or neither to refuse", tt.doc, err, helmErr)
		}
	}
}
