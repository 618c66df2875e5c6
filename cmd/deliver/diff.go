package main

import (
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

// Exit codes of diff, as helm-diff's and terraform's detailed exit codes.
const (
	exitNoChanges = 0
	exitChanges   = 2
)

func newDiffCmd(g *globals) *cobra.Command {
	var (
		o      pipeline.Options
		output string
		color  string
	)
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what apply would change, with a server-side dry run; never writes",
		Long: `diff renders the desired state and compares it with the cluster using a
server-side apply dry run. Secret values are masked.

Exit codes: 0 no changes, 2 changes, 1 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := clusterConfig(g, &o)
			if err != nil {
				return err
			}
			plan, err := pipeline.Diff(cmd.Context(), cfg, o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				err = plan.WriteJSON(w)
			} else {
				useColor := color == "always" || (color == "auto" && isTerminal(w))
				err = plan.WriteDiff(w, apply.DiffOptions{Color: useColor})
			}
			if err != nil {
				return err
			}
			if plan.HasChanges() {
				return exitError{code: exitChanges}
			}
			return nil
		},
	}
	addSourceFlags(cmd, &o)
	addClusterFlags(cmd, &o)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&color, "color", "auto", "colour the diff: auto, always, never")
	return cmd
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
