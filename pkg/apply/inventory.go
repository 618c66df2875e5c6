package apply

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/pkg/object"
)

// Inventory is the cluster's memory of one app: what deliver applied, so
// that prune deletes only what deliver created and a no-change diff needs
// no dry run. It is stored in a Secret because the digests cover Secret
// objects, and a digest of a short secret could be brute-forced.
type Inventory struct {
	// App is the app's name.
	App string `json:"app"`
	// Revision is the git commit of the last run.
	Revision string `json:"revision,omitempty"`
	// Time is when the last run ended.
	Time time.Time `json:"time"`
	// Result is "succeeded" or "failed" after a run, and "applying" during
	// a run that creates objects, scales workloads down or runs hooks
	// (written before its first write). An "applying" inventory found by
	// the next run means that run was killed; it still lists every object
	// the run created. A run that only updates objects does not write it
	// first: Manager.RunState tells it is under way.
	Result string `json:"result"`
	// Message explains a failed result.
	Message string `json:"message,omitempty"`
	// Entries are the objects deliver owns for the app.
	Entries []Entry `json:"entries"`
	// Hooks records each hook's last successful run.
	Hooks []HookRecord `json:"hooks,omitempty"`
	// ScaledDown holds the replica counts of workloads a recreate scaled
	// to zero, until the new version runs, so a failed migration (or the
	// next run after a crash) can bring the old version back.
	ScaledDown []Scaled `json:"scaledDown,omitempty"`
	// Identity is who delivers the app (see identity.go); nil in the
	// inventories of older versions, which the next run records its own
	// in.
	Identity *Identity `json:"identity,omitempty"`
	// Workloads holds the desired object of each Deployment, StatefulSet
	// and DaemonSet, and of each object of a kind a health check judges
	// (Options.Health), of the last successful run (a run without Wait counts
	// as successful once applied), which a failed rollout rolls back to
	// (PlanOptions.RollbackOnFailure). Only workloads are
	// kept, and only up to MaxRollbackBytes in all, so the inventory Secret
	// stays far below the 1 MiB an object may have; none when one of them
	// inlines a secret value, which the inventory never holds.
	Workloads []Workload `json:"workloads,omitempty"`
	// Inputs is what the desired state of the last successful run was
	// made from (PlanOptions.Inputs): a later revision whose inputs have
	// the same digest needs no render. Nil after a failed run, and when
	// the inputs could not all be known.
	Inputs *Inputs `json:"inputs,omitempty"`
	// History lists the last MaxHistory revisions the app was delivered
	// at successfully, oldest first (see history.go): what a rollback
	// goes back to. A failed run adds none.
	History []HistoryEntry `json:"history,omitempty"`
	// SecretPlaces says every entry's Secrets were recorded: false in the
	// inventories of a deliver before it recorded them, whose entries name
	// no places, and after a run that kept such an entry unrecorded. A
	// diff against such an entry cannot tell which live values were
	// secrets, and masks every live value git does not hold now
	// (maskUnknownSecrets) until a run records them.
	SecretPlaces bool `json:"secretPlaces,omitempty"`
	// DeletionPolicy is what removing the app does with its objects
	// (PlanOptions.DeletionPolicy of the last run that set one); ""
	// in the inventories of older versions, which removes them
	// (DeletionDelete).
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// Pin is the app's pin, read from the inventory Secret's annotations
	// (see pin.go), not from its data; nil when the app is not pinned.
	Pin *Pin `json:"-"`

	// adopt is set when the inventory Secret is annotated with
	// AnnotationAdopt: a run of another identity takes the app over.
	adopt bool
	// dropAdopt removes AnnotationAdopt when the inventory is written: the
	// run that took the app over used it up.
	dropAdopt bool
	// plan is the run's plan, stored under its own key by the write
	// that ends the run (see StoredPlan); nil: the stored plan stays.
	plan *StoredPlan
	// stored says the inventory Secret exists: it was read from one, or
	// written. The first write of an app's inventory then creates it
	// outright rather than patching first to find it missing.
	stored bool
}

// Inputs identifies what an app's desired state is made from, so that a
// later revision can tell, without rendering, that it would render the
// same objects.
type Inputs struct {
	// Digest covers the app's configuration, deliver's version and the
	// content of every path in Paths, as the caller (pkg/pipeline)
	// computes it. It never covers a secret value.
	Digest string `json:"digest"`
	// Paths are the reads the render made in the repository, each a kind
	// and a path ("f:apps/web/values.yaml"): what a later revision hashes
	// to compute its digest.
	Paths []string `json:"paths,omitempty"`
	// Vault are the Vault KV v2 secrets the render resolved refs with,
	// each with the version it read: a later run reads each one's
	// current version (from its metadata, never its values) and the
	// digest covers those versions. Never a value.
	Vault []VaultVersion `json:"vault,omitempty"`
}

