package apply_test

import (
	"context"
	"encoding/json"
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

// TestInventoryWithoutSecretPlaces: against an inventory of a deliver
// that recorded no places of secrets, a diff of an object pruned or of a
// field that left git shows no live value git does not hold now (any
// could be a secret no redactor knows any more); the next run records
// the places, and the diffs after it show the values that were no
// secret.
func TestInventoryWithoutSecretPlaces(t *testing.T) {
	ctx := context.Background()
	ns, invNS := env.Namespace(t), env.Namespace(t)
	const canary = "canary-unplaced-41be"
	// m's runs know the secret (git names it); later's do not (it left).
	m := newManager(t, apply.Options{InventoryNamespace: invNS, Redact: func(s string) string { return strings.ReplaceAll(s, canary, "***") }})
	later := newManager(t, apply.Options{InventoryNamespace: invNS, Redact: func(s string) string { return s }})
	opts := apply.PlanOptions{App: ns}
	cm := func(name, data string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: NS}\ndata: {" + data + "}\n"
	}
	if _, err := m.Apply(ctx, objects(t, ns, cm("web", "token: "+canary+", plain: shown-web")+"\n---\n"+cm("gone", "token: "+canary+", plain: shown-gone")), opts); err != nil {
		t.Fatal(err)
	}
	// What an earlier deliver wrote: no places, no flag.
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil || !inv.SecretPlaces {
		t.Fatalf("inventory after a run: SecretPlaces %v, %v; want true", inv != nil && inv.SecretPlaces, err)
	}
	inv.SecretPlaces = false
	for i := range inv.Entries {
		inv.Entries[i].Secrets = nil
	}
	plain, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Client().CoreV1().Secrets(invNS).Get(ctx, apply.InventoryName(ns), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"inventory.json": plain}
	if _, err := env.Client().CoreV1().Secrets(invNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The token leaves web, and gone leaves git.
	next := objects(t, ns, cm("web", "plain: shown-web"))
	diff := func() string {
		t.Helper()
		p, err := later.Plan(ctx, next, opts)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := p.WriteDiff(&b, apply.DiffOptions{}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	text := diff()
	if strings.Contains(text, canary) {
		t.Errorf("a diff against an inventory without places shows a secret that left git:\n%s", text)
	}
	for _, want := range []string{"ConfigMap/" + ns + "/gone", "token: '*** (before)'", "plain: shown-web"} {
		if !strings.Contains(text, want) {
			t.Errorf("the diff lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "shown-gone") {
		t.Errorf("the pruned object's values show, though nothing tells they were no secret:\n%s", text)
	}

	// A run with the token back records the places; the diff then shows
	// the pruned object's plain value, and masks only its token.
	if _, err := m.Apply(ctx, objects(t, ns, cm("web", "token: "+canary+", plain: shown-web")+"\n---\n"+cm("gone", "token: "+canary+", plain: shown-gone")), opts); err != nil {
		t.Fatal(err)
	}
	if inv, err := m.ReadInventory(ctx, ns); err != nil || !inv.SecretPlaces {
		t.Fatalf("inventory after the next run: SecretPlaces %v, %v; want true", inv != nil && inv.SecretPlaces, err)
	}
	text = diff()
	if strings.Contains(text, canary) || !strings.Contains(text, "shown-gone") || !strings.Contains(text, "token: '*** (before)'") {
		t.Errorf("the diff once places are recorded: want the token masked and shown-gone shown:\n%s", text)
	}
}
