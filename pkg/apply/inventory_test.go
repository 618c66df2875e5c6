package apply_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestInventoryOlderFormat: an inventory written by an older deliver (plain
// JSON under inventory.json) is read, and the next run rewrites it gzipped
// (inventory.json.gz) and drops the old key.
func TestInventoryOlderFormat(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	invNS := env.Namespace(t)
	old := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: apply.InventoryName(ns), Namespace: invNS, Labels: map[string]string{apply.LabelInventory: ns}},
		Type:       "deliver.dev/inventory",
		Data: map[string][]byte{"inventory.json": []byte(`{"app":"` + ns + `","revision":"r1","result":"succeeded",` +
			`"entries":[{"kind":"ConfigMap","namespace":"` + ns + `","name":"old","version":"v1","digest":"x"}]}`)},
	}
	if _, err := env.Client().CoreV1().Secrets(invNS).Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, apply.Options{InventoryNamespace: invNS})
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Revision != "r1" || len(inv.Entries) != 1 || inv.Entries[0].ID.Name != "old" {
		t.Fatalf("older inventory read as %+v", inv)
	}
	if _, err := m.Apply(ctx, objects(t, ns, cms("a")), apply.PlanOptions{App: ns, Revision: "r2"}); err != nil {
		t.Fatal(err)
	}
	s, err := env.Client().CoreV1().Secrets(invNS).Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Data["inventory.json"]; ok || len(s.Data["inventory.json.gz"]) == 0 {
		t.Errorf("inventory keys after a run: %v, want only inventory.json.gz", keys(s.Data))
	}
	if inv, err = m.ReadInventory(ctx, ns); err != nil || inv.Revision != "r2" {
		t.Errorf("inventory after a run: %+v, %v", inv, err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReadInventoriesMissingAndUnlabelled: reading many apps' inventories
// at once finds an inventory whose Secret lost its label (the lists
// select on it), tells the apps that have none without a GET each, and
// reads the labelled ones from the list.
func TestReadInventoriesMissingAndUnlabelled(t *testing.T) {
	ctx := context.Background()
	invNS := env.Namespace(t)
	secret := func(app string, labelled bool) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: apply.InventoryName(app), Namespace: invNS},
			Type:       "deliver.dev/inventory",
			Data:       map[string][]byte{"inventory.json": []byte(`{"app":"` + app + `","revision":"r-` + app + `","result":"succeeded"}`)},
		}
		if labelled {
			s.Labels = map[string]string{apply.LabelInventory: app}
		}
		return s
	}
	for _, s := range []*corev1.Secret{secret("labelled", true), secret("unlabelled", false)} {
		if _, err := env.Client().CoreV1().Secrets(invNS).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s, log := loggedSession(t)
	m := apply.NewManager(s, apply.Options{InventoryNamespace: invNS})
	apps := []string{"labelled", "unlabelled", "new-1", "new-2", "new-3"}
	invs, err := m.ReadInventories(ctx, apps)
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		want := ""
		if app == "labelled" || app == "unlabelled" {
			want = "r-" + app
		}
		if got := invs[app]; got == nil || got.Revision != want {
			t.Errorf("inventory of %s: %+v, want revision %q", app, got, want)
		}
	}
	var gets []string
	for _, r := range log.take() {
		if strings.HasPrefix(r, "done GET ") && strings.Contains(r, "/secrets/") {
			gets = append(gets, strings.TrimPrefix(r, "done "))
		}
	}
	if len(gets) != 1 || !strings.HasSuffix(gets[0], "/"+apply.InventoryName("unlabelled")) {
		t.Errorf("GETs of inventories %q, want only the unlabelled one", gets)
	}
}
