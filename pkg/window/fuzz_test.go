package window

import (
	"fmt"
	"testing"
	"time"
)

// zones the fuzz test picks from: with and without daylight saving time,
// north and south, and an offset of minutes.
var fuzzZones = []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham"}

// field writes one cron field from a byte: *, a value, a range, a step or
// a list, within [lo, hi].
func field(b uint8, lo, hi int) string {
	n := hi - lo + 1
	v := lo + int(b/5)%n
	switch b % 5 {
	case 0:
		return "*"
	case 1:
		return fmt.Sprint(v)
	case 2:
		return fmt.Sprintf("%d-%d", v, min(hi, v+int(b/7)%n))
	case 3:
		return fmt.Sprintf("*/%d", 1+int(b/5)%n)
	}
	return fmt.Sprintf("%d,%d", v, lo+int(b/11)%n)
}

// matches is the brute-force oracle: whether the wall clock of instant m
// in the window's zone matches the schedule's fields, read from the
// parsed bit sets, with cron's rule for day of month and day of week
// (both must match when either is *, else either).
func matches(w *Window, m time.Time) bool {
	s := w.sched
	l := m.In(w.loc)
	const star = 1 << 63
	bit := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	if !bit(s.Second, l.Second()) || !bit(s.Minute, l.Minute()) || !bit(s.Hour, l.Hour()) || !bit(s.Month, int(l.Month())) {
		return false
	}
	dom, dow := bit(s.Dom, l.Day()), bit(s.Dow, int(l.Weekday()))
	if s.Dom&star != 0 || s.Dow&star != 0 {
		return dom && dow
	}
	return dom || dow
}

// FuzzActive: Active(t) agrees with a check of every minute in
// (t-duration, t] for an activation, for random schedules, durations,
// zones and times (from 2000 to 2040, DST changes included); and Check's
// Until is open, with the second before it held.
func FuzzActive(f *testing.F) {
	f.Add(uint8(1), uint8(6), uint8(0), uint8(0), uint8(0), uint8(1), uint16(90), int64(1774746000)) // 02:30 Berlin, DST start 2026
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(4), uint8(2), uint16(600), int64(1793505600))
	f.Add(uint8(3), uint8(3), uint8(2), uint8(1), uint8(2), uint8(3), uint16(2000), int64(1700000000))
	f.Add(uint8(2), uint8(9), uint8(1), uint8(4), uint8(3), uint8(5), uint16(45), int64(1761436800)) // DST end 2025
	f.Fuzz(func(t *testing.T, mi, ho, dm, mo, dw, zone uint8, durMin uint16, unix int64) {
		spec := fmt.Sprintf("%s %s %s %s %s", field(mi, 0, 59), field(ho, 0, 23), field(dm, 1, 31), field(mo, 1, 12), field(dw, 0, 6))
		d := time.Duration(1+int(durMin)%(3*24*60)) * time.Minute
		w, err := Parse("f", Spec{Kind: Deny, Schedule: spec, Duration: d, TimeZone: fuzzZones[int(zone)%len(fuzzZones)]})
		if err != nil {
			t.Skip(err) // a generated range may be inverted: not a case
		}
		const from, span = 946684800, 40 * 365 * 24 * 3600
		now := time.Unix(from+((unix%span)+span)%span, 0).UTC()

		want := false
		var last time.Time
		for m := now.Truncate(time.Minute); m.After(now.Add(-d)); m = m.Add(-time.Minute) {
			if matches(w, m) {
				want, last = true, m
				break
			}
		}
		end, got := w.Active(now)
		if got != want {
			t.Fatalf("%s for %v in %s at %v (%v): active = %v, brute force %v (activation %v)", spec, d, w.loc, now, now.In(w.loc), got, want, last.In(w.loc))
		}
		if got && !end.Equal(last.Add(d)) {
			t.Fatalf("%s for %v in %s at %v: end %v, want %v", spec, d, w.loc, now, end, last.Add(d))
		}
		dec := Check([]*Window{w}, "a", "", now)
		if dec.Allowed == got {
			t.Fatalf("Check allowed = %v, active = %v", dec.Allowed, got)
		}
		if !dec.Allowed && !dec.Until.IsZero() {
			if _, held := w.Active(dec.Until); held {
				t.Fatalf("%s: active at until %v", spec, dec.Until)
			}
			if _, held := w.Active(dec.Until.Add(-time.Second)); !held {
				t.Fatalf("%s: open before until %v", spec, dec.Until)
			}
		}
	})
}

// TestActiveAroundDST compares Active with the brute force minute by
// minute over the days the clocks change in three zones, for schedules
// in and around the skipped and the repeated hour.
func TestActiveAroundDST(t *testing.T) {
	days := map[string][]time.Time{
		"Europe/Berlin":    {time.Date(2026, 3, 28, 20, 0, 0, 0, time.UTC), time.Date(2026, 10, 24, 20, 0, 0, 0, time.UTC)},
		"America/New_York": {time.Date(2026, 3, 8, 2, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)},
		"Australia/Sydney": {time.Date(2026, 4, 4, 10, 0, 0, 0, time.UTC), time.Date(2026, 10, 3, 10, 0, 0, 0, time.UTC)},
	}
	schedules := []string{"30 2 * * *", "0 * * * *", "*/15 1-3 * * *", "0 0 * * *", "59 1 * * *", "0 3 * * 0"}
	durations := []time.Duration{time.Minute, 20 * time.Minute, 90 * time.Minute, 8 * time.Hour}
	for zone, starts := range days {
		for _, sched := range schedules {
			for _, d := range durations {
				w := mustParse(t, "w", Spec{Kind: Deny, Schedule: sched, Duration: d, TimeZone: zone})
				for _, from := range starts {
					for m := from; m.Before(from.Add(12 * time.Hour)); m = m.Add(time.Minute) {
						want := false
						var last time.Time
						for u := m; u.After(m.Add(-d)); u = u.Add(-time.Minute) {
							if matches(w, u) {
								want, last = true, u
								break
							}
						}
						end, got := w.Active(m)
						if got != want || (got && !end.Equal(last.Add(d))) {
							t.Fatalf("%s for %v in %s at %v (%v): active %v until %v, brute force %v until %v", sched, d, zone, m, m.In(w.loc), got, end, want, last.Add(d))
						}
					}
				}
			}
		}
	}
}
