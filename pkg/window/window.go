// Package window decides whether a change window lets an app be delivered
// at a given time: deny and allow windows as a cron schedule, a duration
// and a time zone, in the shape and with the meaning of Argo CD's sync
// windows.
//
// A window is active from each activation of its schedule for its
// duration: at t when an activation s has s <= t < s+duration.
// Activations are instants: the schedule's fields are matched against the
// wall clock of the window's time zone, so a wall-clock time skipped when
// daylight saving time starts never activates, and one that happens twice
// when it ends activates twice. The duration is elapsed time, not wall
// clock: a window of 8h from 00:00 on the night the clocks go forward
// ends at 09:00 local time.
//
// An app may be delivered at t unless a deny window that applies to it is
// active, and, when any allow window applies to it, only while one of
// those is active. Deny wins over allow.
package window

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	// The time zones are compiled into the binary: the container image
	// deliver runs in may have no /usr/share/zoneinfo, and a window in
	// Europe/Berlin must not fail there.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Kind says what an active window does.
type Kind int

// The kinds of windows.
const (
	// Deny holds deliveries while the window is active.
	Deny Kind = iota + 1
	// Allow lets deliveries happen only while the window (or another
	// allow window of the app) is active.
	Allow
)

// String returns the kind as deliver.yaml writes it.
func (k Kind) String() string {
	switch k {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind reads "deny" or "allow".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "deny":
		return Deny, nil
	case "allow":
		return Allow, nil
	}
	return 0, fmt.Errorf("unknown kind %q (want deny or allow)", s)
}

// Spec is a window as deliver.yaml writes it.
type Spec struct {
	// Kind is Deny or Allow.
	Kind Kind
	// Schedule is a standard five-field cron expression (minute hour
	// day-of-month month day-of-week) or a descriptor such as @daily;
	// @every is refused: it has no anchor in time.
	Schedule string
	// Duration is how long the window stays active after each
	// activation. Must be positive.
	Duration time.Duration
	// TimeZone is an IANA time zone name. Default UTC.
	TimeZone string
	// Apps and Environments narrow the window; empty: all.
	Apps, Environments []string
}

// Window is a parsed Spec.
type Window struct {
	// Name identifies the window in messages, as windows[i] of
	// deliver.yaml.
	Name string
	Spec
	loc   *time.Location
	sched *cron.SpecSchedule
}

