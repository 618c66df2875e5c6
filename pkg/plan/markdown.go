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
	// body fits; the marker, the summary tables and the errors are always
	// kept, so a body can only exceed MaxBytes when they alone do.
	// Default DefaultMaxBytes.
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
	var tables strings.Builder
	var blocks []string // one per object diff, in order
	var totals counts
	for _, res := range results {
		tables.WriteString(opts.Redact(envHeading(res)))
		var errs strings.Builder
		tables.WriteString("| App | Namespace | Create | Change | Delete | Unchanged | Hooks that run | Recreate | Conflicts | Result |\n")
		tables.WriteString("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |\n")
		for _, a := range res.Apps {
			r, diffs, err := appRow(a)
			if err != nil {
				return "", fmt.Errorf("environment %s: app %s: %w", envName(res), a.Name, err)
			}
			totals.add(r.counts)
			tables.WriteString(opts.Redact(r.String()))
			if a.Error != "" { // a skipped app's error says why
				fmt.Fprintf(&errs, "\n**%s** %s:\n\n%s", code(a.Name), r.result, fenced("text", a.Error))
			}
			if a.Held != "" { // which change window, until when (docs/windows.md)
				fmt.Fprintf(&errs, "\n**%s** held by a change window: apply refuses it.\n\n%s", code(a.Name), fenced("text", a.Held))
			}
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
		tables.WriteString(opts.Redact(errs.String()))
	}
	head := fmt.Sprintf("%s\n**deliver diff** (%d %s): %s\n%s", Marker, len(results), plural(len(results), "environment"), totals.summary(), tables.String())
	if opts.Err != nil {
		head += opts.Redact(fmt.Sprintf("\n### deliver diff failed: the plan is incomplete\n\n%s", fenced("text", opts.Err.Error())))
	}
	return fit(head, blocks, opts.MaxBytes), nil
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
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		code(r.name), code(r.namespace), num(r.create), num(r.change), num(r.delete), num(r.unchanged),
		hooks, num(r.recreate), num(r.conflicts), r.result)
}

// appRow counts what the app's plan does and returns its object diffs.
func appRow(a *pipeline.AppResult) (row, []apply.ObjectDiff, error) {
	r := row{name: a.Name, namespace: a.Namespace}
	p := a.Plan
	switch {
	case a.Skipped != "":
		r.result = "skipped"
	case a.Error != "":
		r.result = "failed"
	case a.Unchanged:
		r.result = "unchanged (not rendered)"
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
