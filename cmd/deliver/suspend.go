package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// newSuspendCmd is deliver suspend (suspend) or deliver resume (!suspend):
// the two differ only in the library function and the words.
func newSuspendCmd(g *globals, suspend bool) *cobra.Command {
	var (
		ns  string
		all bool
	)
	verb, do, long, example := "resume", reconcile.Resume, `resume removes the annotation `+reconcile.AnnotationSuspend+` that suspend set on the
inventory Secrets of the apps named (in --inventory-namespace, in the cluster
of the current context or --context), or with --all on the ConfigMap
`+reconcile.ControlConfigMap+`: the reconciler runs again what is due (a new
commit, drift, a request). An app suspended in deliver.yaml (suspend: true)
is resumed by a commit, not here.`, `  deliver resume web api
  deliver resume --all`
	if suspend {
		verb, do, long, example = "suspend", reconcile.Suspend, `suspend pauses apps in the reconciler, as flux suspend does: it sets the
annotation `+reconcile.AnnotationSuspend+`=true on the inventory Secret of each
app named (in --inventory-namespace, in the cluster of the current context
or --context), or with --all on the ConfigMap `+reconcile.ControlConfigMap+`,
which pauses every app. A paused app is not run for a new commit, drift, a
retry or a request until deliver resume; a run under way ends normally, and
drift is still reported. deliver apply and diff are not affected. An app
never delivered has no inventory Secret: pause it with suspend: true in
deliver.yaml or the reconciler's --suspend instead. To pause an app from
git for every cluster, use suspend: true in deliver.yaml.`, `  deliver suspend web
  deliver suspend web api --inventory-namespace deliver-system
  deliver suspend --all`
	}
	cmd := &cobra.Command{
		Use:     verb + " [APP...] [--all]",
		Short:   strings.ToUpper(verb[:1]) + verb[1:] + " apps in the reconciler (the annotation " + reconcile.AnnotationSuspend + ")",
		Long:    long,
		Example: example,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New(verb + ": name the apps, or --all")
			}
			cfg, err := g.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("%s: client: %w", verb, err)
			}
			if err := do(cmd.Context(), kc, args, reconcile.RequestOptions{InventoryNamespace: ns}); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			done := strings.TrimSuffix(verb, "e") + "ed" // suspended, resumed
			if all {
				fmt.Fprintf(w, "%s every app: ConfigMap %s/%s\n", done, ns, reconcile.ControlConfigMap)
			}
			for _, app := range args {
				fmt.Fprintf(w, "%s app %s\n", done, app)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ns, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets and of "+reconcile.ControlConfigMap)
	fl.BoolVar(&all, "all", false, verb+" every app (the annotation on "+reconcile.ControlConfigMap+")")
	return cmd
}
