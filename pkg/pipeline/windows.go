package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/window"
)

// ErrHeld is wrapped by the error of an Apply that change windows hold
// (docs/windows.md).
var ErrHeld = errors.New("held by a change window")

// HoldMessage describes a window's decision about an app, as status and
// diff show it: which window holds it and until when.
func HoldMessage(d window.Decision) string {
	if d.Allowed {
		return ""
	}
	until := "no opening within a year"
	if !d.Until.IsZero() {
		until = "until " + d.Until.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("held by %s %s", d.By, until)
}

// checkWindows notes on each app the window that holds it at opts.Now,
// and, for an Apply without IgnoreWindows, refuses the whole run when any
// app is held: nothing is written.
func checkWindows(opts *Options, cfg *config.Resolved, apps []*AppResult, m mode) error {
	if len(cfg.Windows) == 0 || m == modeRender {
		return nil
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	var held []string
	for _, ar := range apps {
		// deliver.yaml's own text, redacted all the same as every output.
		ar.Held = opts.Redactor.Redact(HoldMessage(window.Check(cfg.Windows, ar.Name, cfg.Environment, now)))
		if ar.Held != "" {
			held = append(held, fmt.Sprintf("app %s: %s", ar.Name, ar.Held))
		}
	}
	if len(held) == 0 || m != modeApply || opts.IgnoreWindows {
		return nil
	}
	return fmt.Errorf("%w: nothing applied (--ignore-windows applies anyway):\n  %s", ErrHeld, strings.Join(held, "\n  "))
}
