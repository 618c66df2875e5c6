package apply_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/pkg/apply"
)

// TestPreviousRevision: the revision before the current one in the
// history, the newest one when the current run failed, none for an app
// with nothing before.
func TestPreviousRevision(t *testing.T) {
	h := func(revs ...string) []apply.HistoryEntry {
		var out []apply.HistoryEntry
		for _, r := range revs {
			out = append(out, apply.HistoryEntry{Revision: r})
		}
		return out
	}
	for _, tc := range []struct {
		name, current string
		history       []apply.HistoryEntry
		want          string // "" for ErrNoPreviousRevision
	}{
		{name: "after a successful run", current: "c", history: h("a", "b", "c"), want: "b"},
		{name: "after a failed run", current: "d", history: h("a", "b", "c"), want: "c"},
		{name: "rolled back once", current: "b", history: h("a", "b", "c"), want: "a"},
		{name: "the oldest kept", current: "a", history: h("a", "b"), want: ""},
		{name: "one success", current: "a", history: h("a"), want: ""},
		{name: "never succeeded", current: "a", want: ""},
		{name: "never delivered", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &apply.Inventory{App: "web", Revision: tc.current, History: tc.history}
			got, err := inv.PreviousRevision()
			if tc.want == "" {
				if !errors.Is(err, apply.ErrNoPreviousRevision) {
					t.Fatalf("PreviousRevision = %+v, %v; want ErrNoPreviousRevision", got, err)
				}
				return
			}
			if err != nil || got.Revision != tc.want {
				t.Fatalf("PreviousRevision = %+v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestHistory: against the real control plane, each successful run adds
// its revision to the inventory's history, a failed run adds none, a
// redelivered revision keeps its place, and the history keeps the last
// MaxHistory revisions.
func TestHistory(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	// No dry run of new objects: the invalid one fails the run itself,
	// after the inventory recorded it under way.
	m := newManager(t, apply.Options{InventoryNamespace: ns, NoCreateDryRun: true})
	cm := func(name, label string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: NS, labels: {v: \"" + label + "\"}}\ndata: {a: b}\n"
	}
	deliver := func(rev, label string, fail bool) {
		t.Helper()
		manifest := cm("web", rev)
		if fail {
			// A label value with a space: the API server refuses it.
			manifest += "---\n" + cm("bad", label)
		}
		_, err := m.Apply(ctx, objects(t, ns, manifest), apply.PlanOptions{App: "web", Revision: rev})
		if (err != nil) != fail {
			t.Fatalf("apply of %s: %v, want failure %v", rev, err, fail)
		}
	}
	revs := func() []string {
		t.Helper()
		inv, err := m.ReadInventory(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range inv.History {
			if h.Time.IsZero() || time.Since(h.Time) > time.Hour {
				t.Errorf("history entry %s: time %s", h.Revision, h.Time)
			}
			// The web view's history shows how long the run took and
			// where it ran.
			if host, _ := os.Hostname(); h.Duration <= 0 || h.By != host {
				t.Errorf("history entry %s: duration %s, by %q; want a positive duration, by %q", h.Revision, h.Duration, h.By, host)
			}
			out = append(out, h.Revision)
		}
		return out
	}
	deliver("a", "a", false)
	deliver("bad", "not valid", true)
	if inv, err := m.ReadInventory(ctx, "web"); err != nil || inv.Result != apply.ResultFailed || inv.Revision != "bad" {
		t.Fatalf("inventory after the failed run: %v, %v; want result failed at revision bad", inv, err)
	}
	deliver("c", "c", false)
	deliver("a", "a", false)
	if got := fmt.Sprint(revs()); got != "[a c]" {
		t.Fatalf("history %s, want [a c]: the failed run is not in it, a redelivery keeps its place", got)
	}
	for i := range apply.MaxHistory + 2 {
		r := fmt.Sprintf("r%d", i)
		deliver(r, r, false)
	}
	got := revs()
	if len(got) != apply.MaxHistory || got[0] != "r2" || got[len(got)-1] != fmt.Sprintf("r%d", apply.MaxHistory+1) {
		t.Fatalf("history %v, want the last %d revisions, r2 to r%d", got, apply.MaxHistory, apply.MaxHistory+1)
	}
}

// TestPinAnnotations: a pin of an app without an inventory creates one
// that a run then fills, the run keeps the pin, a run of another revision
// is refused, and ClearPin removes it.
func TestPinAnnotations(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	m := newManager(t, apply.Options{InventoryNamespace: ns})
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	want := apply.Pin{Revision: "0123456789abcdef0123456789abcdef01234567", By: "alice", At: at, Reason: "bad release"}
	if err := m.SetPin(ctx, "web", want); err != nil {
		t.Fatal(err)
	}
	inv, err := m.ReadInventory(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Pin.Equal(&want) || inv.Revision != "" || len(inv.Entries) != 0 {
		t.Fatalf("inventory after the pin: pin %+v, revision %q, %d entries; want the pin and an empty inventory", inv.Pin, inv.Revision, len(inv.Entries))
	}
	set := objects(t, ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: NS}\ndata: {a: b}\n")
	if _, err := m.Apply(ctx, set, apply.PlanOptions{App: "web", Revision: want.Revision}); err != nil {
		t.Fatal(err)
	}
	if inv, err = m.ReadInventory(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if !inv.Pin.Equal(&want) || inv.Revision != want.Revision || len(inv.Entries) != 1 {
		t.Fatalf("inventory after a run: pin %+v, revision %q, %d entries; want the pin kept and the run recorded", inv.Pin, inv.Revision, len(inv.Entries))
	}
	// A run of another revision is refused before it writes anything.
	set2 := objects(t, ns, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web2, namespace: NS}\ndata: {a: b}\n")
	if _, err := m.Apply(ctx, set2, apply.PlanOptions{App: "web", Revision: "newer"}); !errors.Is(err, apply.ErrPinned) ||
		!strings.Contains(err.Error(), "pinned to 0123456789ab by alice at 2026-12-05T10:00:00Z (bad release)") {
		t.Fatalf("apply of another revision while pinned: %v, want ErrPinned naming the pin", err)
	}
	if inv, err = m.ReadInventory(ctx, "web"); err != nil || inv.Revision != want.Revision || len(inv.Entries) != 1 {
		t.Fatalf("inventory after the refused run: revision %q, %d entries, %v; want it unchanged", inv.Revision, len(inv.Entries), err)
	}
	if err := m.SetPin(ctx, "web", apply.Pin{Revision: want.Revision, Reason: string(make([]byte, apply.MaxPinReason+1))}); err == nil {
		t.Errorf("a reason over MaxPinReason was accepted")
	}
	old, err := m.ClearPin(ctx, "web")
	if err != nil || !old.Equal(&want) {
		t.Fatalf("ClearPin = %+v, %v; want the pin removed", old, err)
	}
	if inv, err = m.ReadInventory(ctx, "web"); err != nil || inv.Pin != nil || len(inv.Entries) != 1 {
		t.Fatalf("inventory after ClearPin: pin %+v, %d entries, %v; want no pin, the entries kept", inv.Pin, len(inv.Entries), err)
	}
	if old, err = m.ClearPin(ctx, "web"); err != nil || old != nil {
		t.Fatalf("ClearPin of an unpinned app = %+v, %v; want nil, nil", old, err)
	}
	if old, err = m.ClearPin(ctx, "never-delivered"); err != nil || old != nil {
		t.Fatalf("ClearPin of an app without inventory = %+v, %v; want nil, nil", old, err)
	}
}

// TestHistoryEntrySize: an entry of a reconciler's run (a full commit id,
// an input digest, a duration and a Pod name) is about 250 bytes of the
// inventory, as docs/pin.md says, so MaxHistory entries stay a few KiB of
// the Secret's 1 MiB.
func TestHistoryEntrySize(t *testing.T) {
	t.Parallel()
	e := apply.HistoryEntry{
		Revision: strings.Repeat("a", 40),
		Time:     time.Date(2026, 12, 6, 20, 0, 0, 123456789, time.UTC),
		Digest:   "sha256:" + strings.Repeat("0", 64),
		Duration: 12345678901 * time.Nanosecond,
		By:       "deliver-reconcile-7d9f8b6c5-x2x4z",
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(data); n < 200 || n > 300 {
		t.Errorf("an entry is %d bytes, not about 250: %s", n, data)
	}
	if n := apply.MaxHistory * 300; n > 4<<10 {
		t.Errorf("a full history is up to %d bytes, more than a few KiB", n)
	}
}
