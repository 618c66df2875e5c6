package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/ui"
)

func newReconcileCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	var (
		o        reconcile.Options
		clusters bool
		envs     *envList
		// The web view (docs/ui.md).
		uiAddr    string
		uiAuth    string
		uiActions bool
		// Runtime profiles (pprof.go).
		pprofAddr string
	)
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Keep the cluster equal to git: the in-cluster reconciler",
		Long: `reconcile runs until stopped (SIGTERM or Ctrl-C). It fetches --ref of
--repo every --interval (a no-change fetch is one ls-remote) and delivers
each app, as deliver apply does, when its commit moved, when its objects
drifted from what deliver applied (watched; a kubectl edit is reverted
within seconds unless --no-self-heal), when an input outside git changed
(a Vault secret, a ConfigMap or Secret that valuesFrom or substituteFrom
reads, the API versions a chart's .Capabilities consulted: read again
every --inputs-interval), or every
--full-resync. A failed app
is retried with exponential backoff while the others go on.

With --listen it serves POST /webhook (GitHub, GitLab and Gitea push
events, verified with --webhook-secret-file), /metrics, /healthz and
/readyz. With --leader-elect only the holder of a Lease in
--leader-election-namespace reconciles. With --shard, replicas of one
--shard-group share the apps instead, each delivering its own (rendezvous
hashing over the replicas whose Leases are renewed); the apps of a replica
that stops are taken by the others within --shard-lease-duration, and an
app is delivered once per commit. Each app's status is in the
ConfigMap deliver-status of --inventory-namespace (past 400 apps, also in
deliver-status-1, -2, ...; deliver status prints them all), and Events of applies, failures and hooks are recorded on each app's
inventory Secret. --suspend, --suspend-all or the annotation
deliver.dev/suspend=true on an app's inventory Secret pause delivery; the
same annotation on the ConfigMap deliver-control pauses every app without a
restart, and changing its annotation deliver.dev/requested-at asks for a
fetch now (a standby replica that receives a webhook forwards it that way).
Changing deliver.dev/reconcile-requested-at on an app's inventory Secret
(deliver reconcile-app, the web view's "reconcile now") asks for a fetch
and a run of that app even when it is up to date, once per value; the
value served is the app's lastHandledRequest in its status.

With several --env (repeated or comma-separated), or with --clusters, each
environment is delivered to its own cluster: the one its kubeconfigSecret
in deliver.yaml names (a Secret in --inventory-namespace unless it says
otherwise), or this reconciler's own. The repository is fetched once for
all; each environment has its own engine, backoff and status ConfigMap
(deliver-status.<env>, read with deliver status --env), and its metrics
carry an env label; a cluster that cannot be reached holds up only its own
apps. With --leader-elect each environment has its own Lease
(deliver-reconcile.<env>); with --shard each environment's apps are shared
among the replicas whose engine of it runs (see docs/clusters.md).

With --once it fetches once, delivers the apps that are due (new commit,
drift, full resync), waits for them and exits: 0 when every app is
delivered, 1 when one failed. It prints a summary: the apps per result,
then the apps a change window held (which window, until when) and the
pinned apps it did not advance to the head. Use it in CI or a CronJob
next to, or instead of, the long-running reconciler.

With --ui-addr it serves the web view of its apps (deliver ui's pages, with
the plan of each run and live updates as runs start and end), off by
default: reach it with kubectl port-forward. Users sign in with a token
that the cluster checks, and see the apps whose inventory Secret they may
get (--ui-auth token, the default). --ui-actions adds "reconcile now",
"pin" and "unpin", for users who may patch the inventory Secret. With
several --env or --clusters the view shows every environment, each read in
the cluster its engine delivers to, whose API server checks who may see
and act on its apps. See docs/ui.md and docs/ui-auth.md.`,
		Example: `  deliver reconcile --repo https://git.example.com/team/deploy.git --ref main --env prod \
    --webhook-secret-file /etc/deliver/webhook-secret --listen :8080 --leader-elect
  deliver reconcile --repo https://git.example.com/team/deploy.git --env staging --env prod --listen :8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.opts.Repo == "" {
				return errors.New("--repo is required: the reconciler follows a git repository")
			}
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			cfg, err := f.opts.Kube("")
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			// client-go's leader election logs through klog: into the
			// same structured log.
			klog.SetSlogLogger(f.opts.Log)
			if pprofAddr != "" {
				if err := servePprof(cmd.Context(), pprofAddr, f.opts.Log); err != nil {
					return err
				}
			}
			o.Pipeline, o.Config, o.Log = f.opts, cfg, f.opts.Log
			several := clusters || len(envs.list) > 1
			if several && len(envs.list) == 0 {
				return errors.New("--clusters needs the environments to deliver: --env")
			}
			if uiAddr != "" {
				return reconcileWithView(cmd.Context(), ui.ViewOptions{
					Reconcile: o, Environments: envs.list, Clusters: clusters, Actions: uiActions,
				}, uiAddr, uiAuth, cmd.OutOrStdout())
			}
			// Several clusters (issue #20).
			if several {
				c, err := reconcile.NewClusters(o, envs.list)
				if err != nil {
					return err
				}
				err = c.Run(cmd.Context())
				if o.Once {
					for _, st := range c.Statuses() {
						printOnceSummary(cmd.OutOrStdout(), st)
					}
				}
				return err
			}
			r, err := reconcile.New(o)
			if err != nil {
				return err
			}
			err = r.Run(cmd.Context())
			if o.Once {
				printOnceSummary(cmd.OutOrStdout(), r.Status())
			}
			return err
		},
	}
	addRunFlags(cmd, f, true)
	// A long-running process's log is its record: info and JSON by default.
	fl := cmd.Flags()
	f.verbose, f.logFormat = true, "json"
	fl.Lookup("verbose").DefValue, fl.Lookup("log-format").DefValue = "true", "json"
	for _, name := range []string{"path", "require-clean"} {
		_ = fl.MarkHidden(name) // the reconciler follows --repo and prints nothing
	}
	fl.DurationVar(&o.Interval, "interval", time.Minute, "how often to fetch the repository")
	fl.DurationVar(&o.FullResync, "full-resync", time.Hour, "deliver every app this long after its last run even when nothing moved (negative: never)")
	fl.DurationVar(&o.InputsInterval, "inputs-interval", 10*time.Minute, "how often to read the versions of the Vault secrets, ConfigMaps and Secrets apps read outside git and the cluster's API versions charts consulted, and deliver those whose inputs changed (negative: never)")
	fl.DurationVar(&o.RetryMax, "retry-max", 5*time.Minute, "longest wait before retrying a failed app")
	fl.BoolVar(&o.DisableSelfHeal, "no-self-heal", false, "only report drift in the cluster; revert it with the next commit or full resync")
	fl.StringVar(&o.WebhookSecretFile, "webhook-secret-file", "", "file holding the push webhook's secret (GitHub/Gitea HMAC key, GitLab token)")
	fl.StringVar(&o.Listen, "listen", "", "address to serve /webhook, /metrics, /healthz and /readyz on, such as :8080")
	fl.BoolVar(&o.LeaderElection.Enabled, "leader-elect", false, "reconcile only while holding a Lease, so that replicas never apply at once")
	fl.StringVar(&o.LeaderElection.Namespace, "leader-election-namespace", "", "namespace of the Lease (default: --inventory-namespace)")
	fl.DurationVar(&o.LeaderElection.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a standby waits before it takes a Lease its holder stopped renewing")
	fl.DurationVar(&o.LeaderElection.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops reconciling")
	fl.DurationVar(&o.LeaderElection.RetryPeriod, "leader-election-retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	fl.BoolVar(&o.Sharding.Enabled, "shard", false, "share the apps with the other replicas of --shard-group, each delivering its own (not with --leader-elect)")
	fl.StringVar(&o.Sharding.Group, "shard-group", "deliver-reconcile", "the replicas that share the apps: one Lease each, labelled "+reconcile.LabelShardGroup)
	fl.StringVar(&o.Sharding.Identity, "shard-identity", "", "this replica's name in its shard group (default: the host name and a random suffix)")
	fl.DurationVar(&o.Sharding.LeaseDuration, "shard-lease-duration", 15*time.Second, "how long the apps of a replica that stopped renewing its Lease wait before the others take them")
	fl.StringSliceVar(&o.Suspend, "suspend", nil, "pause these apps: never deliver them (the annotation "+reconcile.AnnotationSuspend+"=true on an app's inventory Secret does the same without a restart)")
	fl.BoolVar(&o.SuspendAll, "suspend-all", false, "pause every app: fetch, watch and report, but deliver nothing")
	fl.BoolVar(&o.DisableEvents, "no-events", false, "record no Kubernetes Events on the apps' inventory Secrets")
	fl.BoolVar(&o.Once, "once", false, "fetch once, deliver what is due, wait for it and exit (non-zero when an app failed)")
	fl.StringVar(&pprofAddr, "pprof-addr", "", "serve Go's runtime profiles (/debug/pprof/heap, /debug/pprof/profile?seconds=30, ...) on this loopback address, such as 127.0.0.1:6060")
	fl.StringVar(&uiAddr, "ui-addr", "", "serve the web view on this loopback address, such as 127.0.0.1:8081 (reach it with kubectl port-forward; see docs/ui.md)")
	fl.BoolVar(&uiActions, "ui-actions", false, "add the web view's buttons reconcile now, pin and unpin")
	fl.StringVar(&uiAuth, "ui-auth", uiAuthToken, "who may use the web view: token (a bearer token or the sign-in page, checked with a TokenReview, each app with a SubjectAccessReview on its inventory Secret; see docs/ui-auth.md) or none (whoever reaches a loopback address)")
	// Several clusters (issue #20).
	envs = repeatableEnv(fl, &f.opts.Env)
	fl.BoolVar(&clusters, "clusters", false, "deliver each --env to the cluster its kubeconfigSecret in deliver.yaml names (implied by several --env)")
	return cmd
}

// printOnceSummary prints what a reconcile --once pass left: the apps per
// result, then those a change window held and the pinned ones not
// advanced to the head, which a CI log would otherwise show as
// delivered. Every text in it comes from the status, redacted already.
func printOnceSummary(w io.Writer, st reconcile.Status) {
	where := ""
	if st.Env != "" {
		where = "environment " + st.Env + ", "
	}
	counts := map[string]int{}
	var held, pinned []string
	for _, a := range st.Apps {
		counts[a.Result]++
		if a.Held != "" {
			held = append(held, fmt.Sprintf("  %s: %s (at %s)", a.App, oneLine(a.Held), orDash(shortRev(a.Revision))))
		}
		if p := a.Pin; p != nil && p.Revision != st.Revision {
			pinned = append(pinned, fmt.Sprintf("  %s: at %s, pinned to %s by %s: %s", a.App, orDash(shortRev(a.Revision)), shortRev(p.Revision), orDash(p.By), oneLine(p.Reason)))
		}
	}
	results := slices.Sorted(maps.Keys(counts))
	parts := make([]string, 0, len(results)+2)
	for _, r := range results {
		parts = append(parts, fmt.Sprintf("%d %s", counts[r], r))
	}
	parts = append(parts, fmt.Sprintf("%d held by a change window", len(held)), fmt.Sprintf("%d pinned behind the head", len(pinned)))
	fmt.Fprintf(w, "%srevision %s: %d apps: %s\n", where, orDash(shortRev(st.Revision)), len(st.Apps), strings.Join(parts, ", "))
	if st.SourceError != "" {
		fmt.Fprintf(w, "source: %s\n", oneLine(st.SourceError))
	}
	if len(held) > 0 {
		fmt.Fprintf(w, "held by a change window, not delivered:\n%s\n", strings.Join(held, "\n"))
	}
	if len(pinned) > 0 {
		fmt.Fprintf(w, "pinned, not advanced to %s:\n%s\n", shortRev(st.Revision), strings.Join(pinned, "\n"))
	}
}

// Values of --ui-auth.
const (
	// uiAuthToken checks a bearer token (header or sign-in cookie) with a
	// TokenReview and each app with a SubjectAccessReview on its inventory
	// Secret (ui.TokenGuard): what the view in a cluster needs, since
	// whoever may port-forward to the Pod reaches a loopback address too.
	uiAuthToken = "token"
	// uiAuthNone trusts whoever reaches the address (ui.LocalGuard): for a
	// reconciler on one's own machine; loopback addresses only.
	uiAuthNone = "none"
)

// viewAuth is the choice of --ui-auth auth for the reconciler's view on
// addr: none is refused beyond loopback.
func viewAuth(addr, auth string) (ui.ViewAuth, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("--ui-addr %q: %w", addr, err)
	}
	switch auth {
	case uiAuthToken:
		return ui.ViewAuthToken, nil
	case uiAuthNone:
		if !ui.IsLoopback(host) {
			return 0, fmt.Errorf("--ui-addr %q with --ui-auth none: the view would show every app to whoever reaches the port: bind it to loopback (127.0.0.1:8081), or check tokens with --ui-auth token", addr)
		}
		return ui.ViewAuthNone, nil
	default:
		return 0, fmt.Errorf("--ui-auth %q: want %s or %s", auth, uiAuthToken, uiAuthNone)
	}
}

// reconcileWithView runs the reconciler(s) of vo and serves their web
// view on addr, guarded as --ui-auth auth says, until ctx is done.
func reconcileWithView(ctx context.Context, vo ui.ViewOptions, addr, auth string, out io.Writer) error {
	a, err := viewAuth(addr, auth)
	if err != nil {
		return err
	}
	vo.Auth = a
	v, err := ui.NewReconcilerView(vo)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--ui-addr: %w", err)
	}
	err = v.Run(ctx, ln)
	if vo.Reconcile.Once {
		for _, st := range v.Statuses() {
			printOnceSummary(out, st)
		}
	}
	return err
}
