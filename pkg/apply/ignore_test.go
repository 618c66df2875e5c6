package apply_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
)

// sizeCM is a ConfigMap whose data.size another writer may own.
func sizeCM(color, annotations string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: NS\n" + annotations + "data:\n  size: \"1\"\n  color: " + color + "\n"
}

// sizeRule ignores data.size of every ConfigMap.
var sizeRule = []apply.IgnoreRule{{Kind: "ConfigMap", JSONPointers: []string{"/data/size"}}}

// owns reports whether manager's entry in the object's managedFields
// holds the field named f (as "f:size").
func owns(fields []metav1.ManagedFieldsEntry, manager, f string) bool {
	for _, mf := range fields {
		if mf.Manager == manager && mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"`+f+`"`) {
			return true
		}
	}
	return false
}

// planDiff plans set and returns the plan and its printed diff.
func planDiff(t *testing.T, m *apply.Manager, set *object.Set, po apply.PlanOptions) (*apply.Plan, string) {
	t.Helper()
	p, err := m.Plan(context.Background(), set, po)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteDiff(&b, apply.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	return p, b.String()
}

// TestIgnoredFieldOfAnotherManager: a field an ignore rule names, written
// by a second field manager (a server-side apply, then an update), is no
// difference for the diff, the apply does not revert it and releases it,
// and a real change next to it in the same object is still applied. The
// object is created with the rendered value (it starts complete). The
// rule reaches the plan through PlanOptions.Ignore, and the annotation
// form through deliver.dev/ignore-fields.
func TestIgnoredFieldOfAnotherManager(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		rules       []apply.IgnoreRule
		annotations string
	}{
		{name: "rule", rules: sizeRule},
		{name: "annotation", annotations: "  annotations:\n    deliver.dev/ignore-fields: /data/size\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := env.Namespace(t)
			m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
			po := apply.PlanOptions{App: ns, Ignore: tc.rules}
			if _, err := m.Apply(ctx, objects(t, ns, sizeCM("blue", tc.annotations)), po); err != nil {
				t.Fatal(err)
			}
			cms := env.Client().CoreV1().ConfigMaps(ns)
			if got := cmData(t, ns)["size"]; got != "1" {
				t.Fatalf("created with size %q, want the rendered 1", got)
			}
			// Another manager's server-side apply takes the field.
			other := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"size":"5"}}`)
			force := true
			if _, err := cms.Patch(ctx, "cfg", types.ApplyPatchType, other, metav1.PatchOptions{FieldManager: "autoscaler", Force: &force}); err != nil {
				t.Fatal(err)
			}
			p, diff := planDiff(t, m, objects(t, ns, sizeCM("blue", tc.annotations)), po)
			if p.HasChanges() {
				t.Errorf("diff after another manager wrote the ignored field: %s\n%s", p.Summary(), diff)
			}
			rep, err := m.Apply(ctx, objects(t, ns, sizeCM("blue", tc.annotations)), po)
			if err != nil {
				t.Fatal(err)
			}
			if got := cmData(t, ns)["size"]; got != "5" || actions(rep)["ConfigMap/"+ns+"/cfg"] != apply.Unchanged {
				t.Errorf("apply: size %q, report %s; want the other manager's 5 kept, nothing changed", got, rep.Summary())
			}
			// An update (kubectl edit) of the field, and a change in git next
			// to it.
			if _, err := cms.Patch(ctx, "cfg", types.MergePatchType, []byte(`{"data":{"size":"7"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
				t.Fatal(err)
			}
			p, diff = planDiff(t, m, objects(t, ns, sizeCM("red", tc.annotations)), po)
			if p.Count(apply.ChangeUpdate) != 1 || !strings.Contains(diff, "+  color: red") || changed(diff, "size") {
				t.Errorf("diff with color changed in git: want the color and not the size:\n%s", diff)
			}
			if _, err := m.Apply(ctx, objects(t, ns, sizeCM("red", tc.annotations)), po); err != nil {
				t.Fatal(err)
			}
			cm, err := cms.Get(ctx, "cfg", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cm.Data["size"] != "7" || cm.Data["color"] != "red" {
				t.Errorf("after the apply: %v, want size 7 (kept) and color red (applied)", cm.Data)
			}
			if owns(cm.ManagedFields, apply.DefaultFieldManager, "f:size") || !owns(cm.ManagedFields, apply.DefaultFieldManager, "f:color") {
				t.Errorf("deliver's ownership: want f:color and not f:size: %+v", cm.ManagedFields)
			}
		})
	}
}

// changed reports whether a diff adds or removes a line with field.
func changed(diff, field string) bool {
	for line := range strings.SplitSeq(diff, "\n") {
		if (strings.HasPrefix(line, "+ ") || strings.HasPrefix(line, "- ")) && strings.Contains(line, field) {
			return true
		}
	}
	return false
}

func cmData(t *testing.T, ns string) map[string]string {
	t.Helper()
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(context.Background(), "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// TestIgnoredFieldSoleOwner is the trap of server-side apply: deliver
// applied data.size (its only owner), then a rule starts ignoring it. An
// apply that merely left it out would make the server delete it. The
// field is handed over instead: the live value stays, deliver no longer
// owns it, and the next writer takes it; the diff stays clean.
func TestIgnoredFieldSoleOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	if _, err := m.Apply(ctx, objects(t, ns, sizeCM("blue", "")), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	po := apply.PlanOptions{App: ns, Ignore: sizeRule}
	p, diff := planDiff(t, m, objects(t, ns, sizeCM("red", "")), po)
	if changed(diff, "size") || p.Count(apply.ChangeUpdate) != 1 {
		t.Errorf("diff: want the color changed and the size not shown:\n%s", diff)
	}
	if _, err := m.Apply(ctx, objects(t, ns, sizeCM("red", "")), po); err != nil {
		t.Fatal(err)
	}
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["size"] != "1" || cm.Data["color"] != "red" {
		t.Errorf("after the apply: %v, want size 1 kept and color red", cm.Data)
	}
	if owns(cm.ManagedFields, apply.DefaultFieldManager, "f:size") {
		t.Errorf("deliver still owns data.size: %+v", cm.ManagedFields)
	}
	// The next writer (an update: kubectl edit, an autoscaler) takes it
	// from the hand-over manager; deliver does not revert it.
	if _, err := env.Client().CoreV1().ConfigMaps(ns).Patch(ctx, "cfg", types.MergePatchType, []byte(`{"data":{"size":"3"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if p, diff := planDiff(t, m, objects(t, ns, sizeCM("red", "")), po); p.HasChanges() {
		t.Errorf("diff after the other manager's write: %s\n%s", p.Summary(), diff)
	}
}

// webhookConfig is a MutatingWebhookConfiguration of two webhooks that
// never fire (their rules name a resource no server serves), with the
// placeholder caBundle a chart ships for cert-manager's cainjector to fill.
func webhookConfig(name string, timeout int) string {
	hook := func(n string) string {
		return "- name: " + n + ".example.com\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Ignore\n" +
			"  timeoutSeconds: " + string(rune('0'+timeout)) + "\n" +
			"  clientConfig:\n    url: https://" + n + ".example.com/mutate\n    caBundle: Cg==\n" +
			"  rules:\n  - {apiGroups: [example.com], apiVersions: [v1], operations: [CREATE], resources: [widgets]}\n"
	}
	return "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: " + name + "\nwebhooks:\n" + hook("a") + hook("b")
}

func caBundles(t *testing.T, name string) []string {
	t.Helper()
	w, err := env.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range w.Webhooks {
		out = append(out, string(h.ClientConfig.CABundle)+"/"+string(rune('0'+*h.TimeoutSeconds)))
	}
	return out
}

// TestCABundleInjected: the built-in rule. A webhook configuration whose
// caBundle another manager (cainjector, with an update) owns: the diff
// does not show it, and an apply of a change next to it keeps it. Without
// another owner, the caBundle in git is applied as any field.
func TestCABundleInjected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	name := ns + "-hooks"
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	t.Cleanup(func() {
		_ = env.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	po := apply.PlanOptions{App: ns}
	if _, err := m.Apply(ctx, objects(t, ns, webhookConfig(name, 5)), po); err != nil {
		t.Fatal(err)
	}
	// cainjector writes the real bundle into both webhooks.
	patch := []byte(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"aW5qZWN0ZWQ="},{"op":"replace","path":"/webhooks/1/clientConfig/caBundle","value":"aW5qZWN0ZWQ="}]`)
	if _, err := env.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "cert-manager-cainjector"}); err != nil {
		t.Fatal(err)
	}
	if p, diff := planDiff(t, m, objects(t, ns, webhookConfig(name, 5)), po); p.HasChanges() {
		t.Errorf("diff after the caBundle was injected: %s\n%s", p.Summary(), diff)
	}
	p, diff := planDiff(t, m, objects(t, ns, webhookConfig(name, 7)), po)
	if p.Count(apply.ChangeUpdate) != 1 || changed(diff, "caBundle") {
		t.Errorf("diff with timeoutSeconds changed: want it and no caBundle:\n%s", diff)
	}
	if _, err := m.Apply(ctx, objects(t, ns, webhookConfig(name, 7)), po); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(caBundles(t, name), ","), "injected/7,injected/7"; got != want {
		t.Errorf("caBundle/timeout = %s, want %s", got, want)
	}
}

// TestIgnoredListFieldSoleOwner: a field inside list items that deliver
// alone owns (a caBundle it applied, no injector), then ignored by a rule
// with the * wildcard: the apply of a change next to it keeps the live
// values (deliver keeps sending them: a partial body cannot name a list
// item without its merge keys), and the diff does not show them.
func TestIgnoredListFieldSoleOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	name := ns + "-hooks"
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	t.Cleanup(func() {
		_ = env.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if _, err := m.Apply(ctx, objects(t, ns, webhookConfig(name, 5)), apply.PlanOptions{App: ns}); err != nil {
		t.Fatal(err)
	}
	po := apply.PlanOptions{App: ns, Ignore: []apply.IgnoreRule{{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration", Name: name, JSONPointers: []string{"/webhooks/*/clientConfig/caBundle"}}}}
	// git's placeholder changes; the rule keeps it out.
	manifest := strings.ReplaceAll(webhookConfig(name, 6), "Cg==", "Cgo=")
	p, diff := planDiff(t, m, objects(t, ns, manifest), po)
	if p.Count(apply.ChangeUpdate) != 1 || changed(diff, "caBundle") {
		t.Errorf("diff: want the timeout changed and no caBundle:\n%s", diff)
	}
	if _, err := m.Apply(ctx, objects(t, ns, manifest), po); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(caBundles(t, name), ","), "\n/6,\n/6"; got != want {
		t.Errorf("caBundle/timeout = %q, want %q (the live bundle kept)", got, want)
	}
}

// TestIgnoreErrors: a bad pointer in a rule or in the annotation fails the
// plan with a message naming the object, its origin and the pointer.
func TestIgnoreErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	for _, tc := range []struct {
		name, annotations string
		rules             []apply.IgnoreRule
		want              string
	}{
		{"annotation", "  annotations:\n    deliver.dev/ignore-fields: /data/size,data/color\n", nil, `"data/color" must start with /`},
		{"rule", "", []apply.IgnoreRule{{Kind: "ConfigMap", JSONPointers: []string{"/data/~2"}}}, "~ must be followed by 0 or 1"},
	} {
		_, err := m.Plan(ctx, objects(t, ns, sizeCM("blue", tc.annotations)), apply.PlanOptions{App: ns, Ignore: tc.rules})
		if err == nil || !strings.Contains(err.Error(), "ConfigMap/"+ns+"/cfg (test.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming the object, its file and %q", tc.name, err, tc.want)
		}
	}
	// A rule for a kind the cluster does not serve is no error: its CRD
	// may come later.
	unserved := []apply.IgnoreRule{{Group: "widgets.example.com", Kind: "Widget", JSONPointers: []string{"/spec/size"}}}
	if _, err := m.Plan(ctx, objects(t, ns, sizeCM("blue", "")), apply.PlanOptions{App: ns, Ignore: unserved}); err != nil {
		t.Errorf("a rule for a kind the cluster does not serve: %v", err)
	}
}

// TestIgnoredFieldIsNoDriftForTheFastPath: a write of only an ignored
// field by another manager leaves PlanUnchanged's plan (no render, no dry
// run) in place; a write of another field does not.
func TestIgnoredFieldIsNoDriftForTheFastPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	in := &apply.Inputs{Digest: "sha256:one", Paths: []string{"f:app/cm.yaml"}}
	same := func(got *apply.Inputs) bool { return got.Digest == in.Digest }
	po := apply.PlanOptions{App: ns, Ignore: sizeRule, Inputs: in}
	if _, err := m.Apply(ctx, objects(t, ns, sizeCM("blue", "")), po); err != nil {
		t.Fatal(err)
	}
	inv, err := m.ReadInventory(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := json.Marshal(inv.Entries); !strings.Contains(string(data), `"ignore":["/data/size"]`) {
		t.Errorf("inventory entries %s: want the ignored field recorded", data)
	}
	cms := env.Client().CoreV1().ConfigMaps(ns)
	edit := func(patch string) {
		t.Helper()
		if _, err := cms.Patch(ctx, "cfg", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
	}
	edit(`{"data":{"size":"9"}}`)
	if p, err := m.PlanUnchanged(ctx, apply.PlanOptions{App: ns}, same); err != nil || p == nil || p.HasChanges() {
		t.Errorf("after a write of the ignored field: plan %v, err %v; want every object unchanged", p, err)
	}
	edit(`{"data":{"color":"green"}}`)
	if p, err := m.PlanUnchanged(ctx, apply.PlanOptions{App: ns}, same); err != nil || p != nil {
		t.Errorf("after a write of another field: plan %v, err %v; want none (render and revert)", p, err)
	}
}

// TestRecreatedObjectStartsComplete: an object deleted and re-created for
// an immutable change is a new object: it gets the ignored fields' values
// from git, as a first create does, not an object without them.
func TestRecreatedObjectStartsComplete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	po := apply.PlanOptions{App: ns, Ignore: []apply.IgnoreRule{{Group: "batch", Kind: "Job", JSONPointers: []string{"/metadata/annotations/note"}}}}
	v1 := strings.Replace(strings.ReplaceAll(job, "LABELS", "{app: migrate}"), "metadata: {name: migrate, namespace: NS}",
		"metadata: {name: migrate, namespace: NS, annotations: {note: from-git, deliver.dev/recreate: \"true\"}}", 1)
	if _, err := m.Apply(ctx, objects(t, ns, v1), po); err != nil {
		t.Fatal(err)
	}
	jobs := env.Client().BatchV1().Jobs(ns)
	if _, err := jobs.Patch(ctx, "migrate", types.MergePatchType, []byte(`{"metadata":{"annotations":{"note":"edited"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Apply(ctx, objects(t, ns, strings.ReplaceAll(v1, "app:1.0", "app:2.0")), po)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep)["Job/"+ns+"/migrate"]; got != apply.Recreated || j.Annotations["note"] != "from-git" {
		t.Errorf("action %s, note %q; want recreated with git's note", got, j.Annotations["note"])
	}
}

// TestCRDConversionCABundleInjected: the built-in rule for a CRD's
// conversion webhook: an injected caBundle is no difference, and an apply
// of a change next to it keeps it.
func TestCRDConversionCABundleInjected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	group := ns + ".example.com"
	name := "gadgets." + group
	// The API server checks a conversion webhook's bundle: two real ones.
	placeholder, injected := caPEM(t), caPEM(t)
	crd := func(short string) string {
		return "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: " + name + "}\nspec:\n  group: " + group + "\n  scope: Namespaced\n" +
			"  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList, shortNames: [" + short + "]}\n" +
			"  conversion:\n    strategy: Webhook\n    webhook:\n      conversionReviewVersions: [v1]\n      clientConfig:\n        url: https://convert.example.com/convert\n        caBundle: Cg==\n" +
			"  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n"
	}
	// The bundle is set after objects() fills in NS, which base64 may hold.
	crdSet := func(short string) *object.Set {
		set := objects(t, ns, crd(short))
		if err := unstructured.SetNestedField(set.Objects[0].Object, placeholder, "spec", "conversion", "webhook", "clientConfig", "caBundle"); err != nil {
			t.Fatal(err)
		}
		return set
	}
	m := newManager(t, apply.Options{InventoryNamespace: env.Namespace(t)})
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	t.Cleanup(func() { _ = crds.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	po := apply.PlanOptions{App: ns}
	if _, err := m.Apply(ctx, crdSet("gd"), po); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`[{"op":"replace","path":"/spec/conversion/webhook/clientConfig/caBundle","value":"` + injected + `"}]`)
	if _, err := crds.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "cert-manager-cainjector"}); err != nil {
		t.Fatal(err)
	}
	if p, diff := planDiff(t, m, crdSet("gd"), po); p.HasChanges() {
		t.Errorf("diff after the caBundle was injected: %s\n%s", p.Summary(), diff)
	}
	if _, err := m.Apply(ctx, crdSet("gdg"), po); err != nil {
		t.Fatal(err)
	}
	got, err := crds.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _, _ := unstructured.NestedString(got.Object, "spec", "conversion", "webhook", "clientConfig", "caBundle")
	short, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "names", "shortNames")
	if bundle != injected || len(short) != 1 || short[0] != "gdg" {
		t.Errorf("caBundle %q, short names %v; want the injected one kept and gdg applied", bundle, short)
	}
}

// caPEM returns a new self-signed CA certificate, PEM, base64-encoded as a
// caBundle field holds it.
func caPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
