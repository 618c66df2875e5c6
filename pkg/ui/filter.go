package ui

import (
	"net/url"
	"strings"
)

// Filter selects apps on the page of all apps. The zero value selects
// every app. It is read from the page's query parameters, so a filtered
// view is a link one can share.
type Filter struct {
	// Env keeps the apps of this environment.
	Env string
	// Query keeps the apps whose name contains it (case-insensitive).
	Query string
	// Result keeps the apps whose result it is (succeeded, failed,
	// running, waiting, pending).
	Result string
	// Health keeps the apps of this health (Health.String).
	Health string
	// Drifted, Pinned, Held and Suspended keep only the apps that are.
	Drifted, Pinned, Held, Suspended bool
}

// ParseFilter reads a Filter from query parameters: env, q, result,
// health, and drifted, pinned, held, suspended set to "1", "true" or
// "yes".
func ParseFilter(q url.Values) Filter {
	on := func(k string) bool {
		switch strings.ToLower(q.Get(k)) {
		case "1", "true", "yes", "on":
			return true
		}
		return false
	}
	return Filter{
		Env: q.Get("env"), Query: strings.TrimSpace(q.Get("q")), Result: q.Get("result"), Health: q.Get("health"),
		Drifted: on("drifted"), Pinned: on("pinned"), Held: on("held"), Suspended: on("suspended"),
	}
}

// Empty reports whether f selects every app.
func (f Filter) Empty() bool { return f == Filter{} }

// Match reports whether f selects r.
func (f Filter) Match(r AppRow) bool {
	switch {
	case f.Env != "" && r.Environment != f.Env:
		return false
	case f.Query != "" && !strings.Contains(strings.ToLower(r.Name), strings.ToLower(f.Query)):
		return false
	case f.Result != "" && r.Result != f.Result:
		return false
	case f.Health != "" && r.Health.String() != f.Health:
		return false
	case f.Drifted && len(r.Drift) == 0:
		return false
	case f.Pinned && r.Pin == nil:
		return false
	case f.Held && r.Held == "":
		return false
	case f.Suspended && !r.Suspended:
		return false
	}
	return true
}

// Apply returns the rows f selects, in their order.
func (f Filter) Apply(rows []AppRow) []AppRow {
	if f.Empty() {
		return rows
	}
	var out []AppRow
	for _, r := range rows {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return out
}
