package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/plan"
	"github.com/deliverhq/deliver/pkg/render"
)

// Exit codes of diff, as helm-diff's and terraform's detailed exit codes.
const (
	exitNoChanges = 0
	exitChanges   = 2
)

const exitCodesHelp = `
Exit codes: 0 success (diff: no changes), 2 diff found changes, 1 error.`

func newRenderCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print the rendered manifests of every app, offline",
		Long:  "render reads deliver.yaml, decrypts and resolves secrets, and prints every app's objects. Secret values are masked unless --show-secrets." + exitCodesHelp,
		Example: `  deliver render --env staging
  deliver render -f manifests/ -n web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if showSecrets && !terminalOrFile(w) {
				return errors.New("--show-secrets prints secret values: refused when stdout is a pipe (write to a terminal or a file)")
			}
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			res, err := pipeline.Render(cmd.Context(), f.opts)
			if err != nil {
				return err
			}
			var objs []*unstructured.Unstructured
			var b strings.Builder
			for _, a := range res.Apps {
				for _, list := range [][]*unstructuredObject{objectsOf(a, false), objectsOf(a, true)} {
					for _, o := range list {
						u := o.u
						if !showSecrets {
							u = maskSecret(u)
						}
						if f.output.is("json") {
							objs = append(objs, u)
							continue
						}
						data, err := render.MarshalYAML(u.Object)
						if err != nil {
							return err
						}
						fmt.Fprintf(&b, "---\n# Source: %s\n%s", o.origin, data)
					}
				}
			}
			if f.output.is("json") {
				// As kubectl get -o json prints several objects: a v1 List.
				items := make([]any, 0, len(objs))
				for _, u := range objs {
					items = append(items, u.Object)
				}
				list := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items}
				data, err := json.MarshalIndent(list, "", "  ")
				if err != nil {
					return fmt.Errorf("render: %w", err)
				}
				b.Write(data)
				b.WriteByte('\n')
			}
			out := b.String()
			if !showSecrets {
				out = f.opts.Redactor.Redact(out)
			}
			_, err = io.WriteString(w, out)
			return err
		},
	}
	addRunFlags(cmd, f, false)
	f.output = addOutputFlag(cmd, "yaml", "json")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print secret values (only to a terminal or a file)")
	return cmd
}

type unstructuredObject struct {
	u      *unstructured.Unstructured
	origin string
}

func objectsOf(a *pipeline.AppResult, hooks bool) []*unstructuredObject {
	if a.Set == nil {
		return nil
	}
	list := a.Set.Objects
	if hooks {
		list = a.Set.Hooks
	}
	out := make([]*unstructuredObject, 0, len(list))
	for _, o := range list {
		out = append(out, &unstructuredObject{u: o.Unstructured, origin: o.Origin.String()})
	}
	return out
}

// maskSecret replaces a Secret's values by *** for printing.
func maskSecret(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u.GetKind() != "Secret" || u.GroupVersionKind().Group != "" {
		return u
	}
	u = u.DeepCopy()
	for _, field := range []string{"data", "stringData"} {
		m, ok, _ := unstructured.NestedMap(u.Object, field)
		if !ok {
			continue
		}
		for k := range m {
			m[k] = "***"
		}
		_ = unstructured.SetNestedMap(u.Object, m, field)
	}
	return u
}

func terminalOrFile(w io.Writer) bool {
	if isTerminal(w) {
		return true
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode().IsRegular()
}

func newDiffCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var color string
	var maxBytes int
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what apply would change, with a server-side dry run; never writes",
		Long: `diff renders every app and compares it with the cluster using server-side
apply dry runs (only for objects that may have changed since deliver applied
them; --full-dry-run for all). Secret values are masked.

-o markdown prints one body for a pull request comment: a summary table per
environment and app, then each object's diff in a collapsible block, within
--markdown-max-bytes (see docs/plans.md).` + exitCodesHelp,
		Example: `  deliver diff --env prod
  deliver diff --repo https://git.example.com/team/deploy.git --ref main -o json
  deliver diff --env staging --env prod -o markdown > plan.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.markdownMaxBytes = maxBytes
			return runDiff(cmd, g, f, color)
		},
	}
	addRunFlags(cmd, f, true)
	f.output = addOutputFlag(cmd, "text", "json", "markdown")
	cmd.Flags().StringVar(&color, "color", "auto", "colour the diff: auto, always, never")
	cmd.Flags().IntVar(&maxBytes, "markdown-max-bytes", plan.DefaultMaxBytes, "with -o markdown, the body's size bound: object diffs, then unchanged apps' rows, then the last rows are left out, with a note, to stay within it (GitHub refuses comments over 65,536 characters)")
	return cmd
}

