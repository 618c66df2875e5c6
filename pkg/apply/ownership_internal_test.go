package apply

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/object"
)

// TestCheckOwnership: which live labels make a planned object a conflict,
// an adoption, or neither.
func TestCheckOwnership(t *testing.T) {
	tests := []struct {
		name      string
		live      map[string]string // labels of the live object; nil: no live object
		adopt     string            // AnnotationAdopt on the object in git
		env       string            // the run's environment; "" for none
		conflict  bool
		adoptedOf string
		// errWants are further parts of the conflict's error.
		errWants []string
	}{
		{name: "new object", live: nil},
		{name: "no label (kubectl, another tool)", live: map[string]string{}},
		{name: "the app's own", live: map[string]string{LabelApp: "web"}},
		{name: "another app's", live: map[string]string{LabelApp: "other"}, conflict: true},
		{name: "another app's, adopt", live: map[string]string{LabelApp: "other"}, adopt: "true", adoptedOf: "other"},
		{name: "another app's, adopt not true", live: map[string]string{LabelApp: "other"}, adopt: "yes", conflict: true},
		// Several environments (issue #20): the owner key is the app
		// name and, when both say, the environment.
		{name: "the app's own, of its environment", env: "b", live: map[string]string{LabelApp: "web", LabelEnv: "b"}},
		{name: "the app's own, labelled by an older version", env: "b", live: map[string]string{LabelApp: "web"}},
		{name: "the app's own, run without environment", live: map[string]string{LabelApp: "web", LabelEnv: "a"}},
		{name: "same app name, another environment", env: "b", live: map[string]string{LabelApp: "web", LabelEnv: "a"}, conflict: true,
			errWants: []string{`app "web" of environment "a" (labels deliver.dev/app and deliver.dev/env), not to app "web" of environment "b"`}},
		{name: "same app name, another environment, adopt", env: "b", live: map[string]string{LabelApp: "web", LabelEnv: "a"}, adopt: "true", adoptedOf: "web (environment a)"},
		{name: "another app of another environment", env: "b", live: map[string]string{LabelApp: "other", LabelEnv: "a"}, conflict: true,
			errWants: []string{`app "other" of environment "a"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("v1")
			u.SetKind("ConfigMap")
			u.SetNamespace("shop")
			u.SetName("settings")
			if tt.adopt != "" {
				u.SetAnnotations(map[string]string{AnnotationAdopt: tt.adopt})
			}
			c := &Change{ID: object.IDOf(u), Origin: object.Origin{App: "web", File: "cm.yaml"}, Type: ChangeUpdate, Desired: u}
			live := map[object.ID]*metav1.PartialObjectMetadata{}
			if tt.live != nil {
				live[c.ID] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "shop", Labels: tt.live}}
			}
			p := &Plan{App: "web", Changes: []*Change{c}}
			if tt.env != "" {
				p.opts.Identity = &Identity{Environment: tt.env}
			}
			p.checkOwnership(live)
			if got := len(p.Conflicts) == 1; got != tt.conflict {
				t.Errorf("conflict = %v, want %v (%+v)", got, tt.conflict, p.Conflicts)
			}
			if c.AdoptedFrom != tt.adoptedOf {
				t.Errorf("AdoptedFrom = %q, want %q", c.AdoptedFrom, tt.adoptedOf)
			}
			err := p.ConflictErr()
			var ce *ConflictError
			if tt.conflict != errors.As(err, &ce) {
				t.Fatalf("ConflictErr() = %v", err)
			}
			if err != nil {
				wants := []string{"ConfigMap/shop/settings (web: cm.yaml#0)", `app "` + tt.live[LabelApp] + `"`, `app "web"`, AnnotationAdopt}
				for _, want := range append(wants, tt.errWants...) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q: %v", want, err)
					}
				}
			}
		})
	}
}
