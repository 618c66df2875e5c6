package apply

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/deliverhq/deliver/pkg/object"
)

// lines is a diff text of n lines of width bytes each (newline included).
func lines(n, width int) string {
	var b strings.Builder
	for i := range n {
		l := fmt.Sprintf("+line %d ", i)
		b.WriteString(l + strings.Repeat("x", width-len(l)-1) + "\n")
	}
	return b.String()
}

// TestKeepDiffs: the diffs a stored plan keeps stay within the budget,
// in the plan's order; the diff that crosses it is cut at a line with a
// last line counting the lines cut, or left out when too little room is
// left; the count of objects left out is exact. A pure-logic table test:
// the diffs are given texts.
func TestKeepDiffs(t *testing.T) {
	const max = 10 << 10
	cost := func(text string, name string) int {
		return len(text) + len(object.ID{Kind: "ConfigMap", Namespace: "ns", Name: name}.String()) + diffOverhead
	}
	small := lines(10, 100) // 1,000 bytes
	tests := []struct {
		name  string
		texts []string
		// kept is how many diffs are kept, cut whether the last one is
		// cut, omitted how many are left out.
		kept    int
		cut     bool
		omitted int
	}{
		{name: "none", texts: nil, kept: 0},
		{name: "all fit", texts: []string{small, small, small}, kept: 3},
		{name: "exactly the budget", texts: []string{strings.Repeat("z", max-cost("", "c0")-1) + "\n"}, kept: 1},
		{name: "one too big is cut", texts: []string{lines(500, 100)}, kept: 1, cut: true},
		{name: "the one that crosses is cut, the rest omitted", texts: []string{small, small, lines(100, 100), small, small}, kept: 3, cut: true, omitted: 2},
		{name: "too little room left to cut: omitted", texts: []string{strings.Repeat("z", max-cost("", "c0")-201) + "\n", small, small}, kept: 1, omitted: 2},
		{name: "a single line longer than the room: omitted", texts: []string{strings.Repeat("y", 2*max) + "\n"}, kept: 0, omitted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var changes []*Change
			text := map[*Change]string{}
			for i, s := range tt.texts {
				c := &Change{ID: object.ID{Kind: "ConfigMap", Namespace: "ns", Name: fmt.Sprintf("c%d", i)}, Type: ChangeUpdate}
				changes = append(changes, c)
				text[c] = s
			}
			computed := 0
			got, omitted, err := keepDiffs(changes, func(c *Change) (ObjectDiff, error) {
				computed++
				return ObjectDiff{ID: c.ID, Type: c.Type, Text: text[c]}, nil
			}, max)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.kept || omitted != tt.omitted {
				t.Fatalf("kept %d, omitted %d; want %d, %d", len(got), omitted, tt.kept, tt.omitted)
			}
			if len(got)+omitted != len(changes) {
				t.Errorf("kept %d + omitted %d != %d changes", len(got), omitted, len(changes))
			}
			if want := min(len(changes), tt.kept+1); computed > want {
				t.Errorf("computed %d diffs, want at most %d: the diffs left out need not be rendered", computed, want)
			}
			total := 0
			for i, d := range got {
				total += cost(d.Text, d.ID.Name)
				if d.ID != changes[i].ID {
					t.Errorf("diff %d is of %s, want %s: the plan's order", i, d.ID, changes[i].ID)
				}
				isCut := strings.Contains(d.Text, "more lines of this diff not kept")
				if last := i == len(got)-1; isCut != (last && tt.cut) {
					t.Errorf("diff %d cut: %v, want %v", i, isCut, last && tt.cut)
				}
				if isCut {
					body, note, _ := strings.Cut(d.Text, "... ")
					if !strings.HasPrefix(text[changes[i]], body) || !strings.HasSuffix(body, "\n") {
						t.Errorf("the cut diff is not the first whole lines of the diff")
					}
					want := strings.Count(text[changes[i]][len(body):], "\n")
					if !strings.HasPrefix(note, fmt.Sprintf("%d more lines", want)) {
						t.Errorf("cut note %q, want %d more lines", note, want)
					}
				} else if d.Text != text[changes[i]] {
					t.Errorf("diff %d changed though not cut", i)
				}
			}
			if total > max {
				t.Errorf("kept %d bytes, more than %d", total, max)
			}
		})
	}
}

// TestEncodePlanBesideBigInventory: a plan that would take the inventory
// Secret past its limit is stored with its summary only, every diff
// counted as left out; beside a small inventory it is stored whole.
func TestEncodePlanBesideBigInventory(t *testing.T) {
	s := &Session{}
	sp := &StoredPlan{Revision: "r1", Result: ResultSucceeded, Summary: "0 to create, 2 to change, 0 to delete, 0 unchanged", Update: 2, Omitted: 1,
		Diffs: []ObjectDiff{{ID: object.ID{Kind: "ConfigMap", Name: "a"}, Type: ChangeUpdate, Text: lines(50, 80)}, {ID: object.ID{Kind: "ConfigMap", Name: "b"}, Type: ChangeUpdate, Text: "-a <b>\n+c <d>\n"}}}
	for _, tt := range []struct {
		name     string
		invBytes int
		diffs    int
		omitted  int
	}{
		{"small inventory", 10 << 10, 2, 1},
		{"inventory near the limit", maxSecretData - 100, 0, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, err := s.encodePlan(sp, tt.invBytes)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodePlan(&corev1.Secret{Data: map[string][]byte{planGzipKey: data}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Diffs) != tt.diffs || got.Omitted != tt.omitted || got.Summary != sp.Summary || got.Revision != "r1" {
				t.Errorf("stored %d diffs, %d omitted, %q; want %d, %d", len(got.Diffs), got.Omitted, got.Summary, tt.diffs, tt.omitted)
			}
			if tt.diffs > 0 {
				// Stored as JSON without HTML escapes: < is one byte.
				zr, _ := gzip.NewReader(bytes.NewReader(data))
				raw, _ := io.ReadAll(zr)
				if !bytes.Contains(raw, []byte("<b>")) || !json.Valid(raw) {
					t.Errorf("stored plan %q", raw)
				}
			}
		})
	}
	if sp, err := decodePlan(&corev1.Secret{Data: map[string][]byte{inventoryGzipKey: []byte("x")}}); sp != nil || err != nil {
		t.Errorf("an inventory without a plan: %+v, %v; want none", sp, err)
	}
}

// TestStoredPlanNote: the line under the kept diffs.
func TestStoredPlanNote(t *testing.T) {
	for n, want := range map[int]string{0: "", 1: "1 more object changed", 7: "7 more objects changed"} {
		if got := (&StoredPlan{Omitted: n}).Note(); !strings.HasPrefix(got, want) || (want == "") != (got == "") {
			t.Errorf("Note with %d omitted: %q, want %q...", n, got, want)
		}
	}
}
