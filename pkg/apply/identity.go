package apply

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// An app's objects carry LabelApp with its name, and its inventory is the
// Secret InventoryName(app): the name alone says which app an object is
// of. Two deliveries of one app name (two deliver.yamls, two environments
// of one deliver.yaml, a repository and its fork) to one cluster would
// share both, so the second would take the first's objects over without a
// word and its prune would delete the first's objects. The inventory
// therefore records who delivers the app (Identity), and a run of another
// identity is refused before it writes anything, unless the inventory is
// annotated with AnnotationAdopt to move the app on purpose.

// Identity says who delivers an app: which environment of which
// deliver.yaml of which repository. It is recorded in the app's inventory.
type Identity struct {
	// Environment is the deliver.yaml environment; "" for none.
	Environment string `json:"environment"`
	// Repository is the repository's URL without scheme, credentials,
	// port, trailing ".git" or slash (github.com/org/repo); "" when
	// unknown (a local checkout without an origin remote).
	Repository string `json:"repository,omitempty"`
	// Config is the path of deliver.yaml inside the repository (of the
	// manifests folder for a run without one), with forward slashes.
	Config string `json:"config,omitempty"`
}

// differs reports whether a run of identity b may not take over an app
// recorded with a: another environment, or another repository or
// deliver.yaml when both repositories are known. A run from a checkout
// whose repository is unknown is not refused for it: it cannot be told
// from a run of the recorded one.
func (a Identity) differs(b Identity) bool {
	if a.Environment != b.Environment {
		return true
	}
	return a.Repository != "" && b.Repository != "" && (a.Repository != b.Repository || a.Config != b.Config)
}

// String names the identity for messages: environment "prod" of
// github.com/org/repo//deliver.yaml (the // of kustomize's and
// Terraform's remote paths).
func (a Identity) String() string {
	env := "no environment"
	if a.Environment != "" {
		env = "environment " + strconv.Quote(a.Environment)
	}
	switch {
	case a.Repository != "":
		return env + " of " + a.Repository + "//" + a.Config
	case a.Config != "":
		return env + " of " + a.Config + " (repository unknown)"
	default:
		return env + " (source unknown)"
	}
}

// merged is the identity a run of a records: a's, keeping the recorded
// repository and deliver.yaml when a's repository is unknown, so that a
// run from a checkout without a remote does not lose what the others
// recorded.
func (a Identity) merged(recorded *Identity) Identity {
	if a.Repository == "" && recorded != nil {
		a.Repository, a.Config = recorded.Repository, recorded.Config
	}
	return a
}

// IdentityConflict is an app whose inventory records another identity
// than the run's.
type IdentityConflict struct {
	// Recorded is who delivered the app so far; Run is the run's identity.
	Recorded Identity `json:"recorded"`
	Run      Identity `json:"run"`
}

// IdentityError is the error of a plan (diff) and of Apply and Execute
// for an app whose inventory another identity recorded, without
// AnnotationAdopt on the inventory. Apply returns it before anything of
// the app is written.
type IdentityError struct {
	// App is the app's name.
	App string
	// Inventory is the inventory Secret, namespace/name.
	Inventory string
	IdentityConflict
}

// Error names the app, both identities, the inventory Secret and how to
// move the app on purpose.
func (e *IdentityError) Error() string {
	return fmt.Sprintf("%s: two deliveries of one app name would take each other's objects and prune them; nothing of app %q was applied (%s)",
		e.conflict(), e.App, e.howToAdopt())
}

// conflict says whose the app is and who the run is.
func (e *IdentityError) conflict() string {
	return fmt.Sprintf("app %q is delivered by %s (inventory Secret %s), not by this run's %s", e.App, e.Recorded, e.Inventory, e.Run)
}

func (e *IdentityError) howToAdopt() string {
	ns, name, _ := strings.Cut(e.Inventory, "/")
	return fmt.Sprintf("to move the app to this run on purpose, annotate its inventory: kubectl annotate secret -n %s %s %s=true", ns, name, AnnotationAdopt)
}

// checkIdentity compares the run's identity with the inventory's: a run
// without one (a caller that does not say) and an inventory without one
// (written by an older version) are never refused; another identity is a
// conflict unless the inventory asks for adoption.
func (p *Plan) checkIdentity(inv *Inventory, run *Identity) {
	if run == nil || inv.Identity == nil || !inv.Identity.differs(*run) {
		return
	}
	c := &IdentityConflict{Recorded: *inv.Identity, Run: *run}
	if inv.adopt {
		p.AdoptedIdentity = c
		return
	}
	p.IdentityConflict = c
}

// recordedIdentity is the identity the inventory written by the plan's run
// records: the run's (see merged), or the recorded one when the caller
// gave none.
func (p *Plan) recordedIdentity() *Identity {
	if p.opts.Identity == nil {
		return p.inventory.Identity
	}
	id := p.opts.Identity.merged(p.inventory.Identity)
	if p.AdoptedIdentity != nil {
		id = *p.opts.Identity // moved on purpose: nothing of the old one stays
	}
	return &id
}

// identityErr returns the plan's *IdentityError, nil without a conflict.
func (p *Plan) identityErr() error {
	if e := p.identityError(); e != nil {
		return e
	}
	return nil
}

func (p *Plan) identityError() *IdentityError {
	if p.IdentityConflict == nil {
		return nil
	}
	return &IdentityError{App: p.App, Inventory: p.inventoryNamespace + "/" + InventoryName(p.App), IdentityConflict: *p.IdentityConflict}
}

// writeIdentity prints the identity conflict or adoption, for the diff.
func (p *Plan) writeIdentity(w io.Writer, color bool) {
	if e := p.identityError(); e != nil {
		fmt.Fprintln(w, colorize(color, "31", "conflict: "+p.redact(e.conflict()+": apply fails; "+e.howToAdopt())))
	}
	if c := p.AdoptedIdentity; c != nil {
		fmt.Fprintln(w, p.redact(fmt.Sprintf("app %s will be adopted from %s (inventory annotated %s=true); this run's %s is recorded", p.App, c.Recorded, AnnotationAdopt, c.Run)))
	}
}
