package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// TestSuspendCommand: deliver suspend and resume set and remove the
// annotation on an app's inventory Secret, or with --all on the control
// ConfigMap (created when missing); an app never delivered fails naming
// its Secret, and the command wants apps or --all, not both.
func TestSuspendCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns, inv := env.Namespace(t), env.Namespace(t)
	_, url, root := webRepo(t, ns)
	common := []string{"--kubeconfig", env.Kubeconfig, "--inventory-namespace", inv}
	runExpect(t, 0, []string{"apply", "--repo", url, "--ref", "main", "--cache-dir", filepath.Join(root, "cache")}, common...)

	annotation := func(kind string) (string, bool) {
		t.Helper()
		var ann map[string]string
		switch kind {
		case "secret":
			s, err := env.Client().CoreV1().Secrets(inv).Get(ctx, "deliver-inventory-web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ann = s.Annotations
		default:
			cm, err := env.Client().CoreV1().ConfigMaps(inv).Get(ctx, reconcile.ControlConfigMap, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ann = cm.Annotations
		}
		v, ok := ann[reconcile.AnnotationSuspend]
		return v, ok
	}
	for _, tt := range []struct {
		args      []string
		kind, out string
		set       bool
	}{
		{[]string{"suspend", "web"}, "secret", "suspended app web", true},
		{[]string{"resume", "web"}, "secret", "resumed app web", false},
		{[]string{"suspend", "--all"}, "configmap", "suspended every app: ConfigMap " + inv + "/" + reconcile.ControlConfigMap, true},
		{[]string{"resume", "--all"}, "configmap", "resumed every app", false},
	} {
		if out := runExpect(t, 0, tt.args, common...); !strings.Contains(out, tt.out) {
			t.Errorf("%v: output %q, want %q", tt.args, out, tt.out)
		}
		if v, ok := annotation(tt.kind); ok != tt.set || tt.set && v != "true" {
			t.Errorf("after %v: %s annotation %q (present %v), want present %v", tt.args, tt.kind, v, ok, tt.set)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"suspend", "nosuch"}, "suspend app nosuch: Secret/" + inv + "/deliver-inventory-nosuch: no inventory Secret"},
		{[]string{"resume", "nosuch"}, "resume app nosuch: Secret/" + inv + "/deliver-inventory-nosuch: no inventory Secret"},
		{[]string{"suspend"}, "suspend: name the apps, or --all"},
		{[]string{"resume", "web", "--all"}, "resume: name the apps, or --all"},
	} {
		if out := runExpect(t, 1, tt.args, common...); !strings.Contains(out, tt.want) {
			t.Errorf("%v: output %q, want %q", tt.args, out, tt.want)
		}
	}
}
