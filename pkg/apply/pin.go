package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A pin holds an app at one revision: the reconciler delivers that
// revision of the app, and nothing newer, until the pin is removed. It is
// kept in annotations of the app's inventory Secret, next to the
// reconciler's suspend switch, so that it lives in the cluster: a
// restarted reconciler, or another replica taking the lead, sees it, and
// kubectl shows it:
//
//	kubectl -n deliver-system get secret deliver-inventory-web -o jsonpath='{.metadata.annotations}'
const (
	// AnnotationPin is the full commit SHA the app is pinned to.
	AnnotationPin = "deliver.dev/pin"
	// AnnotationPinnedBy is who set the pin, as the API server knows them.
	AnnotationPinnedBy = "deliver.dev/pinned-by"
	// AnnotationPinnedAt is when, RFC 3339 in UTC.
	AnnotationPinnedAt = "deliver.dev/pinned-at"
	// AnnotationPinReason is why.
	AnnotationPinReason = "deliver.dev/pin-reason"
)

// MaxPinReason bounds a pin's reason, in bytes: an audit note, not a
// document (the annotations of an object share 256 KiB).
const MaxPinReason = 1024

// Pin is an app's pin.
type Pin struct {
	// Revision is the full commit SHA the app is held at.
	Revision string `json:"revision"`
	// By is the user who set it; At when; Reason why.
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// PinOf reads the pin of an inventory Secret's annotations; nil when
// there is none.
func PinOf(annotations map[string]string) *Pin {
	rev := annotations[AnnotationPin]
	if rev == "" {
		return nil
	}
	p := &Pin{Revision: rev, By: annotations[AnnotationPinnedBy], Reason: annotations[AnnotationPinReason]}
	// A hand-written time that does not parse leaves At zero: the pin
	// holds all the same.
	p.At, _ = time.Parse(time.RFC3339, annotations[AnnotationPinnedAt])
	return p
}

// Equal reports whether p and q are the same pin (both nil included).
func (p *Pin) Equal(q *Pin) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.Revision == q.Revision && p.By == q.By && p.At.Equal(q.At) && p.Reason == q.Reason
}

// SetPin pins app to p.Revision, replacing any pin it had. An app without
// an inventory yet gets an empty one carrying the pin, so that the first
// delivery is of the pinned revision.
func (m *Manager) SetPin(ctx context.Context, app string, p Pin) error {
	if p.Revision == "" {
		return fmt.Errorf("pin app %s: a revision is required", app)
	}
	if len(p.Reason) > MaxPinReason {
		return fmt.Errorf("pin app %s: the reason is %d bytes, more than %d", app, len(p.Reason), MaxPinReason)
	}
	ann := map[string]*string{
		AnnotationPin:       &p.Revision,
		AnnotationPinnedBy:  &p.By,
		AnnotationPinReason: &p.Reason,
	}
	at := p.At.UTC().Format(time.RFC3339)
	ann[AnnotationPinnedAt] = &at
	if err := m.annotateInventory(ctx, app, ann, true); err != nil {
		return fmt.Errorf("pin app %s: %w", app, err)
	}
	return nil
}

// ClearPin removes app's pin and returns it; nil when there was none.
func (m *Manager) ClearPin(ctx context.Context, app string) (*Pin, error) {
	inv, err := m.ReadInventory(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("unpin app %s: %w", app, err)
	}
	if inv.Pin == nil {
		return nil, nil
	}
	ann := map[string]*string{AnnotationPin: nil, AnnotationPinnedBy: nil, AnnotationPinnedAt: nil, AnnotationPinReason: nil}
	if err := m.annotateInventory(ctx, app, ann, false); err != nil {
		return nil, fmt.Errorf("unpin app %s: %w", app, err)
	}
	return inv.Pin, nil
}

// annotateInventory sets (a nil value: removes) annotations of app's
// inventory Secret with a merge patch, which leaves its data and every
// other annotation as they are. When there is no inventory Secret and
// create is set, it creates one holding an empty inventory.
func (m *Manager) annotateInventory(ctx context.Context, app string, ann map[string]*string, create bool) error {
	ns, name := m.opts.InventoryNamespace, InventoryName(app)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return err
	}
	secrets := m.kube.CoreV1().Secrets(ns)
	patch := func() error {
		_, err := secrets.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: m.opts.FieldManager})
		return err
	}
	err = patch()
	if !apierrors.IsNotFound(err) || !create {
		if apierrors.IsNotFound(err) {
			err = nil // nothing to remove
		}
		if err != nil {
			return fmt.Errorf("inventory %s/%s: %w", ns, name, err)
		}
		return nil
	}
	// Created, not written with writeInventory: a run that created the
	// inventory meanwhile must keep its content.
	plain, err := json.Marshal(&Inventory{App: app})
	if err != nil {
		return err
	}
	data, err := m.s.gzipBytes(plain)
	if err != nil {
		return err
	}
	annotations := map[string]string{}
	for k, v := range ann {
		if v != nil {
			annotations[k] = *v
		}
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelInventory: app}, Annotations: annotations},
		Type:       "deliver.dev/inventory",
		Data:       map[string][]byte{inventoryGzipKey: data},
	}
	_, err = createInNamespace(ctx, m, func() (*corev1.Secret, error) {
		return secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	})
	if apierrors.IsAlreadyExists(err) {
		err = patch()
	}
	if err != nil {
		return fmt.Errorf("inventory %s/%s: %w", ns, name, err)
	}
	return nil
}

// ErrPinned is the error of a run of another revision than the app's
// pin: while an app is pinned, deliver apply of another revision (CI
// following the branch) is refused as the reconciler holds back, until
// deliver unpin.
var ErrPinned = errors.New("the app is pinned to another revision")

// pinRefusal returns an error wrapping ErrPinned when the plan's app is
// pinned to another revision than the plan's; nil otherwise. Checked
// before the first write of a run.
func (p *Plan) pinRefusal() error {
	pin := p.inventory.Pin
	if pin == nil || pin.Revision == p.Revision {
		return nil
	}
	return fmt.Errorf("%s: revision %.12s: pinned to %.12s by %s at %s (%s): deliver unpin %s first: %w",
		p.App, p.Revision, pin.Revision, pin.By, pin.At.UTC().Format(time.RFC3339), p.redact(pin.Reason), p.App, ErrPinned)
}
