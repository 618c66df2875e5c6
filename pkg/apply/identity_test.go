package apply_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestIdentity: an app delivered by one identity (environment, repository,
// deliver.yaml) and then by another of the same app name. Another
// environment, or another repository or deliver.yaml when both are known,
// is refused by the plan and by Apply before anything is written: the
// first identity's object keeps its content, the second's new object is
// not created, the inventory Secret is not written. An inventory without
// an identity (older versions, or a caller that gives none) and a run
// whose repository is unknown are taken over silently, and the inventory
// records the identity. An inventory annotated deliver.dev/adopt=true is
// taken over by the other identity, which the report names; the
// annotation is used up. A revision that another identity delivered does
// not count as delivered (PlanOptions.UnlessDelivered).
func TestIdentity(t *testing.T) {
	staging := &apply.Identity{Environment: "staging", Repository: "github.com/org/shop", Config: "deliver.yaml"}
	prod := &apply.Identity{Environment: "prod", Repository: "github.com/org/shop", Config: "deliver.yaml"}
	fork := &apply.Identity{Environment: "staging", Repository: "github.com/someone/shop", Config: "deliver.yaml"}
	otherFile := &apply.Identity{Environment: "staging", Repository: "github.com/org/shop", Config: "team-b/deliver.yaml"}
	unknown := &apply.Identity{Environment: "staging", Config: "deliver.yaml"}
	tests := []struct {
		name          string
		first, second *apply.Identity
		adopt         bool
		conflict      bool
		recorded      *apply.Identity // after the second run, when it is not refused
	}{
		{name: "same identity", first: staging, second: staging, recorded: staging},
		{name: "older inventory without identity", first: nil, second: prod, recorded: prod},
		{name: "caller without identity keeps the recorded one", first: staging, second: nil, recorded: staging},
		{name: "other environment", first: staging, second: prod, conflict: true},
		{name: "other repository", first: staging, second: fork, conflict: true},
		{name: "other deliver.yaml", first: staging, second: otherFile, conflict: true},
		{name: "run of unknown repository", first: staging, second: unknown, recorded: staging},
		{name: "recorded repository unknown", first: unknown, second: fork, recorded: fork},
		{name: "other environment adopted", first: staging, second: prod, adopt: true, recorded: prod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			ctx := context.Background()
			m := newManager(t, apply.Options{InventoryNamespace: ns})
			cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: NS}\ndata: {level: LEVEL}\n"
			first := objects(t, ns, strings.ReplaceAll(cm, "LEVEL", "first"))
			if _, err := m.Apply(ctx, first, apply.PlanOptions{App: "web", Revision: "r1", Identity: tt.first}); err != nil {
				t.Fatal(err)
			}
			secrets := env.Client().CoreV1().Secrets(ns)
			if tt.adopt {
				patch := []byte(`{"metadata":{"annotations":{"` + apply.AnnotationAdopt + `":"true"}}}`)
				if _, err := secrets.Patch(ctx, apply.InventoryName("web"), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			before, err := secrets.Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			second := objects(t, ns, strings.ReplaceAll(cm, "LEVEL", "second")+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: new, namespace: NS}\ndata: {a: b}\n")

			p, err := m.Plan(ctx, second, apply.PlanOptions{App: "web", Identity: tt.second})
			if err != nil {
				t.Fatal(err)
			}
			var diff bytes.Buffer
			if err := p.WriteDiff(&diff, apply.DiffOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := p.IdentityConflict != nil; got != tt.conflict {
				t.Errorf("plan: identity conflict = %v, want %v", got, tt.conflict)
			}
			if got := strings.Contains(diff.String(), "conflict: app \"web\" is delivered by"); got != tt.conflict {
				t.Errorf("diff shows the conflict = %v, want %v:\n%s", got, tt.conflict, diff.String())
			}
			if tt.adopt && !strings.Contains(diff.String(), "app web will be adopted from "+staging.String()) {
				t.Errorf("diff does not announce the adoption:\n%s", diff.String())
			}

			rep, err := m.Apply(ctx, second, apply.PlanOptions{App: "web", Identity: tt.second})
			level, _ := configMapLevel(ctx, ns, "settings")
			_, newErr := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "new", metav1.GetOptions{})
			after, gerr := secrets.Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tt.conflict {
				// A reconciler's shard asks to skip a revision already
				// delivered: not when another identity delivered it.
				_, uerr := m.Apply(ctx, second, apply.PlanOptions{App: "web", Revision: "r1", UnlessDelivered: true, Identity: tt.second})
				if errors.Is(uerr, apply.ErrDelivered) || !errors.As(uerr, new(*apply.IdentityError)) {
					t.Errorf("apply unless delivered at the first identity's revision: err = %v, want an *apply.IdentityError", uerr)
				}
				var ie *apply.IdentityError
				if !errors.As(err, &ie) {
					t.Fatalf("apply: err = %v, want an *apply.IdentityError", err)
				}
				for _, want := range []string{`app "web"`, tt.first.String(), tt.second.String(), ns + "/" + apply.InventoryName("web"), apply.AnnotationAdopt + "=true", "nothing of app \"web\" was applied"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				if level != "first" || !apierrors.IsNotFound(newErr) || after.ResourceVersion != before.ResourceVersion {
					t.Errorf("refused apply wrote: settings level %q (want first), new ConfigMap get = %v (want not found), inventory %s -> %s",
						level, newErr, before.ResourceVersion, after.ResourceVersion)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if level != "second" || newErr != nil {
				t.Errorf("apply: settings level %q (want second), new ConfigMap get = %v", level, newErr)
			}
			inv, err := m.ReadInventory(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.recorded, inv.Identity); diff != "" {
				t.Errorf("recorded identity (-want +got):\n%s", diff)
			}
			var adoptedFrom *apply.Identity
			if tt.adopt {
				adoptedFrom = tt.first
			}
			if diff := cmp.Diff(adoptedFrom, rep.AdoptedFrom); diff != "" {
				t.Errorf("report's AdoptedFrom (-want +got):\n%s", diff)
			}
			if _, ok := after.Annotations[apply.AnnotationAdopt]; ok {
				t.Errorf("annotation %s left on the inventory after the run", apply.AnnotationAdopt)
			}
		})
	}
}

func configMapLevel(ctx context.Context, ns, name string) (string, error) {
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return cm.Data["level"], nil
}
