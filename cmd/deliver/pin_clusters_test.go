package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
)

// TestPinVerbsFollowTheEnvironment: with two control planes as the
// kubeconfig contexts staging (current) and prod, which deliver.yaml's
// environments name, rollback, pin and unpin with --env prod act on
// prod's cluster and leave staging's alone; unpin without --env acts on
// the current context, and --context prod wins over it.
func TestPinVerbsFollowTheEnvironment(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	second := testenv.StartSecond(t, false)
	ctx := context.Background()
	staging, prod := env.Client(), second.Client()
	ns, inv := env.Namespace(t), env.Namespace(t)
	for _, name := range []string{ns, inv} {
		if _, err := prod.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := testenv.WriteKubeconfigs(kubeconfig, map[string]*testenv.Cluster{"staging": env, "prod": second}, "staging"); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"environments:\n  staging: {context: staging}\n  prod: {context: prod}\n")
	release := func(r string) string {
		repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {release: \""+r+"\"}\n")
		return repo.CommitAll("release " + r)
	}
	first := release("1")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	deliver := func(wantCode int, args ...string) string {
		t.Helper()
		return runExpect(t, wantCode, args, "--kubeconfig", kubeconfig, "--inventory-namespace", inv)
	}
	source := []string{"--repo", url, "--cache-dir", filepath.Join(root, "cache")}
	pinOf := func(kc kubernetes.Interface) *apply.Pin {
		t.Helper()
		s, err := kc.CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return apply.PinOf(s.Annotations)
	}
	releaseIn := func(kc kubernetes.Interface) string {
		t.Helper()
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["release"]
	}

	deliver(0, append([]string{"apply", "--env", "staging"}, source...)...)
	deliver(0, append([]string{"apply", "--env", "prod"}, source...)...)
	second2 := release("2")
	deliver(0, append([]string{"apply", "--env", "prod"}, source...)...)
	if s, p := releaseIn(staging), releaseIn(prod); s != "1" || p != "2" {
		t.Fatalf("staging at release %s, prod at %s; want 1 and 2", s, p)
	}

	// rollback --env prod: prod's cluster, back to release 1.
	out := deliver(0, append([]string{"rollback", "web", "--env", "prod", "--reason", "release 2 is bad"}, source...)...)
	if !strings.Contains(out, "rolled back app web from "+second2[:12]+" to "+first[:12]) {
		t.Errorf("rollback output:\n%s", out)
	}
	if p := pinOf(prod); p == nil || p.Revision != first || releaseIn(prod) != "1" {
		t.Fatalf("after rollback --env prod: prod's pin %+v, release %s; want pinned to %s at release 1", p, releaseIn(prod), first)
	}
	if p := pinOf(staging); p != nil {
		t.Errorf("rollback --env prod pinned staging's app: %+v", p)
	}

	// unpin without --env: the current context, staging, where web has
	// no pin; prod's stays.
	if out := deliver(0, "unpin", "web"); !strings.Contains(out, "app web was not pinned") {
		t.Errorf("unpin in the current context: %s", out)
	}
	if pinOf(prod) == nil {
		t.Fatal("unpin without --env removed prod's pin")
	}
	// unpin --env prod: deliver.yaml names prod's context.
	if out := deliver(0, append([]string{"unpin", "web", "--env", "prod"}, source...)...); !strings.Contains(out, "unpinned app web (was pinned to "+first[:12]+")") {
		t.Errorf("unpin --env prod: %s", out)
	}
	if p := pinOf(prod); p != nil {
		t.Errorf("after unpin --env prod: prod still pinned %+v", p)
	}

	// pin --env prod, then unpin --context prod: the explicit context.
	deliver(0, append([]string{"pin", "web", "--env", "prod", "--revision", second2[:10], "--reason", "hold"}, source...)...)
	if p, s := pinOf(prod), pinOf(staging); p == nil || p.Revision != second2 || s != nil {
		t.Fatalf("after pin --env prod: prod's pin %+v, staging's %+v", p, s)
	}
	deliver(0, "unpin", "web", "--context", "prod")
	if p := pinOf(prod); p != nil {
		t.Errorf("after unpin --context prod: prod still pinned %+v", p)
	}
}

// TestPinVerbsFollowInventoryNamespace: an environment whose
// deliver.yaml entry names its inventoryNamespace keeps its inventories
// there, and pin, unpin and rollback with --env find them there without
// --inventory-namespace, as apply does.
func TestPinVerbsFollowInventoryNamespace(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	ns, inv := env.Namespace(t), env.Namespace(t)
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: "+ns+", manifests: {path: web}}\n"+
		"environments:\n  a: {inventoryNamespace: "+inv+"}\n")
	release := func(r string) string {
		repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {release: \""+r+"\"}\n")
		return repo.CommitAll("release " + r)
	}
	first := release("1")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("deploy")
	deliver := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", env.Kubeconfig, "--env", "a", "--repo", url, "--cache-dir", filepath.Join(root, "cache"))
		out, code := run(t, args...)
		if code != 0 {
			t.Fatalf("deliver %s: exit %d:\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	pinOf := func() *apply.Pin {
		t.Helper()
		s, err := env.Client().CoreV1().Secrets(inv).Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return apply.PinOf(s.Annotations)
	}

	deliver("apply")
	second := release("2")
	deliver("apply")
	deliver("pin", "web", "--revision", second[:10], "--reason", "hold")
	if p := pinOf(); p == nil || p.Revision != second {
		t.Fatalf("after pin --env a: the pin in %s is %+v, want %s", inv, p, second)
	}
	if out := deliver("unpin", "web"); !strings.Contains(out, "unpinned app web") {
		t.Errorf("unpin --env a: %s", out)
	}
	if p := pinOf(); p != nil {
		t.Fatalf("after unpin --env a: still pinned %+v", p)
	}
	deliver("rollback", "web", "--reason", "release 2 is bad")
	if p := pinOf(); p == nil || p.Revision != first {
		t.Fatalf("after rollback --env a: the pin in %s is %+v, want %s", inv, p, first)
	}
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || cm.Data["release"] != "1" {
		t.Fatalf("after rollback: ConfigMap %v, %v; want release 1", cm, err)
	}
}
