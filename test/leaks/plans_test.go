package leaks

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/plan"
)

// TestPlanNoSecretLeaks is the canary scan over `deliver diff -o
// markdown`, the body CI posts on a pull request: over the leaks fixture
// (SOPS manifests and Helm values, Vault refs in values, manifests and a
// label, a kustomize secretGenerator), before the first apply, after a
// secret rotation in Vault, for the object the apiserver would reject,
// for an app whose plan fails (its error in the body), for a render that
// fails (the run's error in the body), and cut to a size limit.
func TestPlanNoSecretLeaks(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	l := newLeakRun(t)
	c, sc, vc := l.c, l.sc, l.vc
	// The paths TestNoSecretLeaks uses, with this test's canaries: the
	// two do not run at once.
	l.putVault(ctx, t, map[string][2]string{
		"leaks/web": {"apiKey", c.vaultValues.Value}, "leaks/plain": {"token", c.vaultManifest.Value},
		"leaks/reject": {"label", c.vaultLabel.Value}, "leaks/hook": {"token", c.vaultHook.Value},
		"leaks/worker": {"token", c.vaultWorkload.Value},
	})
	f := l.serveFixture(t, "three apps", nil)
	r, ns := f.r, f.ns
	code := func(kind, name string) string { return "<code>" + kind + "/" + ns + "/" + name + "</code>" }

	md := []string{"diff", "-o", "markdown"}
	r.run("diff -o markdown", 2, []string{plan.Marker, code("Secret", "plain-sops") + " create", code("Secret", "web-credentials") + " create",
		"`Job/" + ns + "/web-migrate`", "'***'", code("ConfigMap", lookupConfigMap) + " create", "UPSTREAM_TOKEN: ***"}, md...)
	r.run("apply", 0, nil, "apply")
	// The canaries went through deliver, and the scanner finds them where
	// they belong: it would in a body.
	sec, err := env.Client().CoreV1().Secrets(ns).Get(ctx, "web-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, v := range sec.Data {
		for _, h := range sc.scan("Secret web-credentials", v) {
			found = append(found, h.Canary)
		}
	}
	if !slices.Contains(found, c.vaultValues.Name) || !slices.Contains(found, c.sopsValues.Name) {
		t.Errorf("Secret %s/web-credentials: canaries %v found, want %s and %s", ns, found, c.vaultValues.Name, c.sopsValues.Name)
	}
	if _, err := vc.KVv2("secret").Put(ctx, "leaks/web", map[string]any{"apiKey": c.vaultRotated.Value}); err != nil {
		t.Fatal(err)
	}
	r.run("diff -o markdown of a secret rotated in Vault", 2, []string{code("Secret", "web-credentials") + " update", "*** (after)"}, md...)
	r.run("diff -o markdown of the object the apiserver rejects", 2, []string{code("ConfigMap", "reject") + " create", "tier: ***"},
		append(md, "--config", "reject.yaml")...)
	// failhook delivers app web too: its inventory records the run without
	// an environment, so the plan fails with an identity conflict, shown.
	r.run("diff -o markdown of a failing app", 1, []string{"| failed |", "**`web`** failed"}, append(md, "--env", "failhook")...)
	// A render that fails on the Secret holding canaries: the body says
	// the plan failed, with the error.
	r.run("diff -o markdown of a failing render", 1, []string{plan.Marker, "deliver diff failed", "postRenderers[0].kustomize.patches[1]"},
		append(md, "--config", "postrender-fail.yaml")...)
	r.run("diff -o markdown cut to 1500 bytes", 2, []string{"object diffs are left out"}, append(md, "--markdown-max-bytes", "1500")...)

	t.Run("scan", func(t *testing.T) {
		n := 0
		for _, o := range r.outputs {
			if strings.HasSuffix(o.where, "(stdout)") && strings.Contains(o.where, "markdown") && len(o.data) > 0 {
				n++
			}
			for _, h := range sc.scan(o.where, o.data) {
				t.Errorf("LEAK %s", h)
			}
		}
		if n != 6 {
			t.Errorf("%d Markdown bodies scanned, want 6", n)
		}
	})
}
