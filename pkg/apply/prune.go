package apply

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// prune deletes an object that left git. The plan only proposes objects
// that carry the app's ownership label and no opt-out annotation; the
// delete is made conditional on the UID read now, so an object re-created
// by someone else in between is not removed.
func (m *Manager) prune(ctx context.Context, c *Change, app string) Result {
	res := Result{ID: c.ID, Origin: c.Origin, Action: Deleted}
	ri := m.client(c)
	live, err := ri.Get(ctx, c.ID.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return res
	}
	if err == nil && (live.GetLabels()[LabelApp] != app || pruneDisabled(live.GetAnnotations())) {
		res.Action = Unchanged
		return res
	}
	if err == nil {
		uid := live.GetUID()
		bg := metav1.DeletePropagationBackground
		err = ri.Delete(ctx, c.ID.Name, metav1.DeleteOptions{
			Preconditions:     &metav1.Preconditions{UID: &uid},
			PropagationPolicy: &bg,
		})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		res.Action, res.Error = Failed, m.opts.Redact(err.Error())
	}
	return res
}
