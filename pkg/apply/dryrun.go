package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// dryRunAttempts bounds how often dryRun reads an object again that kept
// changing between its read and its dry run.
const dryRunAttempts = 3

// dryRun reads the live object and asks the server what an apply would make
// of it (dryRun=All, forcing conflicts as the apply will), then classifies
// the change.
//
// The read (c.Live when the plan listed it, else a GET beside the dry run)
// and the dry run are two requests: a controller that writes the object
// between them (the Deployment controller's revision annotation just after
// a first apply, say) makes them two versions of it, and their difference
// is no change of deliver's. A dry run's answer carries the resourceVersion
// of the object it merged into, so a difference at unequal versions is
// read again, and judged only between one version and its own dry run.
func (m *Manager) dryRun(ctx context.Context, c *Change) error {
	live, merged, err := m.readAndDryRun(ctx, c, c.Live)
	for attempt := 1; attempt < dryRunAttempts && err == nil && live.GetResourceVersion() != merged.GetResourceVersion() && !sameContent(live, merged); attempt++ {
		live, merged, err = m.readAndDryRun(ctx, c, nil)
	}
	var getErr *readError
	if errors.As(err, &getErr) {
		return m.denied(getErr.err, "get", c.ID.String())
	}
	if err != nil && rollingUpdateForbidden(err, c, live) {
		if merged, err = m.dryRunToRecreate(ctx, c, live); err == nil {
			c.toRecreate = true
			c.Note = "the strategy becomes Recreate: its rollingUpdate settings, which the server defaulted, are removed first"
		}
	}
	if err != nil {
		if isImmutable(err) && (m.opts.Recreate || recreateAllowed(c.Desired.GetAnnotations())) {
			c.Live, c.Type, c.Recreate = live, ChangeUpdate, true
			c.Note = "an immutable field changed: the object will be deleted and re-created"
			return nil
		}
		return explain(m.denied(err, "dry-run apply", c.ID.String()), c)
	}
	c.Live, c.Merged = live, merged
	keepIgnored(c)
	if sameContent(live, merged) {
		c.Type = ChangeUnchanged
	} else {
		c.Type = ChangeUpdate
	}
	return nil
}

// readError is readAndDryRun's failure to read the live object, told apart
// from the dry run's own.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// readAndDryRun dry-runs c's apply and returns it with live, or with the
// live object read at the same time when live is nil: the two requests are
// independent.
func (m *Manager) readAndDryRun(ctx context.Context, c *Change, live *unstructured.Unstructured) (*unstructured.Unstructured, *unstructured.Unstructured, error) {
	var (
		getErr error
		wg     sync.WaitGroup
	)
	if live == nil {
		wg.Go(func() { live, getErr = m.client(c).Get(ctx, c.ID.Name, metav1.GetOptions{}) })
	}
	merged, err := m.applyPatch(ctx, c, metav1.ApplyOptions{
		FieldManager: m.opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll},
	})
	wg.Wait()
	if getErr != nil {
		return nil, nil, &readError{getErr}
	}
	return live, merged, err
}

// client returns the dynamic client for the change's resource.
func (m *Manager) client(c *Change) dynamic.ResourceInterface {
	if c.ID.Namespace == "" {
		return m.objects.dyn.Resource(c.gvr)
	}
	return m.objects.dyn.Resource(c.gvr).Namespace(c.ID.Namespace)
}

// sameContent compares two versions of an object without the fields the
// server changes on every write (managedFields, resourceVersion, generation,
// timestamps) and without status, which deliver does not apply. A no-op
// apply can still rewrite managedFields (the apiserver does so once for a
// new Namespace, whose kubernetes.io/metadata.name label it sets itself);
// that is no change the user made.
func sameContent(a, b *unstructured.Unstructured) bool {
	return equality.Semantic.DeepEqual(normalize(a), normalize(b))
}

func normalize(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	c.SetManagedFields(nil)
	c.SetResourceVersion("")
	c.SetGeneration(0)
	c.SetUID("")
	c.SetCreationTimestamp(metav1.Time{})
	unstructured.RemoveNestedField(c.Object, "status")
	unstructured.RemoveNestedField(c.Object, "metadata", "creationTimestamp")
	return c.Object
}

// sortChanges puts changes in apply order and deletes last, in reverse.
func sortChanges(cs []*Change) {
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		ad, bd := a.Type == ChangeDelete, b.Type == ChangeDelete
		switch {
		case ad != bd:
			return bd
		case ad:
			if a.stage != b.stage {
				return a.stage > b.stage
			}
			return less(b.ID, a.ID)
		case a.stage != b.stage:
			return a.stage < b.stage
		}
		return less(a.ID, b.ID)
	})
}

// dryRunCreate asks the server to validate a new object (admission,
// schema, field validation) without creating it.
func (m *Manager) dryRunCreate(ctx context.Context, c *Change, newNamespaces map[string]bool) error {
	if c.ID.Namespace != "" && newNamespaces[c.ID.Namespace] {
		c.Note = "its Namespace is created in the same run; validated when applied"
		return nil
	}
	_, err := m.applyPatch(ctx, c, metav1.ApplyOptions{
		FieldManager: m.opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll},
	})
	var status apierrors.APIStatus
	if apierrors.IsNotFound(err) && errors.As(err, &status) && status.Status().Details != nil && status.Status().Details.Kind == "namespaces" {
		// Another app (applied first, by dependsOn) creates the namespace.
		c.Note = fmt.Sprintf("namespace %s does not exist yet; validated when applied", c.ID.Namespace)
		return nil
	}
	return m.denied(err, "dry-run apply", c.ID.String())
}
