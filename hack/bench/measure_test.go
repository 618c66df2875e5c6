package main

import (
	"bytes"
	"testing"
	"time"
)

func TestMarkWriter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		writes []string
		found  bool
	}{
		{"text", []string{"time=x level=INFO msg=start\n", "time=x level=INFO msg=revision revision=abc apps=3\n"}, true},
		{"text at end of line", []string{"level=INFO msg=revision\n"}, true},
		{"json", []string{`{"level":"INFO","msg":"revision","apps":3}` + "\n"}, true},
		{"split over writes", []string{"level=INFO msg=rev", "ision revision=abc\n"}, true},
		{"a longer message", []string{"level=INFO msg=revisions apps=3\n"}, false},
		{"an attribute, not the message", []string{"level=INFO msg=unchanged revision=abc\n"}, false},
		{"no newline yet", []string{"level=INFO msg=revision"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			m := &markWriter{w: &out, msg: "revision", start: time.Now().Add(-time.Second)}
			var all string
			for _, w := range tc.writes {
				if _, err := m.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
				all += w
			}
			if got := m.at > 0; got != tc.found {
				t.Errorf("found = %v, want %v", got, tc.found)
			}
			if out.String() != all {
				t.Errorf("passed on %q, want %q", out.String(), all)
			}
		})
	}
}

func TestSinceMark(t *testing.T) {
	t.Parallel()
	got, err := sinceMark([]sample{{Wall: 3 * time.Second, Mark: 2 * time.Second}})
	if err != nil || got[0].Wall != time.Second {
		t.Fatalf("sinceMark = %v, %v; want a wall of 1s", got, err)
	}
	if _, err := sinceMark([]sample{{Wall: time.Second}}); err == nil {
		t.Fatal("sinceMark of a run without its mark: no error")
	}
}
