package main

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// globals are the flags every command shares.
type globals struct {
	kube *genericclioptions.ConfigFlags
}

func newRootCmd() *cobra.Command {
	g := &globals{kube: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:           "deliver",
		Short:         "Deliver what is in git to a Kubernetes cluster, safely",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.kube.AddFlags(root.PersistentFlags())
	root.AddCommand(newVersionCmd(), newRenderCmd(g), newDiffCmd(g), newApplyCmd(g))
	return root
}
