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
//     deliver.yaml, repository, environment or reconciler), or the same
//     name with a LabelEnv naming another environment than the run's, is
//     not taken over: the plan lists it as a conflict and Execute refuses
//     it, unless the object in git carries AnnotationAdopt; a prune never
//     deletes it;
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
	// Env is the other app's environment, as the live object's LabelEnv
	// names it; "" when it carries none.
	Env string `json:"env,omitempty"`
}

// ConflictError is the error of Apply and Execute for a plan with
// Conflicts: objects in git that another app owns in the cluster, without
// AnnotationAdopt. It is returned before anything of the app is written.
type ConflictError struct {
	// App is the app whose plan it is, Env its environment ("" for none).
	App string
	Env string
	// Conflicts are the objects another app owns.
	Conflicts []OtherApp
}

// Error names each object, its origin, and both apps.
func (e *ConflictError) Error() string {
	parts := make([]string, len(e.Conflicts))
	for i, c := range e.Conflicts {
		parts[i] = fmt.Sprintf("%s (%s) belongs to %s, not to %s", c.ID, c.Origin, c.owner(), e.run(c))
	}
	return fmt.Sprintf("ownership conflict: %s; nothing of app %q was applied (to take an object over, annotate it in git with %s: \"true\")",
		strings.Join(parts, "; "), e.App, AnnotationAdopt)
}

// owner names the other app for messages, with the labels that say so:
// app "web" (label deliver.dev/app), or app "web" of environment "a"
// (labels deliver.dev/app and deliver.dev/env).
func (c OtherApp) owner() string {
	if c.Env == "" {
		return fmt.Sprintf("app %q (label %s)", c.App, LabelApp)
	}
	return fmt.Sprintf("app %q of environment %q (labels %s and %s)", c.App, c.Env, LabelApp, LabelEnv)
}

// run names the app of the plan, with its environment when the conflict
// is about environments.
func (e *ConflictError) run(c OtherApp) string {
	if c.Env == "" || e.Env == "" {
		return fmt.Sprintf("app %q", e.App)
	}
	return fmt.Sprintf("app %q of environment %q", e.App, e.Env)
}

// ownerName is app, or app (environment env), for notes and reports.
func ownerName(app, env string) string {
	if env == "" {
		return app
	}
	return app + " (environment " + env + ")"
}

// env is the environment of the run, "" when it has none or does not say.
func (o PlanOptions) env() string {
	if o.Identity == nil {
		return ""
	}
	return o.Identity.Environment
}

// ownerEnv is the environment objects of the app must carry to be the
// plan's: the run's, or none (any) when the run takes the app over from
// another environment on purpose (AdoptedIdentity): the app's objects
// labelled with the former environment move with its inventory.
func (p *Plan) ownerEnv() string {
	if p.AdoptedIdentity != nil {
		return ""
	}
	return p.opts.env()
}

// otherOwner returns the app that the live object's LabelApp names, and
// the environment its LabelEnv names, when they are not app of env:
// another app name, or the same name of another environment. It returns
// "" when the object is app's, carries no LabelApp (an object created by
// hand or by another tool is taken over, as before), or carries app's
// name without LabelEnv (of an older version, or of a run without
// environment: still app's, so that an upgrade takes nothing away), and
// when env is "" (the run does not say).
func otherOwner(lm *metav1.PartialObjectMetadata, app, env string) (owner, ownerEnv string) {
	if lm == nil {
		return "", ""
	}
	la, le := lm.Labels[LabelApp], lm.Labels[LabelEnv]
	if la == "" {
		return "", ""
	}
	if la != app || (env != "" && le != "" && le != env) {
		return la, le
	}
	return "", ""
}

// checkOwnership sorts the planned objects that another app owns: the
// ones annotated with AnnotationAdopt are taken over (AdoptedFrom), the
// others are conflicts, which Execute refuses.
func (p *Plan) checkOwnership(live map[object.ID]*metav1.PartialObjectMetadata) {
	for _, c := range p.Changes {
		owner, env := otherOwner(live[c.ID], p.App, p.ownerEnv())
		if owner == "" {
			continue
		}
		if adoptRequested(c.Desired.GetAnnotations()) {
			c.AdoptedFrom = ownerName(owner, env)
			addNote(c, "adopted from app "+c.AdoptedFrom)
			continue
		}
		addNote(c, "conflict: owned by app "+ownerName(owner, env))
		p.Conflicts = append(p.Conflicts, OtherApp{ID: c.ID, Origin: c.Origin, App: owner, Env: env})
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
	return &ConflictError{App: p.App, Env: p.opts.env(), Conflicts: p.Conflicts}
}

// releaseKept reports the objects that left git and another app owns now,
// and drops them from the inventory: they are not this app's to prune.
func (p *Plan) releaseKept(rep *Report, entries map[object.ID]Entry) {
	for _, k := range p.Kept {
		rep.Results = append(rep.Results, Result{ID: k.ID, Origin: k.Origin, Action: Kept, Owner: k.App, OwnerEnv: k.Env})
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
		run, label := p.App, "label "+LabelApp
		if c.Env != "" {
			run, label = ownerName(p.App, p.opts.env()), "labels "+LabelApp+" and "+LabelEnv
		}
		fmt.Fprintln(w, colorize(color, "31", fmt.Sprintf("conflict: %s (%s) belongs to app %s (%s), not to app %s: apply fails; annotate it in git with %s: \"true\" to take it over",
			c.ID, c.Origin, ownerName(c.App, c.Env), label, run, AnnotationAdopt)))
	}
	for _, c := range p.Changes {
		if c.AdoptedFrom != "" {
			fmt.Fprintf(w, "%s will be adopted from app %s (%s)\n", c.ID, c.AdoptedFrom, AnnotationAdopt)
		}
	}
	for _, k := range p.Kept {
		fmt.Fprintf(w, "%s left git but belongs to app %s now: not deleted, dropped from the inventory\n", k.ID, ownerName(k.App, k.Env))
	}
}
