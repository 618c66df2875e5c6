package window

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, name string, s Spec) *Window {
	t.Helper()
	w, err := Parse(name, s)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return w
}

func at(t testing.TB, zone, value string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04:05", value, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestParseErrors: each bad field is named, several at once.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spec   Spec
		fields []string
	}{
		{"bad cron", Spec{Kind: Deny, Schedule: "61 * * * *", Duration: time.Hour}, []string{"schedule"}},
		{"six fields", Spec{Kind: Deny, Schedule: "0 0 0 * * *", Duration: time.Hour}, []string{"schedule"}},
		{"every", Spec{Kind: Deny, Schedule: "@every 1h", Duration: time.Hour}, []string{"schedule"}},
		{"zone in schedule", Spec{Kind: Deny, Schedule: "CRON_TZ=Europe/Berlin 0 0 * * *", Duration: time.Hour}, []string{"schedule"}},
		{"no duration", Spec{Kind: Deny, Schedule: "0 0 * * *"}, []string{"duration"}},
		{"negative duration", Spec{Kind: Allow, Schedule: "0 0 * * *", Duration: -time.Hour}, []string{"duration"}},
		{"unknown zone", Spec{Kind: Deny, Schedule: "0 0 * * *", Duration: time.Hour, TimeZone: "Europe/Atlantis"}, []string{"timeZone"}},
		{"no kind", Spec{Schedule: "0 0 * * *", Duration: time.Hour}, []string{"kind"}},
		{"all", Spec{Kind: 7, Schedule: "x", Duration: 0, TimeZone: "Mars/Olympus"}, []string{"kind", "duration", "timeZone", "schedule"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("windows[3]", tc.spec)
			if err == nil {
				t.Fatal("no error")
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is no FieldError", e)
				}
				got = append(got, fe.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Errorf("fields %v, want %v (%v)", got, tc.fields, err)
			}
		})
	}
	if _, err := ParseKind("freeze"); err == nil {
		t.Error("ParseKind(freeze): no error")
	}
	for _, k := range []Kind{Deny, Allow} {
		if got, err := ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%s) = %v, %v", k, got, err)
		}
	}
}

