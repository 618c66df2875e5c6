// Package plan formats what `deliver diff` found as one Markdown body for
// a pull request comment: a summary table per environment and app, then
// every changed object's diff in a collapsible block, bounded in size for
// GitHub's limit on comments. It shows only what the plans' own diffs show
// (apply.Plan.Diffs: Secret values masked, text redacted), and redacts
// every piece again with the run's redactor.
package plan

import (
	"fmt"
	"html"
	"strings"
	"unicode/utf8"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// Marker opens every body, so that CI finds the comment it posted before
// and updates it instead of adding another (examples/app/ci/post-plan.sh).
const Marker = "<!-- deliver-plan -->"

// DefaultMaxBytes bounds a body by default: GitHub refuses comments over
// 65,536 characters, and a character is at least one byte, so a body of
// at most 65,000 bytes is accepted, with room for what CI adds.
const DefaultMaxBytes = 65000

// Options configure Markdown.
type Options struct {
	// MaxBytes bounds the body's size in bytes. Object diffs are left out
	// from the end, with a note above the diffs saying how many, until the
	// body fits; when the tables alone do not fit, the rows of apps that
	// change nothing are counted instead of listed, then only the first
	// other rows that fit are listed, with a note at the top saying how
	// many were left out. Each error is cut at 4 KiB. A body can only
	// exceed MaxBytes when the marker, totals, headings, notes and the
	// run's error alone do. Default DefaultMaxBytes.
	MaxBytes int
	// Redact masks secret values in text; every piece of the body goes
	// through it before it is measured. Default: nothing more than the
	// plans' own masking and redaction.
	Redact func(string) string
	// Err is the error that stopped the run before it had a result for
	// every environment (deliver.yaml, secrets, render, cluster), as
	// pipeline.DiffEnvironments returns it: the body says the plan is
	// incomplete and shows it, so that a comment from an earlier run is
	// not left standing as if it were current. Default: none.
	Err error
}

// Markdown returns the comment body for one diff run: results are the
// run's environments, in the order given (one each). Apps keep their
// deliver.yaml order and objects their plan's order, so the same run
// gives the same body.
func Markdown(results []*pipeline.Result, opts Options) (string, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	var sections []section
	var blocks []string // one per object diff, in order
	var totals counts
	for _, res := range results {
		sec := section{heading: opts.Redact(envHeading(res))}
		for _, a := range res.Apps {
			r, diffs, err := appRow(a)
			if err != nil {
				return "", fmt.Errorf("environment %s: app %s: %w", envName(res), a.Name, err)
			}
			totals.add(r.counts)
			tr := tableRow{line: opts.Redact(r.String()), quiet: r.quiet(a, len(diffs))}
			var notes strings.Builder
			switch {
			case a.Error != "": // a skipped app's error says why
				fmt.Fprintf(&notes, "\n**%s** %s:\n\n%s", code(a.Name), r.result, fenced("text", cut(opts.Redact(a.Error))))
			case a.Skipped != "": // suspended, or a dependency is: no error
				fmt.Fprintf(&notes, "\n**%s** skipped: %s; apply skips it too.\n", code(a.Name), opts.Redact(a.Skipped))
			}
			if a.Held != "" { // which change window, until when (docs/windows.md)
				fmt.Fprintf(&notes, "\n**%s** held by a change window: apply refuses it.\n\n%s", code(a.Name), fenced("text", cut(opts.Redact(a.Held))))
			}
			tr.notes = opts.Redact(notes.String())
			sec.rows = append(sec.rows, tr)
			for i, d := range diffs {
				var b strings.Builder
				if i == 0 {
					fmt.Fprintf(&b, "\n#### %s / %s\n", code(envName(res)), code(a.Name))
				}
				summary := fmt.Sprintf("<code>%s</code> %s", html.EscapeString(d.ID.String()), d.Type)
				if d.Note != "" {
					summary += ": " + html.EscapeString(d.Note)
				}
				fmt.Fprintf(&b, "\n<details><summary>%s</summary>\n\n%s\n</details>\n", summary, fenced("diff", d.Text))
				blocks = append(blocks, opts.Redact(b.String()))
			}
		}
		sections = append(sections, sec)
	}
	top := fmt.Sprintf("%s\n**deliver diff** (%d %s): %s\n", Marker, len(results), plural(len(results), "environment"), totals.summary())
	tail := ""
	if opts.Err != nil {
		tail = fmt.Sprintf("\n### deliver diff failed: the plan is incomplete\n\n%s", fenced("text", cut(opts.Redact(opts.Err.Error()))))
	}
	t := tables{top: top, sections: sections, tail: tail, max: opts.MaxBytes}
	// The diffs' note must fit next to the tables when no diff does.
	reserve := 0
	if len(blocks) > 0 {
		reserve = len(leftOutNote(len(blocks), len(blocks), opts.MaxBytes))
	}
	fits := func(head string) bool { return len(head)+reserve <= opts.MaxBytes }
	// The tables whole, if they fit; else without the apps that change
	// nothing; else only as many of the other rows as fit, in order.
	head := t.render(false, -1)
	if !fits(head) {
		head = t.render(true, -1)
	}
	if !fits(head) {
		lo, hi := 0, t.loud() // the largest number of rows that fits, in [lo, hi]
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if fits(t.render(true, mid)) {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		head = t.render(true, lo)
	}
	return fit(head, blocks, opts.MaxBytes), nil
}

// maxErrBytes bounds each error shown in the body (after redaction, so
// that no cut leaves part of a secret value unrecognised), so that a
// long error cannot take the room of every table row.
const maxErrBytes = 4096

// cut shortens text to about maxErrBytes, at a line or rune boundary,
// saying so.
func cut(text string) string {
	if len(text) <= maxErrBytes {
		return text
	}
	end := maxErrBytes
	for end > 0 && !utf8.RuneStart(text[end]) {
		end--
	}
	if nl := strings.LastIndexByte(text[:end], '\n'); nl > maxErrBytes/2 {
		end = nl
	}
	return fmt.Sprintf("%s\n[%d more bytes cut: deliver diff prints the whole error]", text[:end], len(text)-end)
}

// tables are the body's part above the diffs: the marker and totals,
// each environment's table with its errors, and the run's error.
type tables struct {
	top      string
	sections []section
	tail     string
	max      int
}

// section is one environment's heading and table rows.
type section struct {
	heading string
	rows    []tableRow
}

// tableRow is one app's row in a table, and the notes on the app (its
// error, its change window) below that table.
type tableRow struct {
	line, notes string
	// quiet is set for an app that changes nothing: no diff, no hook, no
	// conflict, no error, not held.
	quiet bool
}

// loud counts the rows that are not quiet.
func (t tables) loud() int {
	n := 0
	for _, s := range t.sections {
		for _, r := range s.rows {
			if !r.quiet {
				n++
			}
		}
	}
	return n
}

// render writes the part above the diffs. With collapse, the quiet rows
// are counted on a line instead of listed; keep bounds the other rows
// listed, in order over all environments (negative: all); a note at the
// top says what is not listed and how to see it.
func (t tables) render(collapse bool, keep int) string {
	var b strings.Builder
	quiet, loud, left := 0, 0, 0
	for _, s := range t.sections {
		b.WriteString(s.heading)
		var lines, notes strings.Builder
		sq, sl := 0, 0
		for _, r := range s.rows {
			switch {
			case collapse && r.quiet:
				sq++
				continue
			case keep >= 0 && loud >= keep:
				sl++
				continue
			}
			if !r.quiet {
				loud++
			}
			lines.WriteString(r.line)
			notes.WriteString(r.notes)
		}
		// A table without rows is left out, as is every row of it.
		if lines.Len() > 0 || len(s.rows) == 0 {
			b.WriteString("| App | Namespace | Create | Change | Delete | Unchanged | Hooks that run | Recreate | Conflicts | Result |\n")
			b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |\n")
			b.WriteString(lines.String())
		}
		if sq > 0 {
			fmt.Fprintf(&b, "\n%d %s with no changes not listed.\n", sq, plural(sq, "app"))
		}
		if sl > 0 {
			fmt.Fprintf(&b, "\n%d more %s with changes, failures or holds left out: see the note above.\n", sl, plural(sl, "app"))
		}
		b.WriteString(notes.String())
		quiet, left = quiet+sq, left+sl
	}
	var what []string
	if quiet > 0 {
		what = append(what, fmt.Sprintf("%d %s with no changes %s not listed", quiet, plural(quiet, "app"), isAre(quiet)))
	}
	if left > 0 {
		what = append(what, fmt.Sprintf("%d of the %d apps with changes, failures or holds %s left out (the first ones are listed)", left, loud+left, isAre(left)))
	}
	note := ""
	if len(what) > 0 {
		note = fmt.Sprintf("\n> [!NOTE]\n> To keep this comment under %d bytes (GitHub refuses comments over 65,536 characters), %s. The line above counts every object of every app; `deliver diff` run locally lists every app and every diff.\n", t.max, strings.Join(what, ", and "))
	}
	return t.top + note + b.String() + t.tail
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// fit joins head and the longest run of blocks from the start for which
// the body, with the note on what was left out, stays within max bytes.
func fit(head string, blocks []string, max int) string {
	size := len(head)
	for _, b := range blocks {
		size += len(b)
	}
	diffsHeading := ""
	if len(blocks) > 0 {
		diffsHeading = "\n### Diffs\n"
		size += len(diffsHeading)
	}
	if size <= max {
		return head + diffsHeading + strings.Join(blocks, "")
	}
	kept, used := 0, len(head)+len(diffsHeading)
	for kept < len(blocks) && used+len(blocks[kept])+len(leftOutNote(len(blocks)-kept-1, len(blocks), max)) <= max {
		used += len(blocks[kept])
		kept++
	}
	if kept == 0 {
		diffsHeading = ""
	}
	return head + leftOutNote(len(blocks)-kept, len(blocks), max) + diffsHeading + strings.Join(blocks[:kept], "")
}

// leftOutNote says how many object diffs the body leaves out; it stands
// above the diffs, where a reader sees it before the first of them.
func leftOutNote(n, of, max int) string {
	return fmt.Sprintf("\n> [!NOTE]\n> %d of %d object diffs are left out to keep this comment under %d bytes (GitHub refuses comments over 65,536 characters). The tables above count every object; `deliver diff` prints every diff.\n", n, of, max)
}

// counts are an app's planned changes, as the table shows them.
type counts struct {
	create, change, delete, unchanged, hooks, recreate, conflicts int
}

func (c *counts) add(o counts) {
	c.create += o.create
	c.change += o.change
	c.delete += o.delete
	c.unchanged += o.unchanged
	c.hooks += o.hooks
	c.recreate += o.recreate
	c.conflicts += o.conflicts
}

func (c counts) summary() string {
	return fmt.Sprintf("%d to create, %d to change, %d to delete, %d unchanged; hooks to run: %d, recreates: %d, conflicts: %d",
		c.create, c.change, c.delete, c.unchanged, c.hooks, c.recreate, c.conflicts)
}

// quiet reports whether the app changes nothing, so that its row may be
// counted instead of listed when the tables are too large.
func (r row) quiet(a *pipeline.AppResult, diffs int) bool {
	return r.planned && diffs == 0 && r.hooks == nil && r.conflicts == 0 && r.recreate == 0 &&
		a.Error == "" && a.Held == "" && a.Skipped == ""
}

// row is one app's line of the table.
type row struct {
	counts
	name, namespace string
	planned         bool
	hooks           []string
	result          string
}

func (r row) String() string {
	num := func(n int) string {
		if !r.planned {
			return "–"
		}
		return fmt.Sprint(n)
	}
	hooks := "–"
	if len(r.hooks) > 0 {
		hooks = strings.Join(r.hooks, "<br>")
	}
	ns := "–" // an app that left deliver.yaml has none
	if r.namespace != "" {
		ns = code(r.namespace)
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		code(r.name), ns, num(r.create), num(r.change), num(r.delete), num(r.unchanged),
		hooks, num(r.recreate), num(r.conflicts), r.result)
}

// appRow counts what the app's plan does and returns its object diffs.
func appRow(a *pipeline.AppResult) (row, []apply.ObjectDiff, error) {
	r := row{name: a.Name, namespace: a.Namespace}
	p := a.Plan
	switch {
	case a.Suspended:
		r.result = "suspended"
	case a.Skipped != "":
		r.result = "skipped"
	case a.Error != "":
		r.result = "failed"
	case a.Unchanged:
		r.result = "unchanged (not rendered)"
	case a.Removed:
		r.result = "left deliver.yaml: apply removes it"
	case p != nil && (p.HasChanges() || runsHooks(p)):
		r.result = "changes"
	default:
		r.result = "no changes"
	}
	if a.Held != "" {
		r.result += ", held"
	}
	if p == nil {
		return r, nil, nil
	}
	if p.CreateNamespace != "" {
		r.result += fmt.Sprintf(", creates namespace `%s`", p.CreateNamespace)
	}
	if n := len(p.Orphaned); n > 0 {
		r.result += fmt.Sprintf(", %d left in the cluster (deletionPolicy Orphan)", n)
	}
	if n := len(p.WaitFor); n > 0 {
		r.result += fmt.Sprintf(", waitFor: %d", n)
	}
	diffs, err := p.Diffs()
	if err != nil {
		return r, nil, err
	}
	r.planned = true
	r.create = p.Count(apply.ChangeCreate)
	r.change = p.Count(apply.ChangeUpdate)
	r.delete = p.Count(apply.ChangeDelete)
	r.unchanged = p.Count(apply.ChangeUnchanged)
	r.conflicts = len(p.Conflicts)
	if p.IdentityConflict != nil {
		r.conflicts++
	}
	// A recreate: the old version stops before the new one starts, either
	// deleted and re-created (an immutable field changed) or scaled to
	// zero by the recreate strategy. Each object counts once.
	stopped := map[object.ID]bool{}
	for _, d := range diffs {
		if d.Recreate {
			stopped[d.ID] = true
		}
	}
	for _, id := range p.ScaleDown {
		stopped[id] = true
	}
	r.recreate = len(stopped)
	for _, h := range p.Hooks {
		if h.Run {
			r.hooks = append(r.hooks, code(h.ID.String()))
		}
	}
	r.counts.hooks = len(r.hooks)
	return r, diffs, nil
}

func runsHooks(p *apply.Plan) bool {
	for _, h := range p.Hooks {
		if h.Run {
			return true
		}
	}
	return false
}

// envHeading opens an environment's section.
func envHeading(res *pipeline.Result) string {
	rev := res.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	dirty := ""
	if res.Dirty {
		dirty = " (dirty: uncommitted changes)"
	}
	return fmt.Sprintf("\n### deliver diff: %s at %s%s\n\n", code(envName(res)), code(rev), dirty)
}

func envName(res *pipeline.Result) string {
	if res.Environment == "" {
		return "(no environment)"
	}
	return res.Environment
}

// code is s as a Markdown code span, in a table cell: its backticks do
// not end the span and its pipes do not end the cell.
func code(s string) string {
	ticks := strings.Repeat("`", longestRun(s, '`')+1)
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return ticks + pad + strings.ReplaceAll(s, "|", `\|`) + pad + ticks
}

// fenced is text in a fenced code block whose fence is longer than any
// run of backticks in it, so no line of the text closes the block.
func fenced(lang, text string) string {
	fence := strings.Repeat("`", max(3, longestRun(text, '`')+1))
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return fence + lang + "\n" + text + fence + "\n"
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}