// VaultVersion is a version of a Vault KV v2 secret.
type VaultVersion struct {
	// Path is the secret's path as the ref names it: secret/web or
	// secret/data/web.
	Path string `json:"path"`
	// Version is its version number, as KV v2 metadata counts them.
	Version int `json:"version"`
}

// Workload is the desired object of a workload as the last successful run
// applied it.
type Workload struct {
	object.ID
	// Revision is the git commit of that run.
	Revision string `json:"revision,omitempty"`
	// Digest is the object's digest, as in Entry.
	Digest string `json:"digest"`
	// Object is the desired object, compact JSON.
	Object json.RawMessage `json:"object"`
}

// MaxRollbackBytes bounds the workload objects an inventory keeps for a
// rollback. A Deployment is a few KiB, so this is room for about a hundred
// workloads; an app with more keeps none and cannot be rolled back (the
// error of a failed rollout says so). 512 KiB leaves the rest of the 1 MiB
// Secret to the entries (about 250 bytes each) and hook records.
const MaxRollbackBytes = 512 << 10

// Scaled is a workload's replica count before a recreate.
type Scaled struct {
	object.ID
	Version  string `json:"version"`
	Replicas int64  `json:"replicas"`
}

// Entry is one object in an inventory.
type Entry struct {
	object.ID
	// Version is the API version the object was applied at, for listing.
	Version string `json:"version"`
	// Digest is the digest of the desired object deliver last applied.
	Digest string `json:"digest,omitempty"`
	// ResourceVersion and Generation are what the server returned for it.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Generation      int64  `json:"generation,omitempty"`
	// Spec is set for a Deployment or StatefulSet whose replica count is
	// not deliver's (an autoscaler's, or absent from git): the
	// SpecDigest of the object the server returned, so that drift
	// detection can tell a scale from a change of the rest of the spec.
	Spec string `json:"spec,omitempty"`
	// Ignore lists the fields the object leaves to others (ignore rules,
	// AnnotationIgnoreFields, the built-in ones), when there are any
	// besides an autoscaler's replicas: Spec is then the IgnoredDigest of
	// the object without them, so that a write of only them is no drift.
	Ignore []string `json:"ignore,omitempty"`
	// Policy is the object's apply policy when it leaves the object
	// alone once it exists ("IfNotPresent"), always ("Ignore") or while
	// reconciling it is disabled ("Disabled": AnnotationReconcile): no
	// version is recorded then, no change to it is drift, and an
	// unchanged plan checks only that an IfNotPresent object exists and
	// that a disabled one still has the annotation in the cluster.
	Policy string `json:"policy,omitempty"`
	// Secrets are the places (JSON pointers, list items as "*") of the
	// fields whose value held a secret value when deliver last applied
	// the object: never the values. A diff masks the live value there
	// once git no longer has it (a field removed, an object pruned or
	// removed with its app), since the redactor then knows it no more.
	Secrets []string `json:"secrets,omitempty"`
}

// Inventory results.
const (
	ResultApplying  = "applying"
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
)

const (
	inventoryKey = "inventory.json"
	// inventoryGzipKey holds the same JSON, gzipped: an inventory of 1,000
	// objects and 200 workloads is 355 kB of JSON and 61 kB gzipped, and
	// the API server writes it in 10 ms instead of 48 ms (twice a run).
	inventoryGzipKey = "inventory.json.gz"
	// maxInventoryBytes bounds the unzipped inventory.
	maxInventoryBytes = 64 << 20
)

// InventoryName is the name of the Secret holding an app's inventory.
func InventoryName(app string) string { return "deliver-inventory-" + app }

// ReadInventory returns the stored inventory of app, or an empty one.
func (m *Manager) ReadInventory(ctx context.Context, app string) (*Inventory, error) {
	inv, _, err := m.readInventory(ctx, app)
	return inv, err
}

// readInventory is ReadInventory that also returns the resourceVersion of
// the inventory Secret ("" when there is none).
func (m *Manager) readInventory(ctx context.Context, app string) (*Inventory, string, error) {
	s, err := m.kube.CoreV1().Secrets(m.opts.InventoryNamespace).Get(ctx, InventoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Inventory{App: app}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("inventory %s/%s: read: %w", m.opts.InventoryNamespace, InventoryName(app), err)
	}
	inv, err := inventoryOf(s)
	if err != nil {
		return nil, "", err
	}
	return inv, s.ResourceVersion, nil
}

// inventoryVersion returns the resourceVersion of app's inventory Secret
// ("" when there is none) without reading its content: its metadata only,
// in protobuf.
func (m *Manager) inventoryVersion(ctx context.Context, app string) (string, error) {
	pm, err := m.meta.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(m.opts.InventoryNamespace).Get(ctx, InventoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inventory %s/%s: read: %w", m.opts.InventoryNamespace, InventoryName(app), err)
	}
	return pm.ResourceVersion, nil
}

