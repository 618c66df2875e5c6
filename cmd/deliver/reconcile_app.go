package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

func newReconcileAppCmd(g *globals) *cobra.Command {
	var (
		ns, env             string
		statusCtx, statusNS string
		wait                bool
		timeout             time.Duration
		output              *outputFormat
	)
	cmd := &cobra.Command{
		Use:   "reconcile-app APP",
		Short: "Ask the running reconciler for a run of one app now, even when it is up to date",
		Long: `reconcile-app sets the annotation ` + reconcile.AnnotationReconcileRequestedAt + ` of the app's
inventory Secret in --inventory-namespace to the time, as the web view's
"reconcile now" does (Flux's flux reconcile, Argo CD's sync). The
reconciler that delivers the app fetches, then runs it, even when nothing is
due, once per request, and records the request in the app's status
(lastHandledRequest). A suspended app is not run until resumed; a change
window holds the run until it opens; a pinned app runs at its pin.

With --wait it waits until the reconciler's status reports the request
served and prints the run's result: exit 0 when it succeeded, 1 when it
failed, the app is suspended or --timeout passed. --env reads the status a
reconciler of several environments keeps of that environment
(` + reconcile.EnvStatusName("ENV") + `). The inventory Secret is in the cluster of the current
context (or --context); the status is in the reconciler's own cluster,
which for an environment with a cluster of its own is another one: name
its context with --status-context, and its namespace with
--status-namespace when it is not --inventory-namespace. An app that was
never delivered has no inventory Secret: it is due anyway, and the
reconciler runs it at its next fetch.`,
		Example: `  deliver reconcile-app web
  deliver reconcile-app web --wait --timeout 10m
  deliver reconcile-app web --env prod --inventory-namespace deliver-system --wait -o json
  deliver reconcile-app web --env prod --context prod --status-context ops --status-namespace deliver-system --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("reconcile-app: client: %w", err)
			}
			// The status's cluster is checked before anything is
			// written: a wrong context asks for no run.
			skc := kubernetes.Interface(kc)
			if statusCtx != "" {
				scfg, _, err := contextCluster(g, statusCtx)
				if err != nil {
					return fmt.Errorf("--status-context %s: %w", statusCtx, err)
				}
				if skc, err = kubernetes.NewForConfig(scfg); err != nil {
					return fmt.Errorf("--status-context %s: client: %w", statusCtx, err)
				}
			}
			app := args[0]
			value, err := reconcile.RequestRun(cmd.Context(), kc, app, reconcile.RequestOptions{InventoryNamespace: ns})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if !wait {
				if output.is("json") {
					return json.NewEncoder(w).Encode(map[string]string{"app": app, "requestedAt": value})
				}
				fmt.Fprintf(w, "requested a run of app %s at %s\n", app, value)
				return nil
			}
			status := reconcile.StatusConfigMap
			if env != "" {
				status = reconcile.EnvStatusName(env)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := reconcile.WaitRequest(ctx, skc, app, value, reconcile.WaitOptions{StatusNamespace: cmp.Or(statusNS, ns), StatusName: status})
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) && st.Held != "" {
					return fmt.Errorf("%w; %s", err, st.Held)
				}
				return err
			}
			if output.is("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "app %s: %s at %s (run requested at %s)\n", app, st.Result, orDash(shortRev(st.Revision)), value)
				if st.Message != "" {
					fmt.Fprintln(w, oneLine(st.Message))
				}
			}
			if st.Result == apply.ResultFailed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ns, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets and of the reconciler's status ConfigMap")
	fl.StringVar(&env, "env", "", "with --wait: the environment of a reconciler of several, whose status is ConfigMap "+reconcile.EnvStatusName("ENV"))
	fl.StringVar(&statusCtx, "status-context", "", "with --wait: kubeconfig context of the reconciler's cluster, where its status is (default: the inventory's)")
	fl.StringVar(&statusNS, "status-namespace", "", "with --wait: namespace of the reconciler's status (default: --inventory-namespace)")
	fl.BoolVar(&wait, "wait", false, "wait until the run requested ended, print its result and exit 1 if it failed")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: how long to wait")
	output = addOutputFlag(cmd, "text", "json")
	return cmd
}
