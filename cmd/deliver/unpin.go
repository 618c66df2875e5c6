package main

import (
	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/pkg/pin"
)

func newUnpinCmd(g *globals) *cobra.Command {
	f := &runFlags{logFormat: "text"}
	cmd := &cobra.Command{
		Use:   "unpin APP",
		Short: "Remove an app's pin: the reconciler delivers the head again",
		Long: `unpin removes the pin annotations (` + pinAnnotations + `) from the app's
inventory Secret in the current kubeconfig context (or --context). The
reconciler then delivers the head of the ref it follows. An app without a
pin is not an error.`,
		Example: `  deliver unpin web`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			res, err := pin.Unpin(cmd.Context(), pin.Options{App: args[0], Pipeline: f.opts})
			if err != nil {
				return err
			}
			return printPinResult(cmd.OutOrStdout(), f, res)
		},
	}
	cmd.Flags().StringVar(&f.opts.Apply.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets")
	f.output = addOutputFlag(cmd, "text", "json")
	return cmd
}
