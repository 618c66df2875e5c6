package main

import (
	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/pkg/pin"
)

func newRollbackCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	o := pin.Options{}
	cmd := &cobra.Command{
		Use:   "rollback APP --reason TEXT",
		Short: "Pin an app to its previous successful revision and apply it at once",
		Long: `rollback reads the app's inventory history (its last 10 successful
revisions), pins the app to the one before its current revision (the
newest one when the current run failed) as deliver pin does, and applies
that revision of the app at once through the normal pipeline: that
revision's deliver.yaml, hooks and strategy, as deliver apply --ref REV
would. The reconciler then keeps the app there until deliver unpin.
deliver.yaml at --ref (default: the remote's HEAD) names the cluster.` + exitCodesHelp,
		Example: `  deliver rollback web --reason "500s after 1.4, INC-1234"
  deliver rollback web --repo https://github.com/org/deploy --env prod --reason "bad migration"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			o.App, o.Pipeline = args[0], f.opts
			res, err := pin.Rollback(cmd.Context(), o)
			if res != nil {
				if perr := printPinResult(cmd.OutOrStdout(), f, res); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	addPinFlags(cmd, f, &o, false)
	cmd.Flags().BoolVar(&f.opts.IgnoreWindows, "ignore-windows", false, "roll back also when a change window of deliver.yaml at the head holds the app (docs/windows.md); without it nothing is pinned or applied")
	return cmd
}
