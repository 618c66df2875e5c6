package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/deliverhq/deliver/pkg/object"
)

// AnnotationIgnoreFields on an object in git lists, comma-separated, JSON
// pointers of its fields that deliver leaves to others, as an
// IgnoreRule naming that object would. The annotation itself is applied.
const AnnotationIgnoreFields = "deliver.dev/ignore-fields"

// IgnoreRule names fields of some objects that deliver neither diffs,
// applies nor reverts (Argo CD's ignoreDifferences shape). Unlike Argo
// CD's, the fields are not only hidden: they are left out of the apply, so
// deliver releases them to whoever else writes them (see keepIgnored).
type IgnoreRule struct {
	// Group is the API group ("" is the core group) and Kind the kind of
	// the objects; Kind is required.
	Group, Kind string
	// Name and Namespace narrow the rule; empty matches every object.
	Name, Namespace string
	// JSONPointers are the fields, RFC 6901, "*" for every item of a list.
	JSONPointers []string
}

func (r IgnoreRule) matches(id object.ID) bool {
	return r.Group == id.Group && r.Kind == id.Kind &&
		(r.Name == "" || r.Name == id.Name) && (r.Namespace == "" || r.Namespace == id.Namespace)
}

// The built-in rules: caBundle fields that a CA injector (cert-manager's
// cainjector) writes, ignored when another field manager owns them.
var caBundleFields = map[schema.GroupKind]string{
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   "/webhooks/*/clientConfig/caBundle",
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: "/webhooks/*/clientConfig/caBundle",
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:               "/spec/conversion/webhook/clientConfig/caBundle",
}

// replicasPointer is the field leaveReplicas takes out of a workload that
// an autoscaler scales.
const replicasPointer = "/spec/replicas"

// ignoreFields finds the fields each desired object leaves to others (the
// rules, its AnnotationIgnoreFields, the built-in caBundle rule) and takes
// them out of the objects that exist: not sent, they are neither applied
// nor shown as a difference. A new object is sent whole, so that it
// starts complete. The digest covers the object without the fields and
// the list of them, so that the inventory's digest of an object stays the
// same from its creation on, and a change of the rules is planned anew.
//
// For the built-in rule it reads the few webhook configurations and CRDs
// that exist and set a caBundle in git whole (the listed metadata has no
// managedFields); the read object is kept as Change.Live, so their dry run
// reads nothing again.
func (m *Manager) ignoreFields(ctx context.Context, changes []*Change, rules []IgnoreRule, live map[object.ID]*metav1.PartialObjectMetadata) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	m.forEach(ctx, len(changes), func(i int) {
		c := changes[i]
		if c.Desired == nil {
			return
		}
		_, exists := live[c.ID]
		err := m.ignoreChange(ctx, c, rules, exists)
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s (%s): %w", c.ID, c.Origin, err))
			mu.Unlock()
		}
	})
	return errors.Join(errs...)
}

// ignoreChange is ignoreFields for one change.
func (m *Manager) ignoreChange(ctx context.Context, c *Change, rules []IgnoreRule, exists bool) error {
	var raw []string
	for _, r := range rules {
		if r.matches(c.ID) {
			raw = append(raw, r.JSONPointers...)
		}
	}
	if ann := c.Desired.GetAnnotations()[AnnotationIgnoreFields]; ann != "" {
		for p := range strings.SplitSeq(ann, ",") {
			if p = strings.TrimSpace(p); p != "" {
				raw = append(raw, p)
			}
		}
	}
	if field, ok := caBundleFields[c.ID.GroupKind()]; ok && exists && c.gvr.Resource != "" && setsField(c.Desired.Object, field) {
		u, err := m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("read for the caBundle rule: %w", err)
		default:
			c.Live = u
			if othersOwn(u, m.opts.FieldManager, "caBundle") {
				raw = append(raw, field)
			}
		}
	}
	if len(raw) == 0 {
		return nil
	}
	slices.Sort(raw)
	raw = slices.Compact(raw)
	ptrs := make([]object.Pointer, 0, len(raw))
	for _, s := range raw {
		p, err := object.ParsePointer(s)
		if err != nil {
			return fmt.Errorf("ignored fields (rule or annotation %s): %w", AnnotationIgnoreFields, err)
		}
		ptrs = append(ptrs, p)
	}
	c.ignore = ptrs
	stripped := c.Desired.DeepCopy()
	for _, p := range ptrs {
		object.Remove(stripped.Object, p.Paths(stripped.Object))
	}
	data, err := json.Marshal(stripped.Object)
	if err != nil {
		return err
	}
	sum := sha256.New()
	sum.Write(data)
	sum.Write([]byte("\nignored " + strings.Join(raw, ",")))
	c.digest = hex.EncodeToString(sum.Sum(nil))
	if exists {
		c.rendered = c.Desired
		c.Desired, c.body = stripped, data
	} else {
		c.body = nil // Desired is sent whole; body is its JSON only
	}
	return nil
}

