package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/pkg/ui"
)

func newUICmd(g *globals) *cobra.Command {
	o := ui.LocalOptions{}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web view of the apps on localhost",
		Long: `ui serves a read-only web view of the apps delivered to the current
kubeconfig's cluster until stopped: every app at a glance (result, health,
drift, pins and windows, suspended), filterable, and each app's objects by
stage with their health, hook runs with their logs' tail, history and
Events, updated live. It reads the reconciler's ConfigMap deliver-status
and the inventory Secrets of --inventory-namespace with the kubeconfig's
rights, and listens on loopback only: no one else can reach it. Secret
values never show: every byte served goes through the redactor, which
learns the values of each app's Secrets as its page reads them.

With --actions the app pages get "reconcile now" (the ConfigMap
deliver-control's deliver.dev/requested-at, as kubectl annotate does) and
"pin"/"unpin" (at the app's current revision, recorded as the kubeconfig's
user); nothing edits an app's objects. See docs/ui.md.`,
		Example: `  deliver ui
  deliver ui --addr 127.0.0.1:9090 --env prod --actions`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			cfg.QPS, cfg.Burst = g.qps, g.burst
			if raw, err := g.kube.ToRawKubeConfigLoader().RawConfig(); err == nil {
				o.ClusterName = raw.CurrentContext
				if g.kube.Context != nil && *g.kube.Context != "" {
					o.ClusterName = *g.kube.Context
				}
			}
			o.Config = cfg
			o.Listening = func(url string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "serving the web view at %s (Ctrl-C stops it)\n", url)
			}
			return ui.ServeLocal(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "loopback address to listen on")
	fl.StringVar(&o.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets and of the reconciler's status ConfigMap")
	fl.StringVar(&o.Environment, "env", "", "the environment the apps are delivered as (a multi-cluster reconciler's status of it, deliver-status.ENV, when there is one)")
	fl.BoolVar(&o.Actions, "actions", false, "add the buttons reconcile now, pin and unpin, done as the kubeconfig's user")
	return cmd
}
