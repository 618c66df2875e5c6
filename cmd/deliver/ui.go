package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/source"
	"github.com/deliverhq/deliver/pkg/ui"
)

func newUICmd(g *globals) *cobra.Command {
	o := ui.LocalOptions{}
	var (
		envs []string
		src  pipeline.Options
	)
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

With --env (repeat it, or separate with commas, for several) it shows
those environments of deliver.yaml (in --path, or --repo at --ref, as
deliver pin finds it) together, each read in the cluster of the
kubeconfig context deliver.yaml names for it (--context wins over it)
and in its inventoryNamespace (else --inventory-namespace). An
environment whose cluster does not answer is named at the top of the page;
the others' apps are shown.

With --actions the app pages get "reconcile now" (the annotation
deliver.dev/reconcile-requested-at on the app's inventory Secret, as
deliver reconcile-app sets it: the reconciler runs that app even when it
is up to date; for an app never delivered, deliver-control's
deliver.dev/requested-at, a fetch now) and
"pin"/"unpin" (at the app's current revision, recorded as the kubeconfig's
user); nothing edits an app's objects. See docs/ui.md.`,
		Example: `  deliver ui
  deliver ui --addr 127.0.0.1:9090 --env prod --actions
  deliver ui --env staging --env prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Listening = func(url string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "serving the web view at %s (Ctrl-C stops it)\n", url)
			}
			if len(envs) == 0 {
				cfg, name, err := uiCluster(g, "")
				if err != nil {
					return err
				}
				o.Config, o.ClusterName = cfg, name
				return ui.ServeLocal(cmd.Context(), o)
			}
			var err error
			o.Environments, err = uiEnvironments(cmd.Context(), g, src, envs, o.InventoryNamespace)
			if err != nil {
				return err
			}
			return ui.ServeLocal(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "loopback address to listen on")
	fl.StringVar(&o.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets and of the reconciler's status ConfigMap (an environment's inventoryNamespace in deliver.yaml wins)")
	fl.StringSliceVarP(&envs, "env", "e", nil, "environments of deliver.yaml to show, each in the cluster of the context it names (repeat it, or separate with commas, for several)")
	fl.BoolVar(&o.Actions, "actions", false, "add the buttons reconcile now, pin and unpin, done as the kubeconfig's user")
	// Where deliver.yaml is, as for deliver pin.
	fl.StringVar(&src.Path, "path", ".", "local working tree holding deliver.yaml (read for --env)")
	fl.StringVar(&src.Repo, "repo", "", "git repository URL holding deliver.yaml, instead of --path")
	fl.StringVar(&src.Ref, "ref", "", "branch, tag or commit of --repo (default: the remote's HEAD)")
	fl.StringVar(&src.CacheDir, "cache-dir", "", "git cache folder (default: the user cache folder)")
	fl.StringVar(&src.ConfigFile, "config", "deliver.yaml", "path of deliver.yaml inside the repository")
	return cmd
}

// uiCluster returns the cluster of kubeconfig context kubeContext ("":
// the current one; --context wins over it) and its name for the pages.
func uiCluster(g *globals, kubeContext string) (*rest.Config, string, error) {
	if c := g.kube.Context; c != nil && *c != "" {
		kubeContext = *c
	}
	return contextCluster(g, kubeContext)
}

// contextCluster returns the cluster of kubeconfig context kubeContext
// ("": the current one, or --context) and its name.
func contextCluster(g *globals, kubeContext string) (*rest.Config, string, error) {
	loader := g.kube.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	name := cmp.Or(kubeContext, raw.CurrentContext)
	var cfg *rest.Config
	if kubeContext == "" {
		cfg, err = g.kube.ToRESTConfig()
	} else {
		if _, ok := raw.Contexts[kubeContext]; !ok {
			return nil, "", fmt.Errorf("context %q not found in the kubeconfig", kubeContext)
		}
		// The loader keeps the context it was made with: another one is
		// read from the same files.
		cfg, err = clientcmd.NewNonInteractiveClientConfig(raw, kubeContext, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	}
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", errors.New("no kubeconfig: set --kubeconfig or KUBECONFIG")
		}
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = g.qps, g.burst
	return cfg, name, nil
}

// uiEnvironments reads deliver.yaml once and returns each of envs with
// the cluster of the context it names and its inventory namespace (else
// invNS).
func uiEnvironments(ctx context.Context, g *globals, src pipeline.Options, envs []string, invNS string) ([]ui.LocalEnvironment, error) {
	snap, err := source.Fetch(ctx, source.Options{
		URL: cmp.Or(src.Repo, src.Path), Ref: src.Ref, Auth: source.AuthFromEnv(os.LookupEnv), CacheDir: src.CacheDir,
	})
	if err != nil {
		return nil, fmt.Errorf("--env: read deliver.yaml: %w", err)
	}
	defer snap.Close()
	seen := map[string]bool{}
	out := make([]ui.LocalEnvironment, 0, len(envs))
	for _, env := range envs {
		if seen[env] {
			return nil, fmt.Errorf("--env: environment %s given twice", env)
		}
		seen[env] = true
		po := src
		po.Env = env
		res, err := pipeline.LoadConfig(snap, po)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", env, err)
		}
		cfg, name, err := uiCluster(g, res.Context)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", env, err)
		}
		out = append(out, ui.LocalEnvironment{Name: env, Config: cfg, ClusterName: name, InventoryNamespace: cmp.Or(res.InventoryNamespace, invNS)})
	}
	return out, nil
}
