package ui

import (
	"html/template"
	"time"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"apppath": AppPath,
	"short": func(rev string) string {
		if len(rev) > 12 {
			return rev[:12]
		}
		if rev == "" {
			return "-"
		}
		return rev
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return d.Round(time.Millisecond).String()
	},
}
