package pipeline

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/restart"
)

// TestRestartInputs: against a real Vault, git server and control plane,
// the unchanged-inputs fast path and restartOnConfigChange together.
// Turning the setting on renders the app (it was unchanged otherwise) and
// stamps its Deployment; with nothing changed the app is planned from its
// inventory and the stamp stays; a new version of the Vault secret that
// the Deployment's Secret holds renders the app and changes the stamp
// (the workload rolls), which holds no form of the value.
func TestRestartInputs(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns := env.Namespace(t)
	ctx := context.Background()
	const (
		canary1 = "CANARY-rs-1-3f8a20"
		canary2 = "CANARY-rs-2-b7c511"
	)
	tv, vc := testenv.NewVault(t)
	if _, err := vc.KVv2("secret").Put(ctx, "web", map[string]any{"password": canary1}); err != nil {
		t.Fatal(err)
	}

	config := func(setting string) string {
		return "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: " + ns + ", manifests: {path: web}" + setting + "}\n"
	}
	repo, opts := servedRepo(t, ns, map[string]string{
		"deliver.yaml":    config(""),
		"web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: \"ref+vault://secret/web#/password\"}\n",
		"web/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/web:1, envFrom: [{secretRef: {name: web}}]}]
`,
	})
	logs := &lockedBuffer{}
	opts.Secrets.Getenv = func(k string) string {
		return map[string]string{"VAULT_ADDR": tv.Addr, "VAULT_TOKEN": tv.Token}[k]
	}
	noWait := false
	opts.Wait = &noWait // no controllers here: a changed template is the roll
	opts.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	applyRun := func(what string, want []string) {
		t.Helper()
		runRendering(t, what, Apply, opts, want)
	}
	stamp := func() string {
		t.Helper()
		d, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[restart.Annotation]
	}

	applyRun("first apply, setting off", []string{"web"})
	applyRun("nothing changed", nil)
	if s := stamp(); s != "" {
		t.Fatalf("stamp with the setting off: %q", s)
	}
	repo.WriteFile("deliver.yaml", config(", restartOnConfigChange: true"))
	repo.CommitAll("restart on config change")
	applyRun("setting turned on", []string{"web"})
	s1 := stamp()
	if !strings.HasPrefix(s1, "hmac-sha256:") {
		t.Fatalf("stamp = %q, want an HMAC", s1)
	}
	applyRun("nothing changed, setting on", nil)
	if s := stamp(); s != s1 {
		t.Errorf("stamp moved with nothing changed: %s, was %s", s, s1)
	}
	if _, err := vc.KVv2("secret").Put(ctx, "web", map[string]any{"password": canary2}); err != nil {
		t.Fatal(err)
	}
	applyRun("new Vault version", []string{"web"})
	s2 := stamp()
	if s2 == s1 || !strings.HasPrefix(s2, "hmac-sha256:") {
		t.Errorf("stamp after a new Vault version = %s, was %s: want a new HMAC", s2, s1)
	}
	for _, c := range []string{canary1, canary2} {
		if strings.Contains(s2, c) || strings.Contains(logs.String(), c) {
			t.Errorf("the stamp or the logs hold the secret value")
		}
	}
}
