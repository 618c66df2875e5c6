package main

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// globals are the flags every command shares.
type globals struct {
	kube  *genericclioptions.ConfigFlags
	qps   float32
	burst int
}

func newRootCmd() *cobra.Command {
	g := &globals{kube: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:           "deliver",
		Short:         "Deliver what is in git to a Kubernetes cluster, safely",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			tuneGC(cmd)
		},
	}
	g.kube.AddFlags(root.PersistentFlags())
	// client-go's defaults (5 QPS, burst 10) would serialise a 1,000-object
	// apply, and even 200 QPS made the client limit, not the server, the
	// floor of a first apply (3.0 s for 1,000 objects; 1.7 s without it).
	// The server's priority and fairness protects it; --concurrency bounds
	// the requests in flight.
	root.PersistentFlags().Float32Var(&g.qps, "qps", 1000, "client-side limit of API requests per second")
	root.PersistentFlags().IntVar(&g.burst, "burst", 2000, "client-side burst of API requests")
	root.AddCommand(newVersionCmd(), newRenderCmd(g), newDiffCmd(g), newApplyCmd(g), newSchemaCmd(), newReconcileCmd(g), newStatusCmd(g), newBootstrapCmd(g))
	root.AddCommand(newPinCmd(g), newUnpinCmd(g), newRollbackCmd(g), newUICmd(g), newReconcileAppCmd(g), newDeleteCmd(g),
		newSuspendCmd(g, true), newSuspendCmd(g, false))
	return root
}
