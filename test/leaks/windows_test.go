package leaks

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestNoSecretLeaksWindows is the canary scan over what change windows
// (docs/windows.md) add: diff's note of a held app, apply's refusal and
// its --ignore-windows run, the reconciler's hold in its log, /metrics
// and the status ConfigMap, and deliver status. App web, held, reads
// SOPS and Vault canaries; app plain, not held, too.
func TestNoSecretLeaksWindows(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	l := newLeakRun(t)
	c, sc, base, out := l.c, l.sc, l.base, l.out
	webhookFile := writeFile(t, filepath.Join(base, "keys", "webhook-secret"), c.webhookSecret.Value+"\n")
	l.putVault(ctx, t, map[string][2]string{"leaks/web": {"apiKey", c.vaultValues.Value}, "leaks/plain": {"token", c.vaultManifest.Value}})

	// A deny window of app web, activated a minute ago, for an hour.
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	f := l.serveFixture(t, "a window holds web", func(repo *gitserver.Repo, ns string) {
		repo.WriteFile("deliver.yaml", strings.ReplaceAll(config(plainApp, webApp), "$NS", ns)+
			fmt.Sprintf("windows:\n- {kind: deny, schedule: \"%d %d * * *\", duration: 1h, apps: [web]}\n", start.Minute(), start.Hour()))
	})
	r, url, ns, inv, environ := f.r, f.url, f.ns, f.inv, f.r.environ
	held := "held by windows[0]"
	r.run("diff of a held app", 2, []string{held + " (deny", "apply refuses it", "Secret/" + ns + "/web-credentials create"}, "diff")
	r.run("diff -o json of a held app", 2, []string{`"held": "` + held}, "diff", "-o", "json")
	r.run("apply refused", 1, []string{"held by a change window", "app web: " + held}, "apply", "-v")
	// The one Secret of ns is the fixture's own, which web's chart looks up.
	list, err := env.Client().CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wrote []string
	for _, s := range list.Items {
		if s.Name != lookupSecret && s.Name != valuesSecret { // the test's, not deliver's
			wrote = append(wrote, s.Name)
		}
	}
	if len(wrote) != 0 {
		t.Fatalf("apply refused by a window wrote Secrets %v", wrote)
	}

	rec := startReconciler(t, environ, url, inv, filepath.Join(out, "reconcile-cache"), webhookFile)
	var statusData map[string]string
	rec.waitFor("plain delivered and web held", 90*time.Second, func() bool {
		cm, err := reconcile.ReadStatus(ctx, env.Client(), inv)
		if err != nil {
			return false
		}
		statusData = cm.Data
		return strings.Contains(cm.Data["plain"], `"result":"succeeded"`) && strings.Contains(cm.Data["web"], `"held":"`+held)
	})
	if m := rec.get("/metrics"); !strings.Contains(m, `deliver_reconcile_held{app="web"} 1`) {
		t.Errorf("/metrics lacks the held gauge of web")
	}
	r.run("status of a held app", 0, []string{"pending,held", held}, "status")
	r.run("status -o json of a held app", 0, []string{`"held": "` + held}, "status", "-o", "json")
	rec.stop()
	r.run("apply --ignore-windows", 0, []string{held + " (deny", "applied with --ignore-windows", "Secret/" + ns + "/web-credentials created"}, "apply", "--ignore-windows", "-v")

	outputs := append(append(r.outputs, rec.outputs()...), output{where: "ConfigMap " + inv + "/" + reconcile.StatusConfigMap, data: []byte(fmt.Sprint(statusData))})
	for _, o := range outputs {
		for _, h := range sc.scan(o.where, o.data) {
			t.Errorf("LEAK %s", h)
		}
	}
}
