package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
)

func addSourceFlags(cmd *cobra.Command, o *pipeline.Options) {
	cmd.Flags().StringVar(&o.Root, "root", ".", "repository root; every path is resolved inside it")
	cmd.Flags().StringVarP(&o.Path, "filename", "f", ".", "manifests file or folder, relative to --root")
	cmd.Flags().StringVar(&o.App, "app", "default", "app name: its objects are labelled with it and its inventory kept under it")
	cmd.Flags().StringVar(&o.Revision, "revision", "", "git commit being delivered, recorded in the inventory")
}

// addClusterFlags adds the flags shared by diff and apply.
func addClusterFlags(cmd *cobra.Command, o *pipeline.Options) {
	cmd.Flags().IntVar(&o.Apply.Concurrency, "concurrency", 16, "requests in flight inside one stage")
	cmd.Flags().BoolVar(&o.FullDryRun, "full-dry-run", false, "dry-run every object instead of trusting the inventory for unchanged ones")
	cmd.Flags().BoolVar(&o.Apply.Recreate, "recreate", false, "delete and re-create objects whose change touches an immutable field")
	cmd.Flags().StringVar(&o.Apply.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets")
}

// clusterConfig builds the client config from the kubectl-style flags.
func clusterConfig(g *globals, o *pipeline.Options) (*rest.Config, error) {
	cfg, err := g.kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = g.qps, g.burst
	if ns, _, err := g.kube.ToRawKubeConfigLoader().Namespace(); err == nil {
		o.Apply.DefaultNamespace = ns
	}
	return cfg, nil
}

func newRenderCmd(g *globals) *cobra.Command {
	var o pipeline.Options
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print the rendered manifests, without a cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := pipeline.Render(cmd.Context(), o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, obj := range set.Objects {
				data, err := yaml.Marshal(obj.Object)
				if err != nil {
					return fmt.Errorf("%s: %w", obj.ID(), err)
				}
				fmt.Fprintf(w, "---\n# Source: %s\n%s", obj.Origin, data)
			}
			return nil
		},
	}
	addSourceFlags(cmd, &o)
	return cmd
}

func newApplyCmd(g *globals) *cobra.Command {
	var (
		o      pipeline.Options
		output string
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply the manifests with server-side apply and wait until they are ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := clusterConfig(g, &o)
			if err != nil {
				return err
			}
			rep, err := pipeline.Apply(cmd.Context(), cfg, o)
			if rep != nil {
				printReport(cmd, rep, output)
			}
			return err
		},
	}
	addSourceFlags(cmd, &o)
	cmd.Flags().BoolVar(&o.Wait, "wait", true, "wait until every object is ready")
	cmd.Flags().DurationVar(&o.Apply.Timeout, "timeout", 5*time.Minute, "how long to wait for readiness")
	addClusterFlags(cmd, &o)
	cmd.Flags().BoolVar(&o.Apply.NoForce, "fail-on-conflict", false, "fail when another field manager owns a field, instead of taking it over")
	cmd.Flags().StringVarP(&output, "output", "o", "", "report format: json")
	return cmd
}

func printReport(cmd *cobra.Command, rep *apply.Report, output string) {
	w := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	for _, r := range rep.Results {
		for _, c := range r.Conflicts {
			fmt.Fprintf(w, "%s: took over from another field manager: %s\n", r.ID, c)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s %s: %s\n", r.ID, r.Action, r.Error)
			continue
		}
		fmt.Fprintf(w, "%s %s\n", r.ID, r.Action)
	}
	fmt.Fprintf(w, "%s in %s\n", rep.Summary(), rep.Duration.Round(time.Millisecond))
}
