package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/pkg/window"
)

const windowsHead = `apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- {name: web, namespace: web, manifests: {path: web}}
environments:
  prod: {}
windows:
`

// TestWindowsErrors: each bad field of a window is an error naming the
// window's index and the field.
func TestWindowsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, window string
		want         []string
	}{
		{"bad cron", `- {kind: deny, schedule: "0 25 * * *", duration: 1h}`, []string{"windows[0]: schedule:"}},
		{"bad duration", `- {kind: deny, schedule: "0 1 * * *", duration: soon}`, []string{"line 8", "not a duration"}},
		{"zero duration", `- {kind: deny, schedule: "0 1 * * *", duration: 0s}`, []string{"windows[0]: duration:"}},
		{"no duration", `- {kind: deny, schedule: "0 1 * * *"}`, []string{"windows[0]: duration:"}},
		{"unknown zone", `- {kind: deny, schedule: "0 1 * * *", duration: 1h, timeZone: Europe/Gotham}`, []string{`windows[0]: timeZone: unknown time zone "Europe/Gotham"`}},
		{"unknown kind", `- {kind: freeze, schedule: "0 1 * * *", duration: 1h}`, []string{`windows[0]: kind: unknown kind "freeze"`}},
		{"unknown app", `- {kind: deny, schedule: "0 1 * * *", duration: 1h, apps: [web, wbe]}`, []string{`windows[0]: apps: unknown app "wbe"`}},
		{"unknown environment", `- {kind: allow, schedule: "0 1 * * *", duration: 1h, environments: [prd]}`, []string{`windows[0]: environments: unknown environment "prd"`}},
		{"second window, two fields", "- {kind: deny, schedule: \"0 1 * * *\", duration: 1h}\n- {kind: allow, schedule: \"@every 1h\", duration: 1h, timeZone: Nowhere}",
			[]string{"windows[1]: timeZone:", "windows[1]: schedule:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("deliver.yaml", []byte(windowsHead+tc.window+"\n"))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestExampleWindows parses examples/windows/deliver.yaml and checks
// what its comments promise at fixed times.
func TestExampleWindows(t *testing.T) {
	data, err := os.ReadFile("../../examples/windows/deliver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("deliver.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Wednesday 4 March 2026, 15:00 UTC: 10:00 in New York.
	wed := time.Date(2026, 3, 4, 15, 0, 0, 0, time.UTC)
	sat := time.Date(2026, 3, 7, 12, 0, 0, 0, berlin)
	night := time.Date(2026, 3, 4, 23, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		env, app string
		t        time.Time
		allowed  bool
		by       string
		until    time.Time
	}{
		{"prod", "web", wed, true, "", time.Time{}},
		{"prod", "payments", wed, true, "", time.Time{}},
		{"prod", "web", sat, false, "windows[0]", time.Date(2026, 3, 9, 6, 0, 0, 0, berlin)},
		{"staging", "web", sat, true, "", time.Time{}},
		// New York is on daylight saving time from 8 March: 09:00 is 13:00 UTC.
		{"staging", "payments", sat, false, "windows[2]", time.Date(2026, 3, 9, 13, 0, 0, 0, time.UTC)},
		{"staging", "web", night, false, "windows[1]", time.Date(2026, 3, 5, 1, 0, 0, 0, time.UTC)},
		// 01:00 UTC is 20:00 in New York: payments waits for 09:00 there.
		{"staging", "payments", night, false, "windows[1]", time.Date(2026, 3, 5, 14, 0, 0, 0, time.UTC)},
	} {
		r, err := c.ForEnvironment(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		d := window.Check(r.Windows, tc.app, r.Environment, tc.t)
		name := ""
		if d.By != nil {
			name = d.By.Name
		}
		if d.Allowed != tc.allowed || name != tc.by || !d.Until.Equal(tc.until) {
			t.Errorf("%s/%s at %v: allowed %v by %q until %v; want %v by %q until %v", tc.env, tc.app, tc.t, d.Allowed, name, d.Until, tc.allowed, tc.by, tc.until)
		}
	}
}
