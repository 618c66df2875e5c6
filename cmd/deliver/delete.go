package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

func newDeleteCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var policy string
	cmd := &cobra.Command{
		Use:   "delete [APP...]",
		Short: "Remove from the cluster apps that left deliver.yaml: their objects, then their inventories",
		Long: `delete removes apps that deliver.yaml (at --ref, in --env) no longer
lists: each app's objects are pruned as objects that left git are (the
deliver.dev/prune, Flux and Helm keep annotations and Argo CD's Prune=false
opt out; an object another app took over is kept), its hooks' kept runs
deleted, then its inventory: history and pin included. The app's
deletionPolicy, as its last run recorded it, decides as in Flux: MirrorPrune
(the default) deletes the objects of an app that prunes and leaves those of
an app with prune: false, Delete deletes, WaitForTermination deletes and
waits until they are gone, Orphan leaves them; --deletion-policy
replaces it for this removal (an app that left deliver.yaml has no
setting left to change). Named apps only,
or with no APP every app whose inventory records this environment of this
deliver.yaml of this repository. An app deliver.yaml still lists, or that
another environment or repository delivers, is refused. Unless
deliver.yaml sets pruneApps: true (then apply and the reconciler remove
them), leaving deliver.yaml leaves an app's objects in place until this
is run.

--dry-run names the objects that would be deleted and writes nothing.
Objects are named, never shown: what they hold in the cluster may be
secret values that git, and so deliver's masking, no longer knows.` + exitCodesHelp,
		Example: `  deliver delete --dry-run --env prod        # what left deliver.yaml
  deliver delete web --repo https://github.com/org/deploy --env prod`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.apps = append(f.apps, args...)
			removePolicy, err := apply.ParseRemovePolicy(policy)
			if err != nil {
				return fmt.Errorf("--deletion-policy: %w", err)
			}
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			f.opts.RemovePolicy = removePolicy
			w := cmd.OutOrStdout()
			do := pipeline.Remove
			if f.dryRun {
				do = pipeline.PlanRemove
			}
			res, err := do(cmd.Context(), f.opts)
			if err != nil {
				return err
			}
			// The objects to delete are named, never shown: their live
			// content may hold secret values that git, and so the
			// redactor, no longer knows (a resolved ref in a ConfigMap).
			out := removal{Revision: res.Revision, Environment: res.Environment, Apps: []removedApp{}}
			changes := false
			for _, a := range res.Apps {
				ra := removedApp{Name: a.Name, Error: a.Error}
				if a.Plan != nil {
					for _, c := range a.Plan.Changes {
						if c.Type == apply.ChangeDelete {
							ra.Delete = append(ra.Delete, c.ID.String())
						}
					}
					for _, id := range a.Plan.Orphaned {
						ra.Orphan = append(ra.Orphan, id.String())
					}
					changes = changes || len(ra.Delete) > 0
				}
				if a.Report != nil {
					ra.Results = a.Report.Results
					if a.Error == "" {
						ra.Summary = a.Report.Summary()
					}
				}
				out.Apps = append(out.Apps, ra)
			}
			if f.output.is("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printRemoval(w, out)
			}
			if err := res.Err(); err != nil {
				return err
			}
			if changes {
				return exitError{code: exitChanges}
			}
			return nil
		},
	}
	addRunFlags(cmd, f, true)
	f.output = addOutputFlag(cmd, "text", "json")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "only name the objects that would be deleted; write nothing")
	cmd.Flags().StringVar(&policy, "deletion-policy", "", "Delete, WaitForTermination or Orphan instead of the policy each app's last run recorded")
	return cmd
}

// removal is what deliver delete prints: per app, the objects its plan
// deletes (--dry-run) or the results of its removal.
type removal struct {
	Revision    string       `json:"revision"`
	Environment string       `json:"environment,omitempty"`
	Apps        []removedApp `json:"apps"`
}

type removedApp struct {
	Name   string   `json:"name"`
	Delete []string `json:"delete,omitempty"`
	// Orphan are the objects the removal leaves in the cluster
	// (deletionPolicy Orphan, or MirrorPrune of an app without prune).
	Orphan  []string       `json:"orphan,omitempty"`
	Results []apply.Result `json:"results,omitempty"`
	Summary string         `json:"summary,omitempty"`
	Error   string         `json:"error,omitempty"`
}

func printRemoval(w io.Writer, r removal) {
	if len(r.Apps) == 0 {
		fmt.Fprintln(w, "no app to remove: every app this deliver.yaml delivered is still listed")
	}
	for _, a := range r.Apps {
		fmt.Fprintf(w, "== app %s at %s\n", a.Name, r.Revision)
		for _, id := range a.Delete {
			fmt.Fprintf(w, "%s: to delete\n", id)
		}
		for _, id := range a.Orphan {
			fmt.Fprintf(w, "%s: stays in the cluster (deletionPolicy %s)\n", id, apply.DeletionOrphan)
		}
		printReport(w, &apply.Report{Results: a.Results})
		if a.Summary != "" {
			fmt.Fprintf(w, "removed: %s; inventory deleted\n", a.Summary)
		}
		if a.Error != "" {
			fmt.Fprintf(w, "failed: %s\n", a.Error)
		}
	}
}
