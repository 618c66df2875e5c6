package apply_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// waveDeployment is a Deployment of one replica in wave (Argo CD's
// annotation), whose Pods no node takes when stuck is set.
func waveDeployment(name, wave string, stuck bool) string {
	spec := "{containers: [{name: c, image: app:1}]}"
	if stuck {
		spec = "{nodeSelector: {deliver.test/none: \"true\"}, containers: [{name: c, image: app:1}]}"
	}
	return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `, namespace: NS, annotations: {argocd.argoproj.io/sync-wave: "` + wave + `"}}
spec:
  replicas: 1
  progressDeadlineSeconds: 600
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec: ` + spec + `
`
}

// TestSyncWaves: objects of the workloads stage are applied wave by wave,
// lower first, each wave ready before the next is applied (Argo CD's
// sync-wave, or deliver.dev/wave), whatever the app's wait; a wave that
// does not become ready stops the run before the next wave is written,
// naming the wave; config kinds are applied first whatever their wave.
func TestSyncWaves(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cs := env.Client()
	m := newManager(t, apply.Options{Timeout: 20 * time.Second})
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: NS, annotations: {deliver.dev/wave: \"5\"}}\ndata: {a: b}\n"
	set := objects(t, ns, strings.Join([]string{
		waveDeployment("third", "2", false), waveDeployment("first", "-1", false), waveDeployment("second", "0", false), cm,
	}, "\n---\n"))
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	dep := func(name string) *appsv1.Deployment {
		t.Helper()
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	available := func(d *appsv1.Deployment) time.Time {
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == "True" {
				return c.LastTransitionTime.Time
			}
		}
		t.Fatalf("Deployment %s not available", d.Name)
		return time.Time{}
	}
	first, second, third := dep("first"), dep("second"), dep("third")
	// Readiness is observed through the watch, after the condition's
	// time (seconds): the next wave is created no earlier.
	if second.CreationTimestamp.Time.Before(available(first)) || third.CreationTimestamp.Time.Before(available(second)) {
		t.Errorf("waves out of order: first available %v, second created %v, available %v, third created %v",
			available(first), second.CreationTimestamp, available(second), third.CreationTimestamp)
	}
	settings, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !settings.CreationTimestamp.Time.Before(first.CreationTimestamp.Time) && !settings.CreationTimestamp.Equal(&first.CreationTimestamp) {
		t.Errorf("config (wave 5) created %v, after the first wave's Deployment %v", settings.CreationTimestamp, first.CreationTimestamp)
	}

	// A wave that does not become ready: the next is not written.
	ns2 := env.Namespace(t)
	bad := objects(t, ns2, waveDeployment("broken", "0", true)+"\n---\n"+waveDeployment("after", "1", false))
	_, err = m.Apply(ctx, bad, apply.PlanOptions{App: ns2})
	if err == nil || !strings.Contains(err.Error(), "sync wave 0") || !strings.Contains(err.Error(), "Deployment/"+ns2+"/broken") {
		t.Errorf("error = %v, want one naming sync wave 0 and the broken Deployment", err)
	}
	if _, err := cs.AppsV1().Deployments(ns2).Get(ctx, "after", metav1.GetOptions{}); err == nil {
		t.Error("the next wave was applied after a wave that did not become ready")
	}

	_, err = m.Plan(ctx, objects(t, ns, strings.Replace(waveDeployment("x", "0", false), `"0"`, `"soon"`, 1)), apply.PlanOptions{App: ns})
	if err == nil || !strings.Contains(err.Error(), "Deployment/"+ns+"/x") || !strings.Contains(err.Error(), `"soon" is not an integer`) {
		t.Errorf("bad wave: error %v", err)
	}
}
