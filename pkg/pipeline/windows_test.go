package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/pkg/window"
)

// TestHoldMessage: the message status and diff show for a held app names
// the window and until when, or says that no opening was found within a
// year (a deny window that never ends, an allow window that never comes).
func TestHoldMessage(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 6, 1, 10, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		spec window.Spec
		want string
	}{
		{"daily deny, 10:00 for 2h", window.Spec{Kind: window.Deny, Schedule: "0 10 * * *", Duration: 2 * time.Hour}, "until 2026-06-01T12:00:00Z"},
		{"deny that never ends", window.Spec{Kind: window.Deny, Schedule: "0 0 * * *", Duration: 24 * time.Hour}, "no opening within a year"},
		{"allow that never comes", window.Spec{Kind: window.Allow, Schedule: "0 0 30 2 *", Duration: time.Hour}, "no opening within a year"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := window.Parse("windows[0]", tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			d := window.Check([]*window.Window{w}, "web", "", at)
			got := HoldMessage(d)
			if d.Allowed || !strings.HasPrefix(got, "held by "+w.String()+" ") || !strings.HasSuffix(got, tt.want) {
				t.Errorf("HoldMessage = %q, want held by %s, %s", got, w, tt.want)
			}
		})
	}
	if got := HoldMessage(window.Decision{Allowed: true}); got != "" {
		t.Errorf("an allowed app: %q, want none", got)
	}
}
