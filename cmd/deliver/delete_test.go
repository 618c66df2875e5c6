package main

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestDeleteCommand: deliver delete, the binary against a real control
// plane and a served repository. An app that left deliver.yaml keeps its
// objects through apply; delete --dry-run lists it with its deletions and
// exits 2, naming the objects and never showing what they hold (which may
// be secret values git no longer names); delete of an app still listed exits 1 naming it; delete
// removes the app's objects and inventory, and leaves the objects of an
// app with prune: false (deletionPolicy MirrorPrune) while deleting its
// inventory; a second delete finds nothing.
func TestDeleteCommand(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	repo, url, _ := webRepo(t, ns)
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n- {name: api, namespace: "+ns+", manifests: {path: api}}\n"+
		"- {name: keep, namespace: "+ns+", manifests: {path: keep}, prune: false}\n")
	repo.WriteFile("api/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata: {token: body-not-shown-5e2}\n")
	repo.WriteFile("keep/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: b}\n")
	repo.CommitAll("api and keep")
	common := []string{"--kubeconfig", env.Kubeconfig, "--repo", url, "--cache-dir", t.TempDir(), "--inventory-namespace", inv}
	runExpect(t, 0, []string{"apply", "--wait=false"}, common...)

	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n")
	repo.CommitAll("api and keep leave")
	runExpect(t, 0, []string{"apply", "--wait=false"}, common...)
	if color(ns) != "blue" || !apiExists(t, ns) {
		t.Fatal("apply removed the app that left deliver.yaml")
	}
	out := runExpect(t, 2, []string{"delete", "--dry-run"}, common...)
	if !strings.Contains(out, "== app api") || !strings.Contains(out, "ConfigMap/"+ns+"/api: to delete") || strings.Contains(out, "== app web") || strings.Contains(out, "body-not-shown") {
		t.Errorf("delete --dry-run, want api's ConfigMap named (not its data) and not web:\n%s", out)
	}
	if !strings.Contains(out, "ConfigMap/"+ns+"/keep: stays in the cluster (deletionPolicy Orphan)") {
		t.Errorf("delete --dry-run, want keep's ConfigMap to stay (prune: false, so MirrorPrune orphans):\n%s", out)
	}
	// --deletion-policy replaces the recorded one; a wrong one is refused.
	if out := runExpect(t, 2, []string{"delete", "keep", "--dry-run", "--deletion-policy", "Delete"}, common...); !strings.Contains(out, "ConfigMap/"+ns+"/keep: to delete") {
		t.Errorf("delete keep --dry-run --deletion-policy Delete, want its ConfigMap deleted:\n%s", out)
	}
	if out := runExpect(t, 1, []string{"delete", "--deletion-policy", "MirrorPrune"}, common...); !strings.Contains(out, `--deletion-policy: unknown deletion policy "MirrorPrune" for a removal (want Delete, WaitForTermination or Orphan)`) {
		t.Errorf("delete --deletion-policy MirrorPrune, want it refused:\n%s", out)
	}
	if !apiExists(t, ns) {
		t.Fatal("delete --dry-run deleted")
	}
	if out := runExpect(t, 1, []string{"delete", "web"}, common...); !strings.Contains(out, "remove app web: deliver.yaml lists it") {
		t.Errorf("delete web (listed): want it refused:\n%s", out)
	}
	out = runExpect(t, 0, []string{"delete"}, common...)
	if !strings.Contains(out, ", 1 deleted, 0 failed; inventory deleted") || strings.Contains(out, "body-not-shown") {
		t.Errorf("delete: want api removed:\n%s", out)
	}
	if !strings.Contains(out, ", 0 failed, 1 left in the cluster (deletionPolicy Orphan); inventory deleted") {
		t.Errorf("delete: want keep's inventory deleted and its ConfigMap left:\n%s", out)
	}
	if apiExists(t, ns) || color(ns) != "blue" {
		t.Error("delete removed the wrong objects")
	}
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "keep", metav1.GetOptions{}); err != nil {
		t.Errorf("keep's ConfigMap after delete: %v, want it left", err)
	}
	if _, err := env.Client().CoreV1().Secrets(inv).Get(context.Background(), apply.InventoryName("api"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("api's inventory after delete: %v", err)
	}
	if out := runExpect(t, 0, []string{"delete", "--dry-run"}, common...); !strings.Contains(out, "no app to remove") {
		t.Errorf("a second delete --dry-run:\n%s", out)
	}
}

func apiExists(t *testing.T, ns string) bool {
	t.Helper()
	_, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}
