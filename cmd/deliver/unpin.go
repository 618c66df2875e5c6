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
inventory Secret in the environment's cluster: with --env (or --repo), the
kubeconfig context deliver.yaml at --ref (default: the remote's HEAD; the
git repository of --path without --repo) names for the environment, as
pin, rollback and apply find it; otherwise the current kubeconfig
context. --context wins over both. The reconciler then delivers the head
of the ref it follows. An app without a pin is not an error.`,
		Example: `  deliver unpin web
  deliver unpin web --env prod
  deliver unpin web --repo https://github.com/org/deploy --env prod`,
		Args: cobra.ExactArgs(1),
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
	// The source flags find the environment's cluster; the render flags
	// have nothing to do here.
	addRunFlags(cmd, f, false)
	fl := cmd.Flags()
	for _, name := range []string{"app", "filename", "require-clean", "kube-version", "age-key-file", "pgp-key-file",
		"vault-auth", "vault-role", "vault-auth-mount", "vault-jwt-file", "vault-role-id", "vault-secret-id-file"} {
		_ = fl.MarkHidden(name)
	}
	fl.StringVar(&f.opts.Apply.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets")
	f.output = addOutputFlag(cmd, "text", "json")
	return cmd
}
