package apply

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// MaxHistory is how many successful revisions an app's inventory keeps in
// Inventory.History: room to roll back several times in a row, at about
// 250 bytes each (TestHistoryEntrySize), so the inventory Secret stays
// far below its 1 MiB.
const MaxHistory = 10

// HistoryEntry is a revision an app was delivered at successfully.
type HistoryEntry struct {
	// Revision is the git commit.
	Revision string `json:"revision"`
	// Time is when the run that first delivered it ended.
	Time time.Time `json:"time"`
	// Digest is the digest of the run's inputs (Inputs.Digest), when they
	// were known: two revisions with one digest delivered the same
	// objects.
	Digest string `json:"digest,omitempty"`
	// Duration is how long that run took, and By the host it ran on (the
	// reconciler's Pod, a CI runner, a laptop): for the web view's
	// history. Both are absent from the entries of older versions.
	Duration time.Duration `json:"duration,omitempty"`
	By       string        `json:"by,omitempty"`
}

// ErrNoPreviousRevision is returned by PreviousRevision when the history
// holds no revision to go back to.
var ErrNoPreviousRevision = errors.New("no previous successful revision in the inventory history")

// withHistory returns history with e appended, oldest first, at most
// MaxHistory long. A revision already in it keeps its place: a rollback
// to it, or a redelivery, does not make it newer than the revisions
// delivered after it first was, so that a second rollback goes further
// back instead of forward to the revision rolled back from. A run without
// a revision (a plain folder) is not a revision one can go back to.
func withHistory(history []HistoryEntry, e HistoryEntry) []HistoryEntry {
	if e.Revision == "" {
		return history
	}
	for _, h := range history {
		if h.Revision == e.Revision {
			return history
		}
	}
	out := append(append([]HistoryEntry(nil), history...), e)
	if len(out) > MaxHistory {
		out = out[len(out)-MaxHistory:]
	}
	return out
}

// PreviousRevision returns the successful revision before the app's
// current one (Inventory.Revision, the last run's, failed or not) in the
// inventory's history: the entry before it, or, when the current
// revision is not in the history (its run failed), the newest entry.
func (inv *Inventory) PreviousRevision() (HistoryEntry, error) {
	i := len(inv.History)
	for j, h := range inv.History {
		if h.Revision == inv.Revision {
			i = j
		}
	}
	if i == 0 {
		if inv.Revision == "" {
			return HistoryEntry{}, fmt.Errorf("app %s: never delivered: %w", inv.App, ErrNoPreviousRevision)
		}
		return HistoryEntry{}, fmt.Errorf("app %s at %.12s: %w", inv.App, inv.Revision, ErrNoPreviousRevision)
	}
	return inv.History[i-1], nil
}

// historyEntry is the history entry of a successful run that wrote inv,
// started at start.
func historyEntry(inv *Inventory, start time.Time) HistoryEntry {
	host, _ := os.Hostname()
	e := HistoryEntry{Revision: inv.Revision, Time: inv.Time, Duration: inv.Time.Sub(start).Round(time.Millisecond), By: host}
	if inv.Inputs != nil {
		e.Digest = inv.Inputs.Digest
	}
	return e
}
