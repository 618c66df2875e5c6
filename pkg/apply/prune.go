package apply

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/object"
)

// prune deletes an object that left git. The plan only proposes objects
// that carry the app's ownership label and no opt-out annotation; the
// delete is made conditional on the UID read now, so an object re-created
// by someone else in between is not removed, and an object another app
// took over in between (its LabelApp) is kept and reported as Kept.
func (m *Manager) prune(ctx context.Context, c *Change, app, env string) Result {
	res := Result{ID: c.ID, Origin: c.Origin, Action: Deleted}
	ri := m.client(c)
	live, err := ri.Get(ctx, c.ID.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return res
	}
	if err == nil {
		if owner, oenv := otherOwner(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Labels: live.GetLabels()}}, app, env); owner != "" {
			// Another app took the object over since: not ours to delete.
			res.Action, res.Owner, res.OwnerEnv = Kept, owner, oenv
			return res
		}
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
		verb := "delete"
		if live == nil {
			verb = "get"
		}
		res.Action, res.Error = Failed, m.opts.Redact(m.denied(err, verb, c.ID.String()).Error())
	}
	return res
}

// pruneHooks forgets the hooks that left git and deletes the run each kept
// (the last run stays for inspection only while its hook exists), on the
// same terms as prune. Hooks are not inventory entries, so without this
// their Jobs and records would stay forever.
func (m *Manager) pruneHooks(ctx context.Context, p *Plan, rep *Report, done map[object.ID]HookRecord) error {
	planned := map[object.ID]bool{}
	for _, h := range p.Hooks {
		planned[h.ID] = true
	}
	var errs []error
	for id := range done {
		if planned[id] {
			continue
		}
		gvr, _, err := m.gvrFor(id.GroupKind(), "")
		if err != nil { // the kind is gone, and its objects with it
			delete(done, id)
			continue
		}
		c := &Change{ID: id, Type: ChangeDelete, gvr: gvr}
		if _, generated := object.GeneratedPrefix(id); generated {
			// Its runs have names of their own; their label finds them.
			results, err := m.pruneHookRuns(ctx, c, p.App)
			rep.Results = append(rep.Results, results...)
			if err != nil {
				errs = append(errs, fmt.Errorf("hook %s: prune: %w", id, err))
				continue
			}
			delete(done, id)
			continue
		}
		if _, err := m.client(c).Get(ctx, id.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			delete(done, id) // deleted by its delete policy
			continue
		}
		r := m.prune(ctx, c, p.App, p.ownerEnv())
		if r.Action == Failed {
			errs = append(errs, fmt.Errorf("hook %s: prune: %s", id, r.Error))
			continue
		}
		if r.Action == Deleted {
			rep.Results = append(rep.Results, r)
		}
		delete(done, id)
	}
	return errors.Join(errs...)
}
