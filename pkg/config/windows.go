package config

import (
	"errors"
	"fmt"
	"slices"

	"github.com/deliverhq/deliver/pkg/window"
)

// Window is a change window (docs/windows.md), in the shape of Argo CD's
// sync windows: from each activation of Schedule, for Duration, a deny
// window holds the deliveries of its apps; when allow windows concern an
// app, it is delivered only while one of them is active. Deny wins.
type Window struct {
	// Kind is deny or allow.
	Kind string `yaml:"kind" json:"kind" jsonschema:"enum=deny,enum=allow"`
	// Schedule is a five-field cron expression (minute hour day-of-month
	// month day-of-week) or a descriptor such as @daily, read in TimeZone.
	Schedule string `yaml:"schedule" json:"schedule"`
	// Duration is how long the window stays active after each activation
	// (elapsed time, also across a daylight saving time change).
	Duration Duration `yaml:"duration" json:"duration"`
	// TimeZone is an IANA time zone such as Europe/Berlin. Default UTC.
	TimeZone string `yaml:"timeZone,omitempty" json:"timeZone,omitempty"`
	// Apps and Environments narrow the window to these apps and
	// environments; empty: all.
	Apps         []string `yaml:"apps,omitempty" json:"apps,omitempty"`
	Environments []string `yaml:"environments,omitempty" json:"environments,omitempty"`
}

// compileWindows parses the windows. Errors name the window's index and
// the field.
func (c *Config) compileWindows() ([]*window.Window, error) {
	var out []*window.Window
	var errs []error
	for i, w := range c.Windows {
		where := fmt.Sprintf("windows[%d]", i)
		kind, kerr := window.ParseKind(w.Kind)
		if kerr != nil {
			errs = append(errs, fmt.Errorf("%s: kind: %w", where, kerr))
			kind = window.Deny // to check the other fields too
		}
		for _, a := range w.Apps {
			if !slices.ContainsFunc(c.Apps, func(x App) bool { return x.Name == a }) {
				errs = append(errs, fmt.Errorf("%s: apps: unknown app %q", where, a))
			}
		}
		for _, e := range w.Environments {
			if _, ok := c.Environments[e]; !ok {
				errs = append(errs, fmt.Errorf("%s: environments: unknown environment %q", where, e))
			}
		}
		pw, err := window.Parse(where, window.Spec{
			Kind: kind, Schedule: w.Schedule, Duration: w.Duration.Duration, TimeZone: w.TimeZone,
			Apps: w.Apps, Environments: w.Environments,
		})
		if err != nil {
			// Parse joins one error per field: each names the window.
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				errs = append(errs, fmt.Errorf("%s: %w", where, e))
			}
			continue
		}
		out = append(out, pw)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
