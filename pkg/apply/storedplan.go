package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StoredPlan is the last plan that changed an app, as the app's inventory
// Secret keeps it: what the last delivery changed, for the web view of a
// process that did not make the run (`deliver ui`, a restarted
// reconciler). The run that applies a plan with changes stores it in the
// inventory write it makes at its end, succeeded or failed (a failed run
// is still what the last delivery tried to change); a run whose plan
// changes nothing keeps the plan stored before, so that a quiet hour of
// no-change runs does not hide the last change.
//
// Its diffs are masked as WriteDiff's and every text went through the
// run's Redact before it was stored; the diffs are cut to MaxPlanDiffBytes
// in all (Omitted counts the changed objects left out).
type StoredPlan struct {
	// Revision is the git commit the plan delivered.
	Revision string `json:"revision,omitempty"`
	// Time is when the run that applied it ended.
	Time time.Time `json:"time"`
	// Result is the run's: ResultSucceeded or ResultFailed.
	Result string `json:"result"`
	// Summary is Plan.Summary.
	Summary string `json:"summary"`
	// The counts of the summary.
	Create    int `json:"create"`
	Update    int `json:"update"`
	Delete    int `json:"delete"`
	Unchanged int `json:"unchanged"`
	// Diffs are the diffs of the changed objects, in the plan's order, as
	// far as they fit in MaxPlanDiffBytes; the one that crosses the limit
	// is cut at a line with a note saying so.
	Diffs []ObjectDiff `json:"diffs,omitempty"`
	// Omitted counts the changed objects whose diff is not kept.
	Omitted int `json:"omitted,omitempty"`
	// Error says why no diff could be made, when none could (redacted).
	Error string `json:"error,omitempty"`
}

// Note is the line a reader shows under the kept diffs: "N more objects
// changed" when some were left out, "" otherwise.
func (sp *StoredPlan) Note() string {
	switch sp.Omitted {
	case 0:
		return ""
	case 1:
		return "1 more object changed (its diff is not kept: the stored plan is cut to 64 KiB)"
	}
	return fmt.Sprintf("%d more objects changed (their diffs are not kept: the stored plan is cut to 64 KiB)", sp.Omitted)
}

const (
	// planGzipKey is the inventory Secret's key of the StoredPlan, gzipped
	// JSON. A key of its own, not a field of the inventory: the
	// inventory's readers (status, prune, rollback, pin, the reconciler's
	// look at every app) neither unzip nor decode it.
	planGzipKey = "plan.json.gz"
	// MaxPlanDiffBytes bounds the diff text a StoredPlan keeps, in all: a
	// page's worth of diffs, and 64 KiB beside an inventory that may take
	// most of the Secret's 1 MiB (entries and MaxRollbackBytes of
	// workloads).
	MaxPlanDiffBytes = 64 << 10
	// maxSecretData is what the inventory and the plan may take together
	// in the Secret, below the 1 MiB the API server allows an object's
	// data, with room for its metadata. A plan that would cross it is
	// stored with its summary only.
	maxSecretData = 1<<20 - 32<<10
	// maxPlanBytes bounds a stored plan unzipped, when it is read.
	maxPlanBytes = 4 << 20
	// diffOverhead is what a kept diff costs besides its text and note,
	// in the budget: its ID, type and the JSON around them.
	diffOverhead = 96
	// minCut is the least room worth cutting a diff into: with less, the
	// diff is left out rather than shown as a few lines.
	minCut = 1 << 10
)

// Stored returns what the inventory keeps of p, applied by a run that
// ended at at with result; nil when p changes nothing (the plan stored
// before stays). The web view keeps the same in memory, so that the
// reconciler's own page of a run is bounded as the stored one is. Each diff is computed only while there is room for it:
// a first apply of a thousand objects does not render the diffs it drops.
func (p *Plan) Stored(result string, at time.Time, redact func(string) string) *StoredPlan {
	if !p.HasChanges() {
		return nil
	}
	if redact == nil {
		redact = func(s string) string { return s }
	}
	sp := &StoredPlan{Revision: p.Revision, Time: at, Result: result, Summary: p.Summary(),
		Create: p.Count(ChangeCreate), Update: p.Count(ChangeUpdate), Delete: p.Count(ChangeDelete), Unchanged: p.Count(ChangeUnchanged)}
	var changed []*Change
	for _, c := range p.Changes {
		if c.Type != ChangeUnchanged {
			changed = append(changed, c)
		}
	}
	diffs, omitted, err := keepDiffs(changed, func(c *Change) (ObjectDiff, error) {
		text, err := p.maskedDiff(c, 3)
		// maskedDiff redacts with the plan's Redact, which is the
		// manager's; the note is redacted here, and the text once more
		// in case the plan was made by hand.
		return ObjectDiff{ID: c.ID, Type: c.Type, Note: redact(c.Note), Recreate: c.Recreate, Text: redact(text)}, err
	}, MaxPlanDiffBytes)
	if err != nil {
		sp.Error = redact("diff unavailable: " + err.Error())
		diffs, omitted = nil, len(changed)
	}
	sp.Diffs, sp.Omitted = diffs, omitted
	return sp
}