// decodeInventory reads the inventory a Secret holds, gzipped or not.
func decodeInventory(s *corev1.Secret) (*Inventory, error) {
	var err error
	data := s.Data[inventoryKey]
	if gz, ok := s.Data[inventoryGzipKey]; ok {
		if data, err = gunzip(gz, maxInventoryBytes); err != nil {
			return nil, err
		}
	}
	inv := &Inventory{}
	if err := json.Unmarshal(data, inv); err != nil {
		return nil, err
	}
	return inv, nil
}

// writeInventory stores inv, creating deliver's namespace when needed.
func (m *Manager) writeInventory(ctx context.Context, inv *Inventory) error {
	sort.Slice(inv.Entries, func(i, j int) bool { return less(inv.Entries[i].ID, inv.Entries[j].ID) })
	plain, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	data, err := m.s.gzipBytes(plain)
	if err != nil {
		return err
	}
	keys := map[string]any{inventoryGzipKey: data, inventoryKey: nil} // null: the key of older versions goes
	secretData := map[string][]byte{inventoryGzipKey: data}
	if inv.plan != nil {
		// In the same write: storing the plan costs no request.
		planData, err := m.s.encodePlan(inv.plan, len(data))
		if err != nil {
			return fmt.Errorf("inventory %s/%s: plan: %w", m.opts.InventoryNamespace, InventoryName(inv.App), err)
		}
		keys[planGzipKey], secretData[planGzipKey] = planData, planData
	}
	ns, name := m.opts.InventoryNamespace, InventoryName(inv.App)
	secrets := m.kube.CoreV1().Secrets(ns)
	// A merge patch, not an update: annotations others put on the
	// inventory (the reconciler's suspend switch) survive every run.
	metadata := map[string]any{"labels": map[string]string{LabelInventory: inv.App}}
	if inv.dropAdopt {
		metadata["annotations"] = map[string]any{AnnotationAdopt: nil}
	}
	body, err := json.Marshal(map[string]any{
		"metadata": metadata,
		"data":     keys,
	})
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelInventory: inv.App}},
		Type:       "deliver.dev/inventory",
		Data:       secretData,
	}
	create := func() error {
		_, err := createInNamespace(ctx, m, func() (*corev1.Secret, error) {
			return secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
		})
		return err
	}
	patch := func() error {
		_, err := secrets.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: m.opts.FieldManager})
		return err
	}
	// The order follows what the caller knows: an app never delivered
	// has no Secret yet (the first apply of a thousand apps sent a
	// thousand patches only to learn that), a delivered one has.
	if inv.stored {
		if err = patch(); apierrors.IsNotFound(err) {
			err = create()
		}
	} else if err = create(); apierrors.IsAlreadyExists(err) {
		err = patch()
	}
	if err != nil {
		return fmt.Errorf("inventory %s/%s: write: %w", ns, name, err)
	}
	inv.stored = true
	return nil
}

// delivered reports whether the app was ever delivered successfully (its
// history, or the result of an inventory from before histories): what
// makes a delivery Helm's upgrade rather than its install, for hooks.
// Unlike firstRevision, which counts a first run that failed after
// writing as running (to validate before writing), a retry of a failed
// first delivery is still an install: its install hooks may not have
// run, and an install hook that never runs leaves the app without its
// one-time setup.
func (inv *Inventory) delivered() bool {
	return len(inv.History) > 0 || inv.Result == ResultSucceeded
}

// index indexes an inventory by object ID.
func (inv *Inventory) index() map[object.ID]Entry {
	out := make(map[object.ID]Entry, len(inv.Entries))
	for _, e := range inv.Entries {
		out[e.ID] = e
	}
	return out
}

// createInNamespace runs create, a create in deliver's namespace, and
// once more after creating that namespace when the API server answered
// NotFound: the namespace is made by the first write that needs it, not
// checked before every write.
func createInNamespace[T any](ctx context.Context, m *Manager, create func() (T, error)) (T, error) {
	v, err := create()
	if apierrors.IsNotFound(err) { // the namespace itself
		if err = m.ensureNamespace(ctx); err == nil {
			v, err = create()
		}
	}
	return v, err
}

// ensureNamespace creates deliver's namespace when it is missing.
func (m *Manager) ensureNamespace(ctx context.Context) error {
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.opts.InventoryNamespace}}
	_, err := m.kube.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (s *Session) gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	w, _ := s.gzips.Get().(*gzip.Writer)
	if w == nil {
		var err error
		if w, err = gzip.NewWriterLevel(&b, gzip.BestSpeed); err != nil {
			return nil, err
		}
	} else {
		w.Reset(&b)
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	s.gzips.Put(w)
	return b.Bytes(), nil
}

func gunzip(data []byte, max int64) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > max {
		return nil, fmt.Errorf("larger than %d bytes unzipped", max)
	}
	return out, nil
}