// parser reads the schedules: five fields, as Argo CD's sync windows and
// crontab, and the descriptors (@daily, @weekly, ...).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// FieldError is a Parse error about one field of a Spec.
type FieldError struct {
	// Field is the field as deliver.yaml names it: schedule, duration,
	// timeZone or kind.
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// Parse checks s and returns the window named name. Errors are
// *FieldError, joined.
func Parse(name string, s Spec) (*Window, error) {
	var errs []error
	if s.Kind != Deny && s.Kind != Allow {
		errs = append(errs, &FieldError{"kind", fmt.Errorf("unknown kind %v (want deny or allow)", s.Kind)})
	}
	if s.Duration <= 0 {
		errs = append(errs, &FieldError{"duration", fmt.Errorf("%v: must be positive", s.Duration)})
	}
	loc := time.UTC
	if s.TimeZone != "" {
		var err error
		if loc, err = time.LoadLocation(s.TimeZone); err != nil {
			errs = append(errs, &FieldError{"timeZone", fmt.Errorf("unknown time zone %q", s.TimeZone)})
			loc = time.UTC
		}
	}
	var spec *cron.SpecSchedule
	switch {
	case strings.HasPrefix(s.Schedule, "TZ=") || strings.HasPrefix(s.Schedule, "CRON_TZ="):
		// One place for the zone: timeZone.
		errs = append(errs, &FieldError{"schedule", fmt.Errorf("%q: set the time zone with timeZone, not in the schedule", s.Schedule)})
	default:
		sched, err := parser.Parse(s.Schedule)
		if err != nil {
			errs = append(errs, &FieldError{"schedule", fmt.Errorf("%q: %w", s.Schedule, err)})
			break
		}
		ss, ok := sched.(*cron.SpecSchedule)
		if !ok {
			errs = append(errs, &FieldError{"schedule", fmt.Errorf("%q: @every has no fixed start; write a cron expression", s.Schedule)})
			break
		}
		c := *ss
		c.Location = loc
		spec = &c
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Window{Name: name, Spec: s, loc: loc, sched: spec}, nil
}

// String describes the window for status and errors, e.g.
// `windows[0] (deny "0 22 * * 5" for 60h0m0s, Europe/Berlin)`.
func (w *Window) String() string {
	return fmt.Sprintf("%s (%s %q for %v, %s)", w.Name, w.Kind, w.Schedule, w.Duration, w.loc)
}

// Applies reports whether the window concerns app in environment env.
func (w *Window) Applies(app, env string) bool {
	return (len(w.Apps) == 0 || slices.Contains(w.Apps, app)) &&
		(len(w.Environments) == 0 || slices.Contains(w.Environments, env))
}

// Active reports whether the window is active at t, and if so the end of
// the activation that makes it so (the latest one, if several overlap).
func (w *Window) Active(t time.Time) (end time.Time, active bool) {
	// The first activation after t-duration; active if it is not after t.
	s := w.sched.Next(t.Add(-w.Duration))
	if s.IsZero() || s.After(t) {
		return time.Time{}, false
	}
	// Later activations up to t end later.
	for {
		n := w.sched.Next(s)
		if n.IsZero() || n.After(t) {
			return s.Add(w.Duration), true
		}
		s = n
	}
}

// NextStart returns the first activation after t; zero if there is none
// in the next five years (as 30 February).
func (w *Window) NextStart(t time.Time) time.Time { return w.sched.Next(t) }

// Decision is whether an app may be delivered at a time.
type Decision struct {
	// Allowed is true when no window holds the app.
	Allowed bool
	// By is the window that holds the app: an active deny window, or,
	// when no allow window is active, the allow window that opens first.
	By *Window
	// Until is the first time from then on when the app may be
	// delivered; zero when none was found within Horizon.
	Until time.Time
}

// Horizon bounds the search for the next open time: windows that keep an
// app held for longer than a year are reported without an end.
const Horizon = 366 * 24 * time.Hour

// Check decides whether the windows let app be delivered in environment
// env at t.
func Check(ws []*Window, app, env string, t time.Time) Decision {
	var mine []*Window
	for _, w := range ws {
		if w.Applies(app, env) {
			mine = append(mine, w)
		}
	}
	by, _ := holds(mine, t)
	if by == nil {
		return Decision{Allowed: true}
	}
	return Decision{By: by, Until: nextOpen(mine, t)}
}

// holds returns the window that holds a delivery at t, nil if none, and
// the time until which that window alone holds it (the end of the latest
// active deny window, or the next activation of the allow windows).
func holds(ws []*Window, t time.Time) (*Window, time.Time) {
	var deny *Window
	var denyEnd time.Time
	hasAllow, allowed := false, false
	var allowBy *Window
	var allowNext time.Time
	for _, w := range ws {
		end, active := w.Active(t)
		switch w.Kind {
		case Deny:
			if active && end.After(denyEnd) {
				deny, denyEnd = w, end
			}
		case Allow:
			hasAllow = true
			if active {
				allowed = true
				continue
			}
			if n := w.NextStart(t); !n.IsZero() && (allowNext.IsZero() || n.Before(allowNext)) {
				allowBy, allowNext = w, n
			}
		}
	}
	switch {
	case deny != nil:
		return deny, denyEnd
	case !hasAllow || allowed:
		return nil, time.Time{}
	case allowBy == nil:
		// No allow window ever activates again: held for good. The first
		// one names the hold.
		for _, w := range ws {
			if w.Kind == Allow {
				return w, time.Time{}
			}
		}
	}
	return allowBy, allowNext
}

// nextOpen returns the first time from t on when no window holds a
// delivery: it jumps from one window's end or start to the next, as a
// deny window's end may fall in another deny window, or outside every
// allow window.
func nextOpen(ws []*Window, t time.Time) time.Time {
	limit := t.Add(Horizon)
	// The steps are bounded too: a window active every minute for an
	// hour is always active, and would take a step per hour to Horizon.
	const maxSteps = 1000
	for u, i := t, 0; !u.After(limit) && i < maxSteps; i++ {
		by, until := holds(ws, u)
		if by == nil {
			return u
		}
		if until.IsZero() || !until.After(u) {
			return time.Time{}
		}
		u = until
	}
	return time.Time{}
}

// NextChange returns the first time after t at which a window of app in
// env starts or ends, when a held delivery may be let through; zero if
// none of its windows activates again.
func NextChange(ws []*Window, app, env string, t time.Time) time.Time {
	var next time.Time
	earlier := func(u time.Time) {
		if !u.IsZero() && u.After(t) && (next.IsZero() || u.Before(next)) {
			next = u
		}
	}
	for _, w := range ws {
		if !w.Applies(app, env) {
			continue
		}
		if end, active := w.Active(t); active {
			earlier(end)
		}
		earlier(w.NextStart(t))
	}
	return next
}
