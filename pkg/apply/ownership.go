package apply

import (
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/object"
)

// An object belongs to the app its LabelApp names, and an app name to the
// identity its inventory records (environment, repository, deliver.yaml:
// see identity.go). Exactly what is protected, before anything is written:
//
//   - an object whose live LabelApp names another app name (of another
//     deliver.yaml, repository, environment or reconciler) is not taken
//     over: the plan lists it as a conflict and Execute refuses it, unless
//     the object in git carries AnnotationAdopt; a prune never deletes it;
//   - an app name whose inventory another identity recorded (another
//     environment; another repository or deliver.yaml when both runs know
//     their repository) is refused as a whole (IdentityError), unless its
//     inventory Secret carries AnnotationAdopt: two deliveries of one app
//     name share LabelApp's value and the inventory, so the first check
//     cannot tell them apart.
//
// Not protected: objects without LabelApp (made by hand or another tool)
// are taken over, as before; an inventory of an older version records no
// identity and its next run records its own; a caller that gives no
// identity (PlanOptions.Identity) is not checked; two checkouts of unknown
// repository delivering the same environment count as one.
//
// Without these checks each run would take the objects back from the
// other, and a prune of either would delete the other's objects. The plan
// reads every live object's labels anyway (listLive) and the inventory
// first, so the checks cost no request.

// OtherApp is an object of a plan that the cluster says belongs to another
// app: its live object carries LabelApp with that app's name.
type OtherApp struct {
	ID     object.ID     `json:"id"`
	Origin object.Origin `json:"origin"`
	// App is the other app, as the live object's LabelApp names it.
	App string `json:"app"`
}

// ConflictError is the error of Apply and Execute for a plan with
// Conflicts: objects in git that another app owns in the cluster, without
// AnnotationAdopt. It is returned before anything of the app is written.
type ConflictError struct {
	// App is the app whose plan it is.
	App string
	// Conflicts are the objects another app owns.
	Conflicts []OtherApp
}

// Error names each object, its origin, and both apps.
func (e *ConflictError) Error() string {
	parts := make([]string, len(e.Conflicts))
	for i, c := range e.Conflicts {
		parts[i] = fmt.Sprintf("%s (%s) belongs to app %q (label %s), not to app %q", c.ID, c.Origin, c.App, LabelApp, e.App)
	}
	return fmt.Sprintf("ownership conflict: %s; nothing of app %q was applied (to take an object over, annotate it in git with %s: \"true\")",
		strings.Join(parts, "; "), e.App, AnnotationAdopt)
}

// otherOwner returns the app that the live object's LabelApp names when it
// is not app; "" when the object is app's or carries no LabelApp (an
// object created by hand or by another tool is taken over, as before).
func otherOwner(lm *metav1.PartialObjectMetadata, app string) string {
	if lm == nil {
		return ""
	}
	if owner := lm.Labels[LabelApp]; owner != app {
		return owner
	}
	return ""
}

// checkOwnership sorts the planned objects that another app owns: the
// ones annotated with AnnotationAdopt are taken over (AdoptedFrom), the
// others are conflicts, which Execute refuses.
func (p *Plan) checkOwnership(live map[object.ID]*metav1.PartialObjectMetadata) {
	for _, c := range p.Changes {
		owner := otherOwner(live[c.ID], p.App)
		if owner == "" {
			continue
		}
		if adoptRequested(c.Desired.GetAnnotations()) {
			c.AdoptedFrom = owner
			addNote(c, "adopted from app "+owner)
			continue
		}
		addNote(c, "conflict: owned by app "+owner)
		p.Conflicts = append(p.Conflicts, OtherApp{ID: c.ID, Origin: c.Origin, App: owner})
	}
}

func addNote(c *Change, note string) {
	if c.Note != "" {
		c.Note += "; "
	}
	c.Note += note
}

// ConflictErr returns an *IdentityError when the app's inventory records
// another identity, else a *ConflictError when the plan has conflicts, nil
// otherwise.
func (p *Plan) ConflictErr() error {
	if err := p.identityErr(); err != nil {
		return err
	}
	if len(p.Conflicts) == 0 {
		return nil
	}
	return &ConflictError{App: p.App, Conflicts: p.Conflicts}
}

// releaseKept reports the objects that left git and another app owns now,
// and drops them from the inventory: they are not this app's to prune.
func (p *Plan) releaseKept(rep *Report, entries map[object.ID]Entry) {
	for _, k := range p.Kept {
		rep.Results = append(rep.Results, Result{ID: k.ID, Origin: k.Origin, Action: Kept, Owner: k.App})
		delete(entries, k.ID)
	}
}

// markAdopted says in the report which objects were taken over from
// another app.
func (p *Plan) markAdopted(rep *Report) {
	from := map[object.ID]string{}
	for _, c := range p.Changes {
		if c.AdoptedFrom != "" {
			from[c.ID] = c.AdoptedFrom
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if app, ok := from[r.ID]; ok && r.Hook == "" && r.Action != Failed {
			r.AdoptedFrom = app
		}
	}
}

// writeOwnership prints a line per object another app owns, for the diff.
func (p *Plan) writeOwnership(w io.Writer, color bool) {
	for _, c := range p.Conflicts {
		fmt.Fprintln(w, colorize(color, "31", fmt.Sprintf("conflict: %s (%s) belongs to app %s (label %s), not to app %s: apply fails; annotate it in git with %s: \"true\" to take it over",
			c.ID, c.Origin, c.App, LabelApp, p.App, AnnotationAdopt)))
	}
	for _, c := range p.Changes {
		if c.AdoptedFrom != "" {
			fmt.Fprintf(w, "%s will be adopted from app %s (%s)\n", c.ID, c.AdoptedFrom, AnnotationAdopt)
		}
	}
	for _, k := range p.Kept {
		fmt.Fprintf(w, "%s left git but belongs to app %s now: not deleted, dropped from the inventory\n", k.ID, k.App)
	}
}