// setsField reports whether obj has a field where pointer points. Only a
// caBundle git sets can revert an injected one; an object without one
// (most CRDs have no conversion webhook) needs no read.
func setsField(obj map[string]any, pointer string) bool {
	p, err := object.ParsePointer(pointer)
	return err == nil && len(p.Paths(obj)) > 0
}

// othersOwn reports whether a field manager other than deliver's (and its
// hand-over manager) owns a field named field ("caBundle") anywhere in u,
// its managedFields read by structured-merge-diff's fieldpath.
func othersOwn(u *unstructured.Unstructured, manager, field string) bool {
	for _, mf := range u.GetManagedFields() {
		if mf.Manager == manager || mf.Manager == handoverManager || mf.FieldsV1 == nil {
			continue
		}
		var set fieldpath.Set
		if set.FromJSON(bytes.NewReader(mf.FieldsV1.Raw)) != nil {
			continue
		}
		// Iterate, not All: All's iterator does not stop when the loop
		// does (structured-merge-diff v6.4.2 panics then).
		found := false
		set.Iterate(func(p fieldpath.Path) {
			found = found || slices.ContainsFunc(p, func(pe fieldpath.PathElement) bool { return pe.FieldName != nil && *pe.FieldName == field })
		})
		if found {
			return true
		}
	}
	return false
}

// ignoredPointers are the fields a change leaves to others: its rules'
// and, for a workload an autoscaler scales, spec.replicas.
func ignoredPointers(c *Change) []string {
	out := make([]string, 0, len(c.ignore)+1)
	for _, p := range c.ignore {
		out = append(out, p.String())
	}
	if replicasLeft(c) && !slices.Contains(out, replicasPointer) {
		out = append(out, replicasPointer)
	}
	slices.Sort(out)
	return out
}

// keptField is an ignored field's live value that the apply must keep.
type keptField struct {
	path  object.Path
	value any
}

