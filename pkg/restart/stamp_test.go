package restart

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// set decodes YAML documents into a Set.
func set(t *testing.T, docs ...string) *object.Set {
	t.Helper()
	s := &object.Set{}
	for i, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		s.Objects = append(s.Objects, &object.Object{Unstructured: u, Origin: object.Origin{File: "test.yaml", Doc: i}})
	}
	return s
}

// stamps runs Stamp and returns each object's annotation, "" for none.
func stamps(t *testing.T, key []byte, docs ...string) map[string]string {
	t.Helper()
	s := set(t, docs...)
	if err := Stamp(s, "app", key); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range s.Objects {
		v, _, _ := unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", Annotation)
		out[o.GetKind()+"/"+o.GetName()] = v
	}
	return out
}

const (
	webDeploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web}, annotations: {keep: me}}
    spec:
      containers:
      - name: web
        envFrom: [{configMapRef: {name: settings}}]
        env: [{name: PW, valueFrom: {secretKeyRef: {name: creds, key: password}}}]`
	settings      = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: blue}\n"
	settingsGreen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: green}\n"
	creds         = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: hunter2, other: a}\n"
)

// TestStamp: the digest changes with the referenced data and only with
// it, is keyed, and reveals nothing of a Secret's value.
func TestStamp(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	base := stamps(t, key, settings, creds, webDeploy)["Deployment/web"]
	if !strings.HasPrefix(base, "hmac-sha256:") || len(base) != len("hmac-sha256:")+64 {
		t.Fatalf("annotation = %q, want hmac-sha256: and 64 hex digits", base)
	}
	tests := []struct {
		name string
		key  []byte
		docs []string
		same bool
	}{
		{"same input", key, []string{settings, creds, webDeploy}, true},
		{"order of the objects", key, []string{webDeploy, creds, settings}, true},
		{"referenced ConfigMap data", key, []string{settingsGreen, creds, webDeploy}, false},
		{"referenced Secret key", key, []string{settings, strings.Replace(creds, "hunter2", "hunter3", 1), webDeploy}, false},
		{"unreferenced key of a Secret", key, []string{settings, strings.Replace(creds, "other: a", "other: b", 1), webDeploy}, true},
		{"Secret value as base64 data", key, []string{settings, "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: " + base64.StdEncoding.EncodeToString([]byte("hunter2")) + "}\n", webDeploy}, true},
		{"referenced key removed", key, []string{settings, "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {other: a}\n", webDeploy}, false},
		{"unreferenced ConfigMap", key, []string{settings, creds, webDeploy, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\ndata: {x: y}\n"}, true},
		{"another key", []byte("another key, as another cluster has"), []string{settings, creds, webDeploy}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := stamps(t, tt.key, tt.docs...)["Deployment/web"]
			if (got == base) != tt.same {
				t.Errorf("annotation %s, base %s: same = %v, want %v", got, base, got == base, tt.same)
			}
		})
	}
	// No plain hash of the value, and not the value, in any form.
	plain := sha256.Sum256([]byte("hunter2"))
	for _, leak := range []string{"hunter2", hex.EncodeToString(plain[:]), base64.StdEncoding.EncodeToString(plain[:])} {
		if strings.Contains(base, leak) {
			t.Errorf("annotation %s holds %s", base, leak)
		}
	}
}

// TestStampScope: what is stamped and what is left alone.
func TestStampScope(t *testing.T) {
	t.Parallel()
	kinds := func(kind, group string) string {
		return "apiVersion: " + group + "\nkind: " + kind + "\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: [{name: c, envFrom: [{configMapRef: {name: settings}}]}]\n"
	}
	tests := []struct {
		name    string
		key     []byte
		docs    []string
		object  string
		stamped string // "" none, "digest", or an exact value
	}{
		{"Deployment", []byte("k"), []string{settings, kinds("Deployment", "apps/v1")}, "Deployment/w", "digest"},
		{"StatefulSet", []byte("k"), []string{settings, kinds("StatefulSet", "apps/v1")}, "StatefulSet/w", "digest"},
		{"DaemonSet", []byte("k"), []string{settings, kinds("DaemonSet", "apps/v1")}, "DaemonSet/w", "digest"},
		{"ReplicaSet", []byte("k"), []string{settings, kinds("ReplicaSet", "apps/v1")}, "ReplicaSet/w", "digest"},
		{"Job is not restarted", []byte("k"), []string{settings, kinds("Job", "batch/v1")}, "Job/w", ""},
		{"a kind of another group", []byte("k"), []string{settings, kinds("Deployment", "example.com/v1")}, "Deployment/w", ""},
		{"reference outside the set", []byte("k"), []string{kinds("Deployment", "apps/v1")}, "Deployment/w", ""},
		{"ConfigMap in another namespace", []byte("k"), []string{strings.Replace(settings, "{name: settings}", "{name: settings, namespace: other}", 1), kinds("Deployment", "apps/v1")}, "Deployment/w", ""},
		{"ConfigMap in the app's namespace, written out", []byte("k"), []string{strings.Replace(settings, "{name: settings}", "{name: settings, namespace: app}", 1), kinds("Deployment", "apps/v1")}, "Deployment/w", "digest"},
		{"template metadata left empty", []byte("k"), []string{settings, strings.Replace(kinds("Deployment", "apps/v1"), "  template:\n", "  template:\n    metadata:\n", 1)}, "Deployment/w", "digest"},
		{"no key: pending", nil, []string{settings, kinds("Deployment", "apps/v1")}, "Deployment/w", Pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := stamps(t, tt.key, tt.docs...)[tt.object]
			switch {
			case tt.stamped == "digest" && !strings.HasPrefix(got, "hmac-sha256:"):
				t.Errorf("annotation = %q, want a digest", got)
			case tt.stamped != "digest" && got != tt.stamped:
				t.Errorf("annotation = %q, want %q", got, tt.stamped)
			}
		})
	}
	t.Run("other annotations kept, input not changed", func(t *testing.T) {
		t.Parallel()
		s := set(t, settings, webDeploy)
		before := s.Objects[1].Unstructured
		if err := Stamp(s, "app", []byte("k")); err != nil {
			t.Fatal(err)
		}
		ann, _, _ := unstructured.NestedStringMap(s.Objects[1].Object, "spec", "template", "metadata", "annotations")
		if ann["keep"] != "me" || ann[Annotation] == "" {
			t.Errorf("annotations = %v, want keep and the digest", ann)
		}
		if _, found, _ := unstructured.NestedString(before.Object, "spec", "template", "metadata", "annotations", Annotation); found {
			t.Error("Stamp changed the object it was given instead of a copy")
		}
	})
}
