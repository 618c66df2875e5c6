package leaks

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNoSecretLeaksPin drives deliver pin, rollback, unpin and status
// over the leak fixture (an app whose Helm values hold SOPS and Vault
// canaries, a git server behind a password canary) and scans every
// output, and every object of the cluster (the pin annotations on the
// inventory Secret included), for every canary: a pin of an unknown
// revision (the error names the repository), a rollback that renders and
// applies the canaries again and prints its report, status in text and
// JSON with the pin, and reconcile --once over the pinned app, whose
// status ConfigMap (the pin in it) is scanned with the cluster.
func TestNoSecretLeaksPin(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	ctx := context.Background()
	l := newLeakRun(t)
	c, sc := l.c, l.sc
	l.putVault(ctx, t, map[string][2]string{
		"leaks/web": {"apiKey", c.vaultValues.Value}, "leaks/plain": {"token", c.vaultManifest.Value},
		"leaks/hook": {"token", c.vaultHook.Value}, "leaks/worker": {"token", c.vaultWorkload.Value},
	})

	f := l.serveFixture(t, "three apps", nil)
	r, repo, ns, inv, first := f.r, f.repo, f.ns, f.inv, f.first
	withSource := func(args ...string) []string { return append(append(args, r.common...), r.cluster...) }

	r.run("apply", 0, []string{"hook Job/" + ns + "/web-migrate (pre-apply) hook-ran"}, "apply", "-v")
	second := commitSecond(t, repo, ns)
	r.run("apply of web 1.1.0", 0, []string{"Deployment/" + ns + "/web configured"}, "apply", "--app", "web")
	r.run("pin of an unknown revision", 1, []string{`app web: revision "no-such-tag" not found`}, withSource("pin", "web", "--revision", "no-such-tag", "--reason", "leak check")...)
	r.run("rollback", 0, []string{"rolled back app web from " + second[:12] + " to " + first[:12], "Deployment/" + ns + "/web configured", "hook Job/" + ns + "/web-migrate (pre-apply) hook-ran"},
		withSource("rollback", "web", "--reason", "leak check", "-v", "--timeout", "30s")...)
	r.run("rollback -o json", 1, []string{"no previous successful revision"}, withSource("rollback", "web", "--reason", "again", "-o", "json")...)
	r.run("status with a pin", 0, []string{"web pinned to " + first[:12] + " by "}, "status")
	r.run("status -o json with a pin", 0, []string{`"pin": {`, `"reason": "leak check"`}, "status", "-o", "json")
	// The reconciler over the pinned app: its status ConfigMap holds the
	// pin (scanned with the cluster's objects below), its summary names it;
	// it exits 1: the second commit adds two apps that fail (reject, hookfail).
	r.run("reconcile --once with a pin", 1, []string{"pinned, not advanced to " + second[:12] + ":\n  web: at " + first[:12] + ", pinned to " + first[:12]},
		withSource("reconcile", "--once", "--timeout", "30s")...)
	status, err := env.Client().CoreV1().ConfigMaps(inv).Get(ctx, "deliver-status", metav1.GetOptions{})
	if err != nil || !strings.Contains(status.Data["web"], `"pin":{"revision":"`+first) {
		t.Errorf("the reconciler's status ConfigMap lacks web's pin (err %v)", err) // its content is scanned below, not printed
	}
	r.run("pin -o json", 0, []string{`"revision": "` + second + `"`}, withSource("pin", "web", "--revision", "main", "--reason", "leak check", "-o", "json")...)
	r.run("unpin", 0, []string{"unpinned app web"}, append([]string{"unpin", "web"}, r.cluster...)...)
	r.run("suspend", 0, []string{"suspended app web"}, append([]string{"suspend", "web"}, r.cluster...)...)
	r.run("status of a suspended app", 0, []string{"web"}, "status")
	r.run("resume", 0, []string{"resumed app web"}, append([]string{"resume", "web"}, r.cluster...)...)
	r.run("suspend of an app never delivered", 1, []string{"suspend app nosuch: Secret/"}, append([]string{"suspend", "nosuch"}, r.cluster...)...)

	for _, o := range r.outputs {
		for _, h := range sc.scan(o.where, o.data) {
			t.Errorf("LEAK %s", h)
		}
	}
	objs, _ := clusterObjects(t, ns, c.vaultWorkload.Name)
	scanned, statusScanned := false, false
	for _, o := range objs {
		scanned = scanned || strings.HasPrefix(o.where, "Secret "+inv+"/deliver-inventory-web")
		statusScanned = statusScanned || strings.HasPrefix(o.where, "ConfigMap "+inv+"/deliver-status")
		for _, h := range o.allowed(sc.scan(o.where, o.data)) {
			t.Errorf("LEAK %s", h)
		}
	}
	if !scanned {
		t.Errorf("the inventory Secret of web, which holds the pin, was not scanned")
	}
	if !statusScanned {
		t.Errorf("the reconciler's status ConfigMap, which holds the pin, was not scanned")
	}
}