// keepIgnored keeps the live values of the fields the change leaves to
// others (ignoredPointers) where the dry run shows the apply would not:
// where deliver's field manager is their only owner. Server-side apply
// removes a field its only owner stops sending (or resets it to its
// default): dropping spec.replicas would scale a Deployment to 1, dropping
// an annotation would delete it. A field another manager co-owns (it
// wrote it) stays as it is; nothing is to be done for it.
//
// Such a field is handed over before the apply: applied at its live value
// by handoverManager, which then co-owns it, so that deliver's apply
// without it releases it and the server keeps it; the next writer takes
// it from handoverManager. This is the Kubernetes documentation's way of
// transferring ownership between managers, and it is what deliver did for
// spec.replicas first (autoscale.go). A partial apply body can only name a
// list item by its merge keys, which deliver does not know without the
// kind's schema, so a field inside a list item (a caBundle of one of
// several webhooks) is kept in deliver's own apply at its live value
// instead: the server keeps it, and deliver keeps owning it, at whatever
// value it has, until another manager writes it and so takes it. The list
// item is found by its "name" (the merge key of nearly every list of
// named items: containers, webhooks, volumes), or else by position.
//
// The plan's Merged gets the live values too, so the diff shows nothing
// of them. The digest stays that of the object without the fields: the
// live values kept are no change of git's.
func keepIgnored(c *Change) {
	if c.Live == nil || c.Merged == nil {
		return
	}
	for _, raw := range ignoredPointers(c) {
		p, err := object.ParsePointer(raw)
		if err != nil {
			continue
		}
		for _, path := range p.Paths(c.Live.Object) {
			live, _ := object.GetAt(c.Live.Object, path)
			merged, found := object.GetAt(c.Merged.Object, path)
			if found && equality.Semantic.DeepEqual(live, merged) {
				continue
			}
			live = runtime.DeepCopyJSONValue(live)
			if !path.Through() {
				c.handover = append(c.handover, keptField{path, live})
			} else if dpath, ok := alignPath(c.Desired.Object, c.Live.Object, path); ok && object.SetAt(c.Desired.Object, dpath, runtime.DeepCopyJSONValue(live)) {
				c.body = nil
			} else {
				continue // the item is not in git: the apply removes it anyway
			}
			object.SetAt(c.Merged.Object, path, live)
		}
	}
}

// alignPath maps a path in live to the same field in desired, matching
// list items by their "name", or by position when they have none.
func alignPath(desired, live map[string]any, path object.Path) (object.Path, bool) {
	out := make(object.Path, 0, len(path))
	var d, l any = desired, live
	for _, e := range path {
		switch k := e.(type) {
		case string:
			dm, ok1 := d.(map[string]any)
			lm, ok2 := l.(map[string]any)
			if !ok1 || !ok2 {
				return nil, false
			}
			d, l = dm[k], lm[k]
			out = append(out, k)
		case int:
			dl, ok1 := d.([]any)
			ll, ok2 := l.([]any)
			if !ok1 || !ok2 || k >= len(ll) {
				return nil, false
			}
			j := k
			if name, ok := itemName(ll[k]); ok {
				j = slices.IndexFunc(dl, func(item any) bool { n, ok := itemName(item); return ok && n == name })
			}
			if j < 0 || j >= len(dl) {
				return nil, false
			}
			d, l = dl[j], ll[k]
			out = append(out, j)
		}
	}
	return out, true
}

func itemName(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	name, ok := m["name"].(string)
	return name, ok
}

// handOver applies the kept fields (keepIgnored) at their planned live
// values under handoverManager, without force: a field changed since the
// plan belongs to its writer already, and is left to it.
func (m *Manager) handOver(ctx context.Context, c *Change) error {
	obj := map[string]any{
		"apiVersion": c.Desired.GetAPIVersion(),
		"kind":       c.Desired.GetKind(),
		"metadata":   map[string]any{"name": c.ID.Name},
	}
	if c.ID.Namespace != "" {
		obj["metadata"].(map[string]any)["namespace"] = c.ID.Namespace
	}
	for _, f := range c.handover {
		object.SetAt(obj, f.path, f.value)
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	force := false
	_, err = m.client(c).Patch(ctx, c.ID.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: handoverManager, Force: &force})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// EntryDigest is the digest an inventory entry's Spec records of the live
// object (see Entry.Spec): SpecDigest for a workload whose only field
// left to others is its replica count (the entries of before ignore
// rules), else IgnoredDigest.
func EntryDigest(e Entry, live *unstructured.Unstructured) string {
	if len(e.Ignore) == 0 {
		return SpecDigest(live)
	}
	return IgnoredDigest(live, e.Ignore)
}

// IgnoredDigest is the digest of a live object without the fields the
// pointers name, without status and without what the server changes on
// every write (see normalize): a write of only those fields, by whoever,
// leaves it the same.
func IgnoredDigest(live *unstructured.Unstructured, pointers []string) string {
	obj := normalize(live)
	for _, raw := range pointers {
		if p, err := object.ParsePointer(raw); err == nil {
			object.Remove(obj, p.Paths(obj))
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
