package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// runFlags are the flags of render, diff and apply.
type runFlags struct {
	vault      vaultFlags
	opts       pipeline.Options
	apps       []string
	output     *outputFormat
	logFormat  string
	verbose    bool
	wait       bool
	rollback   bool
	noValidate bool

	// Plans in pull requests (issue #20).
	// envs are the --env values: one for render and apply, one or more
	// for diff (see pipeline.DiffEnvironments).
	envs []string
	// dryRun is apply --dry-run, which diffs (and so takes several --env).
	dryRun bool
	// markdownMaxBytes bounds diff -o markdown (plan.Options.MaxBytes).
	markdownMaxBytes int
}

func addRunFlags(cmd *cobra.Command, f *runFlags, cluster bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.opts.Path, "path", ".", "local working tree holding deliver.yaml, used as it is on disk")
	fl.StringVar(&f.opts.Repo, "repo", "", "git repository URL to fetch instead of --path (https, ssh or file)")
	fl.StringVar(&f.opts.Ref, "ref", "", "branch, tag or commit of --repo (default: the remote's HEAD)")
	fl.StringVar(&f.opts.CacheDir, "cache-dir", "", "git cache folder (default: the user cache folder)")
	fl.BoolVar(&f.opts.RequireClean, "require-clean", false, "refuse a working tree with uncommitted changes (for CI)")
	fl.StringVar(&f.opts.ConfigFile, "config", "deliver.yaml", "path of deliver.yaml inside the repository")
	fl.StringSliceVarP(&f.envs, "env", "e", nil, "environment of deliver.yaml (diff: repeat it, or separate with commas, for several)")
	fl.StringSliceVar(&f.apps, "app", nil, "only these apps; with -f, the app's name (default \"default\")")
	fl.StringVarP(&f.opts.Manifests, "filename", "f", "", "deliver this folder of plain manifests as one app, without deliver.yaml")
	fl.StringSliceVar(&f.opts.Secrets.AgeKeyFiles, "age-key-file", nil, "age identity file for SOPS (SOPS_AGE_KEY and SOPS_AGE_KEY_FILE work too)")
	fl.StringSliceVar(&f.opts.Secrets.PGPKeyFiles, "pgp-key-file", nil, "armored PGP private key file for SOPS")
	fl.StringVar(&f.vault.method, "vault-auth", "token", "Vault login: token (VAULT_TOKEN or ~/.vault-token), kubernetes or approle")
	fl.StringVar(&f.vault.role, "vault-role", "", "Vault role for --vault-auth kubernetes")
	fl.StringVar(&f.vault.mount, "vault-auth-mount", "", "mount of the Vault auth method (default: kubernetes or approle)")
	fl.StringVar(&f.vault.jwtFile, "vault-jwt-file", "", "ServiceAccount token file for --vault-auth kubernetes (default: the pod's)")
	fl.StringVar(&f.vault.roleID, "vault-role-id", "", "AppRole role ID for --vault-auth approle")
	fl.StringVar(&f.vault.secretIDFile, "vault-secret-id-file", "", "file holding the AppRole secret ID")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log progress to stderr")
	if !cluster {
		// A run against a cluster renders charts with its version and
		// API versions, as helm upgrade does; offline, as helm template.
		fl.StringVar(&f.opts.KubeVersion, "kube-version", "", "Kubernetes version Helm charts see in .Capabilities.KubeVersion (default "+render.DefaultKubeVersion+")")
		fl.StringSliceVarP(&f.opts.APIVersions, "api-versions", "a", nil, "API versions Helm charts see in .Capabilities.APIVersions besides the built-in ones (group/version or group/version/Kind), as helm template --api-versions")
	}
	if cluster {
		fl.IntVar(&f.opts.Apply.Concurrency, "concurrency", 48, "requests in flight inside one stage")
		fl.IntVar(&f.opts.Parallel, "parallel", 16, "apps delivered at once (dependsOn order is kept); the requests in flight are bounded for all apps together")
		fl.BoolVar(&f.opts.FullDryRun, "full-dry-run", false, "dry-run every object instead of trusting the inventory for unchanged ones")
		fl.BoolVar(&f.opts.ForceRender, "force-render", false, "render every app, also those whose inputs (files read, values, deliver's version) are those of their last successful apply and whose objects are unchanged in the cluster")
		fl.BoolVar(&f.opts.Apply.Recreate, "recreate", false, "delete and re-create objects whose change touches an immutable field")
		fl.StringVar(&f.opts.Apply.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets")
		fl.BoolVar(&f.noValidate, "no-validate", false, "skip the dry run that validates objects new to a running app before its first write (a first revision is dry-run only when the app has a serviceAccountName); a rejected object then fails mid-stage")
		fl.BoolVar(&f.wait, "wait", true, "wait until the objects are ready (default: as deliver.yaml says)")
		fl.BoolVar(&f.rollback, "rollback-on-failure", false, "restore the previous workloads when a rollout does not become ready (default: as deliver.yaml says)")
		fl.DurationVar(&f.opts.Apply.Timeout, "timeout", 0, "how long to wait for readiness (default: as deliver.yaml says, or 5m)")
	}
}

