package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestForce: force: true in deliver.yaml (Flux's spec.force) deletes and
// re-creates an object whose change touches an immutable field, here an
// immutable ConfigMap's data; without it the same change fails naming
// the object, and the ConfigMap keeps its data.
func TestForce(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	// A re-creation deletes in the foreground, which the garbage
	// collector completes: a control plane with controllers, which this
	// package's has not.
	c := testenv.StartSecond(t, true)
	ctx := context.Background()
	ns, inv := c.Namespace(t), c.Namespace(t)
	config := func(force string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\ndefaults: {wait: false}\napps:\n" +
			"- {name: web, namespace: " + ns + ", manifests: {path: web}" + force + "}\n"
	}
	cm := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {v: " + v + "}\n"
	}
	repo, opts := servedRepo(t, inv, map[string]string{"deliver.yaml": config(""), "web/cm.yaml": cm("one")})
	opts.Kube = func(string) (*rest.Config, error) { return c.Config, nil }
	data := func() string {
		t.Helper()
		got, err := c.Client().CoreV1().ConfigMaps(ns).Get(ctx, "frozen", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Data["v"]
	}
	mustRun(t, "first apply", Apply, opts)

	repo.WriteFile("web/cm.yaml", cm("two"))
	repo.CommitAll("two")
	res, err := Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if !errors.Is(err, apply.ErrImmutable) || !strings.Contains(err.Error(), "ConfigMap/"+ns+"/frozen") {
		t.Errorf("apply of an immutable change without force: %v, want ErrImmutable naming the ConfigMap", err)
	}
	if got := data(); got != "one" {
		t.Errorf("after the refused change: v = %q, want one", got)
	}

	repo.WriteFile("deliver.yaml", config(", force: true"))
	repo.CommitAll("force")
	if text := writtenDiff(t, mustRun(t, "diff with force", Diff, opts)); !strings.Contains(text, "deleted and re-created") {
		t.Errorf("diff with force does not say the ConfigMap is re-created:\n%s", text)
	}
	res = mustRun(t, "apply with force", Apply, opts)
	if rep := res.Apps[0].Report; rep == nil || len(rep.Results) != 1 || rep.Results[0].Action != apply.Recreated {
		t.Errorf("apply with force: %v, want the ConfigMap recreated", rep)
	}
	if got := data(); got != "two" {
		t.Errorf("after the apply with force: v = %q, want two", got)
	}
}
