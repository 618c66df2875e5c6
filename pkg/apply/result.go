package apply

import (
	"fmt"
	"time"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// Action is what apply did to one object.
type Action string

// The closed set of actions.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Recreated  Action = "recreated"
	Deleted    Action = "deleted"
	ScaledDown Action = "scaled-down"
	Restored   Action = "restored"
	// RolledBack is a workload put back to the object of the last
	// successful run after its rollout failed (PlanOptions.RollbackOnFailure).
	RolledBack Action = "rolled-back"
	HookRan    Action = "hook-ran"
	// Kept is an object that left git but was not deleted, because
	// another app owns it now (Result.Owner): it is dropped from this
	// app's inventory instead.
	Kept Action = "kept"
	// Orphaned is an object its app's removal left in the cluster, as
	// the app's DeletionPolicy (Orphan) says.
	Orphaned Action = "orphaned"
	Failed   Action = "failed"
)

// Result is the outcome for one object.
type Result struct {
	ID     object.ID     `json:"id"`
	Origin object.Origin `json:"origin"`
	Action Action        `json:"action"`
	Error  string        `json:"error,omitempty"`
	// Conflicts lists the fields deliver took over from other field
	// managers, as the server described them.
	Conflicts []string `json:"conflicts,omitempty"`
	// Hook is the phase, for hook runs.
	Hook string `json:"hook,omitempty"`
	// AdoptedFrom is the app the object belonged to before this run took
	// it over (AnnotationAdopt).
	AdoptedFrom string `json:"adoptedFrom,omitempty"`
	// Owner is the app whose LabelApp a Kept object carries, OwnerEnv
	// the environment its LabelEnv names, if any.
	Owner    string `json:"owner,omitempty"`
	OwnerEnv string `json:"ownerEnv,omitempty"`
}

// Report is the outcome of one Apply.
type Report struct {
	Results  []Result      `json:"results"`
	Duration time.Duration `json:"duration"`
	// Plan is the plan the run executed (Apply), for showing its diff; not
	// in the JSON form, which is the results.
	Plan *Plan `json:"-"`
	// AdoptedFrom is the identity that delivered the app before this run
	// took it over (AnnotationAdopt on its inventory); nil otherwise.
	AdoptedFrom *Identity `json:"adoptedFrom,omitempty"`
	// Health is the last verdict of a health check (Options.Health) on
	// each object the wait judged by one, in apply order.
	Health []HealthResult `json:"health,omitempty"`
}

// HealthResult is a health check's verdict on one object.
type HealthResult struct {
	ID object.ID `json:"id"`
	// Status is Current, InProgress or Failed.
	Status status.Status `json:"status"`
	// Field and Expr are the expression that decided; empty when none
	// did (none was true yet, or the status is of an older generation).
	Field health.Field `json:"field,omitempty"`
	Expr  string       `json:"expr,omitempty"`
	// Message says why, naming the expression.
	Message string `json:"message"`
}

// Count returns how many results have action a.
func (r *Report) Count(a Action) int {
	n := 0
	for _, res := range r.Results {
		if res.Action == a {
			n++
		}
	}
	return n
}

// Summary formats the counts as one line.
func (r *Report) Summary() string {
	s := fmt.Sprintf("%d created, %d configured, %d recreated, %d unchanged, %d deleted, %d failed",
		r.Count(Created), r.Count(Configured), r.Count(Recreated), r.Count(Unchanged), r.Count(Deleted), r.Count(Failed))
	if n := r.Count(HookRan); n > 0 {
		s += fmt.Sprintf(", %d hooks ran", n)
	}
	if n := r.Count(Kept); n > 0 {
		s += fmt.Sprintf(", %d kept for other apps", n)
	}
	if n := r.Count(RolledBack); n > 0 {
		s += fmt.Sprintf(", %d rolled back", n)
	}
	if n := r.Count(Orphaned); n > 0 {
		s += fmt.Sprintf(", %d left in the cluster (deletionPolicy %s)", n, DeletionOrphan)
	}
	return s
}