// prepare fills the options that need the global flags and a redactor.
func (f *runFlags) prepare(cmd *cobra.Command, g *globals) error {
	stderr := cmd.ErrOrStderr()
	if fl := cmd.Flags().Lookup("wait"); fl != nil && fl.Changed {
		f.opts.Wait = &f.wait
	}
	f.opts.Apply.NoCreateDryRun = f.noValidate
	if fl := cmd.Flags().Lookup("rollback-on-failure"); fl != nil && fl.Changed {
		f.opts.RollbackOnFailure = &f.rollback
	}
	switch {
	case len(f.envs) == 1:
		f.opts.Env = f.envs[0]
	case len(f.envs) > 1 && cmd.Name() != "diff" && !f.dryRun:
		return fmt.Errorf("--env: %s takes one environment (diff takes several)", cmd.Name())
	}
	f.opts.Redactor = secrets.NewRedactor(secrets.RedactorOptions{})
	auth, err := f.vault.auth()
	if err != nil {
		return err
	}
	f.opts.Secrets.VaultAuth = auth
	var h slog.Handler
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	switch f.logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		return fmt.Errorf("unknown log format %q (want text or json)", f.logFormat)
	}
	f.opts.Log = slog.New(f.opts.Redactor.Handler(h))
	routeLibraryLogs(f.opts.Log)
	// Progress: a line per app and step with the elapsed time on a
	// terminal; structured log lines otherwise (with -v).
	start := time.Now()
	onTerminal := isTerminal(stderr)
	f.opts.Apply.Progress = func(app string, step apply.Step, n int) {
		if onTerminal {
			fmt.Fprintf(stderr, "%7.1fs  %s: %s (%d)\n", time.Since(start).Seconds(), app, step, n)
			return
		}
		f.opts.Log.Info("step", "app", app, "step", string(step), "count", n, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	if f.opts.Manifests != "" {
		if len(f.apps) > 0 {
			f.opts.App = f.apps[0]
		}
		if ns, _, err := g.kube.ToRawKubeConfigLoader().Namespace(); err == nil {
			f.opts.Namespace = ns
		}
	} else {
		f.opts.Apps = f.apps
	}
	f.opts.Auth = source.AuthFromEnv(os.LookupEnv)
	// The kubeconfig loader keeps the context it first used; a run of
	// several environments that name different contexts would diff them
	// all against the first one's cluster, so it is refused instead.
	checkContext := len(f.envs) > 1 && (g.kube.Context == nil || *g.kube.Context == "")
	var firstContext *string
	f.opts.Kube = func(kubeContext string) (*rest.Config, error) {
		if checkContext {
			if firstContext != nil && *firstContext != kubeContext {
				return nil, fmt.Errorf("the environments name different kubeconfig contexts (%q, then %q): diff them in separate runs, or choose one with --context", *firstContext, kubeContext)
			}
			firstContext = &kubeContext
		}
		if kubeContext != "" && (g.kube.Context == nil || *g.kube.Context == "") {
			// The environment names the cluster; --context still wins.
			g.kube.Context = &kubeContext
		}
		raw, err := g.kube.ToRawKubeConfigLoader().RawConfig()
		if err != nil {
			return nil, err
		}
		if c := g.kube.Context; c != nil && *c != "" {
			if _, ok := raw.Contexts[*c]; !ok {
				return nil, fmt.Errorf("context %q not found in the kubeconfig", *c)
			}
		}
		cfg, err := g.kube.ToRESTConfig()
		if err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, fmt.Errorf("no kubeconfig: set --kubeconfig or KUBECONFIG")
			}
			return nil, err
		}
		cfg.QPS, cfg.Burst = g.qps, g.burst
		return cfg, nil
	}
	return nil
}

// outputFormat is the value of a command's -o: one of the formats the
// command implements, checked when the flag is parsed, so that no command
// accepts a format it would not print.
type outputFormat struct {
	value string
	// formats are what -o accepts; the first is the default.
	formats []string
}

// addOutputFlag adds -o to cmd, accepting exactly formats (the first is the
// default), and returns its value.
func addOutputFlag(cmd *cobra.Command, formats ...string) *outputFormat {
	o := &outputFormat{value: formats[0], formats: formats}
	cmd.Flags().VarP(o, "output", "o", "output format: "+strings.Join(formats, ", "))
	return o
}

// String is the format, for help.
func (o *outputFormat) String() string { return o.value }

// Set refuses a format the command does not print, naming those it does.
func (o *outputFormat) Set(s string) error {
	if !slices.Contains(o.formats, s) {
		want := o.formats[0]
		if last := len(o.formats) - 1; last > 0 {
			want = strings.Join(o.formats[:last], ", ") + " or " + o.formats[last]
		}
		return fmt.Errorf("unknown output format %q (want %s)", s, want)
	}
	o.value = s
	return nil
}

// Type names the value in help.
func (o *outputFormat) Type() string { return "format" }

// is reports whether the chosen format is f.
func (o *outputFormat) is(f string) bool { return o != nil && o.value == f }

// vaultFlags choose how deliver logs in to Vault.
type vaultFlags struct {
	method, role, mount, jwtFile, roleID, secretIDFile string
}

func (v vaultFlags) auth() (secrets.VaultAuth, error) {
	switch v.method {
	case "", "token":
		return secrets.VaultAuth{}, nil
	case "kubernetes":
		if v.role == "" {
			return secrets.VaultAuth{}, fmt.Errorf("--vault-auth kubernetes needs --vault-role")
		}
		return secrets.VaultAuth{Kubernetes: &secrets.KubernetesAuth{Role: v.role, Mount: v.mount, JWTFile: v.jwtFile}}, nil
	case "approle":
		if v.roleID == "" {
			return secrets.VaultAuth{}, fmt.Errorf("--vault-auth approle needs --vault-role-id")
		}
		return secrets.VaultAuth{AppRole: &secrets.AppRoleAuth{RoleID: v.roleID, SecretIDFile: v.secretIDFile, Mount: v.mount}}, nil
	}
	return secrets.VaultAuth{}, fmt.Errorf("unknown --vault-auth %q (want token, kubernetes or approle)", v.method)
}
