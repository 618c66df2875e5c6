package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/internal/version"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/bootstrap"
)

func newBootstrapCmd(g *globals) *cobra.Command {
	var (
		o       bootstrap.Options
		dryRun  bool
		timeout time.Duration
		invNS   string
	)
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Install the in-cluster reconciler, following a repository",
		Long: `bootstrap installs deliver reconcile in the namespace deliver-system, as
flux bootstrap installs Flux: the manifests of deploy/ (Namespace,
ServiceAccount, least-privilege RBAC, a two-replica Deployment with leader
election, a PodDisruptionBudget and a Service for the webhook and metrics),
set to follow --repo at --ref, and the Secrets it reads, made from local
files: --git-token-file, --age-key-file and --webhook-secret-file (a random
webhook secret is generated when none is given, and kept by later runs).
They are applied as the app deliver-reconciler with deliver's own apply, so
running bootstrap again changes only what differs, and deliver status shows
it. No secret value is printed. --dry-run shows the server-side diff.`,
		Example: `  deliver bootstrap --repo https://git.example.com/team/deploy.git --ref main --env prod \
    --git-token-file ~/.config/deliver/token --age-key-file age.agekey`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Repo == "" {
				return errors.New("--repo is required: the repository the reconciler follows")
			}
			cfg, err := g.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			cfg.QPS, cfg.Burst = g.qps, g.burst
			o.Version = version.Version
			ao := apply.Options{Timeout: timeout, InventoryNamespace: invNS}
			w := cmd.OutOrStdout()
			if dryRun {
				p, err := bootstrap.Plan(cmd.Context(), cfg, o, ao)
				if err != nil {
					return err
				}
				return p.WriteDiff(w, apply.DiffOptions{Color: isTerminal(w)})
			}
			rep, err := bootstrap.Install(cmd.Context(), cfg, o, ao)
			if rep != nil {
				printReport(w, rep)
				fmt.Fprintln(w, rep.Summary())
			}
			if err == nil {
				fmt.Fprintf(w, "the reconciler follows %s; deliver status shows what it delivers\n", o.Repo)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Repo, "repo", "", "repository to follow (https or ssh URL)")
	fl.StringVar(&o.Ref, "ref", "", "branch, tag or commit to follow (default: the remote's HEAD)")
	fl.StringVar(&o.Env, "env", "", "deliver.yaml environment to deliver")
	fl.DurationVar(&o.Interval, "interval", time.Minute, "how often the reconciler fetches the repository")
	fl.StringVar(&o.Image, "image", "", "reconciler image (default ghcr.io/deliverhq/deliver:<this version>)")
	fl.StringVar(&o.GitTokenFile, "git-token-file", "", "file holding an HTTPS token for the repository")
	fl.StringVar(&o.AgeKeyFile, "age-key-file", "", "file holding the SOPS age identities")
	fl.StringVar(&o.WebhookSecretFile, "webhook-secret-file", "", "file holding the push webhook's secret (default: generated once)")
	fl.StringVar(&o.VaultAddr, "vault-addr", "", "Vault address; keeps the Vault Agent sidecar (kubernetes auth method, role deliver)")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the reconciler to be ready")
	fl.BoolVar(&dryRun, "dry-run", false, "only show what would change")
	fl.StringVar(&invNS, "inventory-namespace", bootstrap.Namespace, "namespace of the reconciler's own inventory Secret")
	return cmd
}