// TestCheck: fixed times in several zones, across midnight and the
// daylight saving time changes of Europe/Berlin and America/New_York.
func TestCheck(t *testing.T) {
	berlin := func(v string) time.Time { return at(t, "Europe/Berlin", v) }
	ny := func(v string) time.Time { return at(t, "America/New_York", v) }
	utc := func(v string) time.Time { return at(t, "UTC", v) }
	tokyo := func(v string) time.Time { return at(t, "Asia/Tokyo", v) }

	// Friday 22:00 Berlin time for 60h: the weekend freeze.
	weekend := Spec{Kind: Deny, Schedule: "0 22 * * 5", Duration: 60 * time.Hour, TimeZone: "Europe/Berlin"}
	// Every night 23:00 to 01:00 UTC: spans midnight.
	nightly := Spec{Kind: Deny, Schedule: "0 23 * * *", Duration: 2 * time.Hour}
	// Deliveries only 09:00-17:00 New York time, Monday to Friday.
	office := Spec{Kind: Allow, Schedule: "0 9 * * 1-5", Duration: 8 * time.Hour, TimeZone: "America/New_York"}
	// 02:30 Berlin daily: skipped on the night clocks go forward,
	// twice on the night they go back.
	twoThirty := Spec{Kind: Deny, Schedule: "30 2 * * *", Duration: 20 * time.Minute, TimeZone: "Europe/Berlin"}
	// Midnight Berlin for 8h: elapsed time, so 09:00 on 29 March 2026.
	midnight8h := Spec{Kind: Deny, Schedule: "0 0 * * *", Duration: 8 * time.Hour, TimeZone: "Europe/Berlin"}
	// Tokyo lunch, allowed, and a deny inside it.
	lunch := Spec{Kind: Allow, Schedule: "0 12 * * *", Duration: time.Hour, TimeZone: "Asia/Tokyo"}
	lunchDeny := Spec{Kind: Deny, Schedule: "15 12 * * *", Duration: 30 * time.Minute, TimeZone: "Asia/Tokyo"}
	// Back to back deny windows: the first ends inside the second.
	first := Spec{Kind: Deny, Schedule: "0 10 * * *", Duration: 2 * time.Hour}
	second := Spec{Kind: Deny, Schedule: "0 11 * * *", Duration: 3 * time.Hour}
	// Only for app web in prod.
	webProd := Spec{Kind: Deny, Schedule: "0 0 * * *", Duration: 12 * time.Hour, Apps: []string{"web"}, Environments: []string{"prod"}}
	never := Spec{Kind: Allow, Schedule: "0 0 30 2 *", Duration: time.Hour}
	// Denied all day every day: held, with no end found.
	always := Spec{Kind: Deny, Schedule: "0 0 * * *", Duration: 24 * time.Hour}

	for _, tc := range []struct {
		name    string
		specs   []Spec
		app     string
		env     string
		t       time.Time
		allowed bool
		by      int // index into specs of the holding window
		until   time.Time
	}{
		{"no windows", nil, "web", "", utc("2026-01-01 00:00:00"), true, 0, time.Time{}},
		{"weekend: Friday before", []Spec{weekend}, "web", "", berlin("2026-03-06 21:59:59"), true, 0, time.Time{}},
		{"weekend: Friday start", []Spec{weekend}, "web", "", berlin("2026-03-06 22:00:00"), false, 0, berlin("2026-03-09 10:00:00")},
		{"weekend: Sunday", []Spec{weekend}, "web", "", berlin("2026-03-08 12:00:00"), false, 0, berlin("2026-03-09 10:00:00")},
		{"weekend: Monday end is open", []Spec{weekend}, "web", "", berlin("2026-03-09 10:00:00"), true, 0, time.Time{}},
		{"weekend: seen from UTC", []Spec{weekend}, "web", "", utc("2026-03-06 21:30:00"), false, 0, utc("2026-03-09 09:00:00")},
		// The weekend of 27 March 2026: clocks go forward on Sunday 29th,
		// so 60h from Friday 22:00 CET ends Monday 11:00 CEST.
		{"weekend over DST start", []Spec{weekend}, "web", "", berlin("2026-03-29 12:00:00"), false, 0, berlin("2026-03-30 11:00:00")},
		{"weekend over DST end", []Spec{weekend}, "web", "", berlin("2026-10-25 12:00:00"), false, 0, berlin("2026-10-26 09:00:00")},
		{"nightly before midnight", []Spec{nightly}, "web", "", utc("2026-05-01 23:30:00"), false, 0, utc("2026-05-02 01:00:00")},
		{"nightly after midnight", []Spec{nightly}, "web", "", utc("2026-05-02 00:59:59"), false, 0, utc("2026-05-02 01:00:00")},
		{"nightly ended", []Spec{nightly}, "web", "", utc("2026-05-02 01:00:00"), true, 0, time.Time{}},
		{"office: inside", []Spec{office}, "web", "", ny("2026-03-04 16:59:00"), true, 0, time.Time{}},
		{"office: evening waits for the morning", []Spec{office}, "web", "", ny("2026-03-04 17:00:00"), false, 0, ny("2026-03-05 09:00:00")},
		{"office: Friday evening waits for Monday", []Spec{office}, "web", "", ny("2026-03-06 18:00:00"), false, 0, ny("2026-03-09 09:00:00")},
		// New York goes to EDT on 8 March 2026: 09:00 local is 13:00 UTC.
		{"office: the Monday after DST start", []Spec{office}, "web", "", utc("2026-03-09 13:30:00"), true, 0, time.Time{}},
		{"office: 13:30 UTC the Friday before is 08:30 EST", []Spec{office}, "web", "", utc("2026-03-06 13:30:00"), false, 0, utc("2026-03-06 14:00:00")},
		{"office and weekend: deny wins", []Spec{office, weekend}, "web", "", ny("2026-03-06 16:30:00"), false, 1, ny("2026-03-09 09:00:00")},
		{"skipped 02:30 at DST start", []Spec{twoThirty}, "web", "", berlin("2026-03-29 03:35:00"), true, 0, time.Time{}},
		{"02:30 the day after", []Spec{twoThirty}, "web", "", berlin("2026-03-30 02:35:00"), false, 0, berlin("2026-03-30 02:50:00")},
		{"first 02:30 at DST end", []Spec{twoThirty}, "web", "", time.Date(2026, 10, 25, 0, 40, 0, 0, time.UTC), false, 0, time.Date(2026, 10, 25, 0, 50, 0, 0, time.UTC)},
		{"second 02:30 at DST end", []Spec{twoThirty}, "web", "", time.Date(2026, 10, 25, 1, 40, 0, 0, time.UTC), false, 0, time.Date(2026, 10, 25, 1, 50, 0, 0, time.UTC)},
		{"between the two 02:30", []Spec{twoThirty}, "web", "", time.Date(2026, 10, 25, 1, 10, 0, 0, time.UTC), true, 0, time.Time{}},
		{"8h from midnight at DST start", []Spec{midnight8h}, "web", "", berlin("2026-03-29 08:30:00"), false, 0, berlin("2026-03-29 09:00:00")},
		// ... and 07:00 on 25 October 2026, when they go back.
		{"8h from midnight at DST end", []Spec{midnight8h}, "web", "", berlin("2026-10-25 06:30:00"), false, 0, berlin("2026-10-25 07:00:00")},
		{"8h from midnight at DST end, ended", []Spec{midnight8h}, "web", "", berlin("2026-10-25 07:00:00"), true, 0, time.Time{}},
		{"lunch: before", []Spec{lunch, lunchDeny}, "web", "", tokyo("2026-06-01 11:00:00"), false, 0, tokyo("2026-06-01 12:00:00")},
		{"lunch: open", []Spec{lunch, lunchDeny}, "web", "", tokyo("2026-06-01 12:10:00"), true, 0, time.Time{}},
		{"lunch: deny inside allow", []Spec{lunch, lunchDeny}, "web", "", tokyo("2026-06-01 12:20:00"), false, 1, tokyo("2026-06-01 12:45:00")},
		{"lunch: allow ended", []Spec{lunch, lunchDeny}, "web", "", tokyo("2026-06-01 13:00:00"), false, 0, tokyo("2026-06-02 12:00:00")},
		{"back to back denies", []Spec{first, second}, "web", "", utc("2026-06-01 10:30:00"), false, 0, utc("2026-06-01 14:00:00")},
		{"app and env match", []Spec{webProd}, "web", "prod", utc("2026-06-01 10:30:00"), false, 0, utc("2026-06-01 12:00:00")},
		{"other app", []Spec{webProd}, "api", "prod", utc("2026-06-01 10:30:00"), true, 0, time.Time{}},
		{"other env", []Spec{webProd}, "web", "staging", utc("2026-06-01 10:30:00"), true, 0, time.Time{}},
		{"deny that never ends", []Spec{always}, "web", "", utc("2026-06-01 10:30:00"), false, 0, time.Time{}},
		{"allow that never comes", []Spec{never}, "web", "", utc("2026-06-01 10:30:00"), false, 0, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ws []*Window
			for i, s := range tc.specs {
				ws = append(ws, mustParse(t, "w"+string(rune('0'+i)), s))
			}
			d := Check(ws, tc.app, tc.env, tc.t)
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", d.Allowed, tc.allowed, d)
			}
			if tc.allowed {
				if d.By != nil || !d.Until.IsZero() {
					t.Errorf("allowed with a window: %+v", d)
				}
				return
			}
			if d.By != ws[tc.by] {
				t.Errorf("held by %v, want %v", d.By, ws[tc.by])
			}
			if !d.Until.Equal(tc.until) {
				t.Errorf("until %v, want %v", d.Until, tc.until)
			}
			// Open at Until, and held just before it.
			if !d.Until.IsZero() {
				if !Check(ws, tc.app, tc.env, d.Until).Allowed {
					t.Errorf("still held at until %v", d.Until)
				}
				if Check(ws, tc.app, tc.env, d.Until.Add(-time.Second)).Allowed {
					t.Errorf("open a second before until %v", d.Until)
				}
			}
		})
	}
}

// TestNextChange: the wake-up time of a held app is the end of the active
// window or the next start, whichever comes first.
func TestNextChange(t *testing.T) {
	nightly := mustParse(t, "n", Spec{Kind: Deny, Schedule: "0 23 * * *", Duration: 2 * time.Hour})
	hourly := mustParse(t, "h", Spec{Kind: Deny, Schedule: "30 * * * *", Duration: 10 * time.Minute, Apps: []string{"api"}})
	now := time.Date(2026, 5, 1, 23, 40, 0, 0, time.UTC)
	if got, want := NextChange([]*Window{nightly, hourly}, "web", "", now), time.Date(2026, 5, 2, 1, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("web: %v, want %v", got, want)
	}
	if got, want := NextChange([]*Window{nightly, hourly}, "api", "", now), time.Date(2026, 5, 2, 0, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("api: %v, want %v", got, want)
	}
	if got := NextChange([]*Window{nightly}, "web", "", now); !got.After(now) {
		t.Errorf("not after now: %v", got)
	}
}