// keepDiffs returns the diffs of changes, in order, as far as max bytes
// hold them (each diff costing its text, its note and diffOverhead), and
// how many changes were left out. The diff that crosses max is cut at a
// line, with a line saying how many lines were cut, when at least minCut
// bytes are left for it; otherwise it is left out with the rest.
func keepDiffs(changes []*Change, diff func(*Change) (ObjectDiff, error), max int) ([]ObjectDiff, int, error) {
	var out []ObjectDiff
	room := max
	for i, c := range changes {
		d, err := diff(c)
		if err != nil {
			return nil, 0, err
		}
		cost := len(d.Text) + len(d.Note) + len(d.ID.String()) + diffOverhead
		if cost <= room {
			out = append(out, d)
			room -= cost
			continue
		}
		if text, ok := cutDiff(d.Text, room-len(d.Note)-len(d.ID.String())-diffOverhead); ok {
			d.Text = text
			out = append(out, d)
			i++
		}
		return out, len(changes) - i, nil
	}
	return out, 0, nil
}

// cutDiff returns the lines of text that fit in room bytes with a last
// line saying how many were cut; false when room is less than minCut or
// not even the first line fits.
func cutDiff(text string, room int) (string, bool) {
	const marker = "... %d more lines of this diff not kept (the stored plan is cut to 64 KiB)\n"
	if room < minCut {
		return "", false
	}
	room -= len(marker) + 8 // the count's digits
	keep := text[:min(room, len(text))]
	i := strings.LastIndexByte(keep, '\n')
	if i < 0 {
		return "", false
	}
	keep = keep[:i+1]
	cut := strings.Count(text[len(keep):], "\n")
	if !strings.HasSuffix(text, "\n") {
		cut++
	}
	return keep + fmt.Sprintf(marker, cut), true
}

// encodePlan returns sp as the Secret keeps it, gzipped JSON; beside an
// inventory of invBytes (gzipped) that would take the Secret past
// maxSecretData, its summary only.
func (s *Session) encodePlan(sp *StoredPlan, invBytes int) ([]byte, error) {
	enc := func(sp *StoredPlan) ([]byte, error) {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false) // a diff is full of < and >: six bytes each escaped
		if err := e.Encode(sp); err != nil {
			return nil, err
		}
		return s.gzipBytes(b.Bytes())
	}
	data, err := enc(sp)
	if err != nil || invBytes+len(data) <= maxSecretData {
		return data, err
	}
	short := *sp
	short.Omitted += len(short.Diffs)
	short.Diffs = nil
	return enc(&short)
}

// decodePlan reads the StoredPlan an inventory Secret holds; nil when it
// holds none (never changed, or written by an older deliver).
func decodePlan(s *corev1.Secret) (*StoredPlan, error) {
	gz, ok := s.Data[planGzipKey]
	if !ok {
		return nil, nil
	}
	data, err := gunzip(gz, maxPlanBytes)
	if err != nil {
		return nil, fmt.Errorf("inventory %s/%s: plan: %w", s.Namespace, s.Name, err)
	}
	sp := &StoredPlan{}
	if err := json.Unmarshal(data, sp); err != nil {
		return nil, fmt.Errorf("inventory %s/%s: plan: %w", s.Namespace, s.Name, err)
	}
	return sp, nil
}

// ReadInventoryPlan returns app's stored inventory (an empty one when it
// has none) and the last plan that changed the app (see StoredPlan; nil
// when none is stored), from one read of the inventory Secret. Only
// this decodes the plan: ReadInventory and the others leave it be.
func (m *Manager) ReadInventoryPlan(ctx context.Context, app string) (*Inventory, *StoredPlan, error) {
	s, err := m.kube.CoreV1().Secrets(m.opts.InventoryNamespace).Get(ctx, InventoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Inventory{App: app}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("inventory %s/%s: read: %w", m.opts.InventoryNamespace, InventoryName(app), err)
	}
	inv, err := inventoryOf(s)
	if err != nil {
		return nil, nil, err
	}
	sp, err := decodePlan(s)
	return inv, sp, err
}