func runDiff(cmd *cobra.Command, g *globals, f *runFlags, color string) error {
	if err := f.prepare(cmd, g); err != nil {
		return err
	}
	results, runErr := pipeline.DiffEnvironments(cmd.Context(), f.opts, f.envs)
	w := cmd.OutOrStdout()
	if runErr != nil && !f.output.is("markdown") {
		return runErr
	}
	switch {
	case f.output.is("markdown"):
		// Printed also when the run failed, saying so: CI posts it over
		// the comment of an earlier run, which would otherwise stand.
		body, err := plan.Markdown(results, plan.Options{MaxBytes: f.markdownMaxBytes, Redact: f.opts.Redactor.Redact, Err: runErr})
		if err != nil {
			return errors.Join(runErr, err)
		}
		if _, err := io.WriteString(w, body); err != nil {
			return errors.Join(runErr, err)
		}
		if runErr != nil {
			return runErr
		}
	case f.output.is("json"):
		if err := writeDiffJSON(w, results); err != nil {
			return err
		}
	default:
		useColor := color == "always" || (color == "auto" && isTerminal(w))
		for _, res := range results {
			if len(results) > 1 {
				fmt.Fprintf(w, "=== environment %s at %s\n", res.Environment, res.Revision)
			}
			for _, a := range res.Apps {
				fmt.Fprintf(w, "== app %s (%s)\n", a.Name, appWhere(a))
				if a.Unchanged {
					fmt.Fprintln(w, unchangedNote)
				}
				printHeld(w, a.Held, "apply refuses it")
				if a.Skipped != "" && a.Error == "" { // suspended: no error says why
					fmt.Fprintf(w, "skipped: %s\n", a.Skipped)
				}
				if a.Plan != nil {
					if err := a.Plan.WriteDiff(w, apply.DiffOptions{Color: useColor}); err != nil {
						return err
					}
				}
			}
		}
	}
	var errs []error
	changes := false
	for _, res := range results {
		errs = append(errs, res.Err())
		changes = changes || res.HasChanges()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if changes {
		return exitError{code: exitChanges}
	}
	return nil
}

// jsonDiff is one environment's diff -o json.
type jsonDiff struct {
	Environment string        `json:"environment,omitempty"`
	Revision    string        `json:"revision"`
	Dirty       bool          `json:"dirty,omitempty"`
	Changes     bool          `json:"changes"`
	Apps        []jsonDiffApp `json:"apps"`
}

type jsonDiffApp struct {
	Name  string          `json:"name"`
	Plan  json.RawMessage `json:"plan,omitempty"`
	Error string          `json:"error,omitempty"`
	Held  string          `json:"held,omitempty"`
	// Skipped says why the app was not planned; Suspended is set for
	// an app deliver.yaml suspends (its dependents are only Skipped).
	Skipped   string `json:"skipped,omitempty"`
	Suspended bool   `json:"suspended,omitempty"`
}

// writeDiffJSON prints one environment's diff as an object; several as
// an object with changes (whether any has) and environments, each as one
// alone would print.
func writeDiffJSON(w io.Writer, results []*pipeline.Result) error {
	var envs []jsonDiff
	changes := false
	for _, res := range results {
		out := jsonDiff{Environment: res.Environment, Revision: res.Revision, Dirty: res.Dirty, Changes: res.HasChanges()}
		changes = changes || out.Changes
		for _, a := range res.Apps {
			ja := jsonDiffApp{Name: a.Name, Error: a.Error, Held: a.Held, Skipped: a.Skipped, Suspended: a.Suspended}
			if a.Plan != nil {
				var b strings.Builder
				if err := a.Plan.WriteJSON(&b); err != nil {
					return err
				}
				ja.Plan = json.RawMessage(b.String())
			}
			out.Apps = append(out.Apps, ja)
		}
		envs = append(envs, out)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(envs) == 1 {
		return enc.Encode(envs[0])
	}
	return enc.Encode(struct {
		Changes      bool       `json:"changes"`
		Environments []jsonDiff `json:"environments"`
	}{changes, envs})
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newApplyCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var showDiff bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Deliver every app: hooks, strategy, server-side apply, prune, wait",
		Long: `apply renders every app and delivers it in dependsOn order (independent
apps in parallel): config first, then pre-apply hooks (migrations), then
workloads with the app's rolling or recreate strategy, then post-apply hooks,
then prune of what left git. A failing app stops the apps that depend on it.
--dry-run is diff.` + exitCodesHelp,
		Example: `  deliver apply --env prod --require-clean
  deliver apply -f manifests/ -n web --app web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dryRun {
				return runDiff(cmd, g, f, "auto")
			}
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			res, err := pipeline.Apply(cmd.Context(), f.opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if showDiff {
				// What each app's run planned, as diff prints it: one
				// run shows and applies, like kapp deploy --diff-changes.
				// In JSON each app gets its plan, masked as diff -o json.
				useColor := isTerminal(w)
				for _, a := range res.Apps {
					if a.Report == nil || a.Report.Plan == nil {
						continue
					}
					if f.output.is("json") {
						a.Plan = a.Report.Plan
						continue
					}
					fmt.Fprintf(w, "== app %s (%s)\n", a.Name, appWhere(a))
					if err := a.Report.Plan.WriteDiff(w, apply.DiffOptions{Color: useColor}); err != nil {
						return err
					}
				}
			}
			if f.output.is("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				printResult(w, res)
			}
			return res.Err()
		},
	}
	addRunFlags(cmd, f, true)
	f.output = addOutputFlag(cmd, "text", "json")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "only show what would change (same as diff)")
	cmd.Flags().BoolVar(&showDiff, "diff", false, "print the diff of what is applied, as diff does, before the results (one run instead of diff then apply); with -o json, each app's plan")
	cmd.Flags().BoolVar(&f.opts.IgnoreWindows, "ignore-windows", false, "apply also the apps that a change window of deliver.yaml holds (docs/windows.md)")
	cmd.Flags().BoolVar(&f.opts.Apply.NoForce, "fail-on-conflict", false, "fail when another field manager owns a field, instead of taking it over")
	return cmd
}

// printHeld notes the change window that holds an app (docs/windows.md).
func printHeld(w io.Writer, held, consequence string) {
	if held != "" {
		fmt.Fprintf(w, "%s: %s\n", held, consequence)
	}
}

// appWhere says where an app is: its namespace, or that it left
// deliver.yaml (pruneApps removes it).
func appWhere(a *pipeline.AppResult) string {
	if a.Removed {
		return "left deliver.yaml: pruneApps removes it"
	}
	return "namespace " + a.Namespace
}

// unchangedNote says why an app was not rendered.
const unchangedNote = "inputs unchanged since the last successful apply and objects as it left them: not rendered (--force-render renders)"

func printResult(w io.Writer, res *pipeline.Result) {
	rev := res.Revision
	if res.Dirty {
		rev += " (dirty)"
	}
	for _, a := range res.Apps {
		fmt.Fprintf(w, "== app %s (%s) at %s\n", a.Name, appWhere(a), rev)
		if a.Unchanged {
			fmt.Fprintln(w, unchangedNote)
		}
		printHeld(w, a.Held, "applied with --ignore-windows")
		if a.Report != nil {
			printReport(w, a.Report)
			fmt.Fprintf(w, "%s in %s\n", a.Report.Summary(), a.Duration.Round(time.Millisecond))
		}
		switch {
		case a.Skipped != "":
			fmt.Fprintf(w, "skipped: %s\n", a.Skipped)
		case a.Error != "":
			fmt.Fprintf(w, "failed: %s\n", a.Error)
		}
	}
}

// printReport prints one line per object of an apply, and the fields
// taken over from other field managers.
func printReport(w io.Writer, rep *apply.Report) {
	if rep.AdoptedFrom != nil {
		fmt.Fprintf(w, "adopted the app from %s (its inventory was annotated %s=true)\n", rep.AdoptedFrom, apply.AnnotationAdopt)
	}
	for _, r := range rep.Results {
		for _, c := range r.Conflicts {
			fmt.Fprintf(w, "%s: took over from another field manager: %s\n", r.ID, c)
		}
		line := fmt.Sprintf("%s %s", r.ID, r.Action)
		if r.Hook != "" {
			line = fmt.Sprintf("hook %s (%s) %s", r.ID, r.Hook, r.Action)
		}
		switch {
		case r.AdoptedFrom != "":
			line += " (adopted from app " + r.AdoptedFrom + ")"
		case r.Owner != "":
			line += ": not deleted, app " + r.Owner + " owns it now"
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
		fmt.Fprintln(w, line)
	}
	// The health checks' verdicts: which expression decided each
	// custom resource's readiness.
	for _, h := range rep.Health {
		fmt.Fprintf(w, "%s health %s: %s\n", h.ID, h.Status, h.Message)
	}
}
