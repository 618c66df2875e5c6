package reconcile

import (
	"context"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// checkInputs reads again the inputs that no commit changes of the apps
// delivered at the head (Options.InputsInterval): the versions of the
// Vault secrets they resolve and of the ConfigMaps and Secrets they read
// from the cluster, and the API versions and server version their charts
// consulted (a CRD someone else installed). An app whose inputs are no
// longer those its last successful run recorded is marked due; the others
// are left alone, not rendered. The digest is the one a new head checks
// (skipUnchanged), so any doubt, a Vault that cannot be read included,
// runs the app, as a full resync would.
func (l *leaderLoop) checkInputs(ctx context.Context) {
	r := l.r
	var cands []inputsCandidate
	r.mu.Lock()
	head, sh := r.head, l.cur
	if sh == nil {
		r.mu.Unlock()
		return
	}
	sh.acquire()
	defer sh.release()
	for _, name := range r.order {
		s := r.apps[name]
		if s.running || s.Revision != head || s.Result != apply.ResultSucceeded || s.Failures > 0 || s.inputs == nil ||
			s.inputMoved != "" || r.pinOf(name) != nil || r.suspended(s) {
			continue
		}
		if !pipeline.OutsideGit(s.app, s.inputs) {
			continue // all its inputs are in git
		}
		if r.shards != nil && !r.shards.owns(name) {
			continue
		}
		cands = append(cands, inputsCandidate{name, s.Revision, s.app, s.inputs})
	}
	r.mu.Unlock()
	same, moved := l.compareInputs(ctx, sh, cands)
	for _, c := range same {
		r.metrics.inputsChecked.WithLabelValues(c.name, inputsUnchanged).Inc()
	}
	if len(moved) == 0 {
		return
	}
	r.mu.Lock()
	var due []string
	for _, c := range moved {
		s := r.apps[c.name]
		// Left alone if anything moved meanwhile: a run started (it
		// reads the inputs anew), another head (checked at its fetch).
		if s == nil || s.running || r.head != head || s.Revision != head || s.inputs != c.inputs {
			continue
		}
		s.inputMoved = "inputs outside git changed"
		due = append(due, c.name)
		r.metrics.inputsChecked.WithLabelValues(c.name, inputsChanged).Inc()
	}
	r.mu.Unlock()
	if len(due) > 0 {
		r.log.Info("inputs outside git changed", "apps", due)
		notify(r.wake)
	}
}

// The results of an inputs check of an app, as the metric
// deliver_reconcile_inputs_checked_total labels them.
const (
	inputsUnchanged = "unchanged"
	inputsChanged   = "changed"
)

// inputsCandidate is an app whose inputs a check compares with those its
// last successful run recorded: its name, the revision it is delivered
// at, its configuration and those inputs, as read under r.mu.
type inputsCandidate struct {
	name, rev string
	app       config.ResolvedApp
	inputs    *apply.Inputs
}

// compareInputs checks each candidate's inputs against sh's revision, in
// one InputsCheck (the files are hashed, each Vault secret and cluster
// object read, once for all), and splits them into the unchanged and the
// moved. Called without r.mu: it reads files, Vault and the cluster,
// and status requests need r.mu.
func (l *leaderLoop) compareInputs(ctx context.Context, sh *sharedSnap, cands []inputsCandidate) (same, moved []inputsCandidate) {
	if len(cands) == 0 {
		return nil, nil
	}
	l.inputsCheck(sh, func(check *pipeline.InputsCheck) {
		for _, c := range cands {
			if check.Unchanged(ctx, c.app, c.inputs) {
				same = append(same, c)
			} else {
				moved = append(moved, c)
			}
		}
	})
	return same, moved
}
