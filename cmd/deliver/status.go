package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/reconcile"
)

// appStatusView is one app in deliver status: the last run recorded in
// its inventory, whoever ran it (the reconciler, CI or a laptop), and
// what the reconciler says of it, if one runs.
type appStatusView struct {
	App string `json:"app"`
	// Revision, Time, Result and Message are the inventory's: the last
	// run that reached the cluster.
	Revision string    `json:"revision,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Result   string    `json:"result,omitempty"`
	Message  string    `json:"message,omitempty"`
	// Suspended: the app's inventory Secret carries the suspend
	// annotation, or the reconciler reports it suspended (by deliver.yaml,
	// its --suspend flags or deliver-control).
	Suspended bool `json:"suspended,omitempty"`
	// Pin is the app's pin (deliver pin, rollback): who held it at
	// which revision, when and why.
	Pin *apply.Pin `json:"pin,omitempty"`
	// Run is what the app's lock says: a run under way, or one killed
	// before it finished; absent when the lock is free.
	Run *apply.RunState `json:"run,omitempty"`
	// Reconciler is the reconciler's status of the app, from the
	// ConfigMap deliver-status; absent when no reconciler reported it.
	Reconciler *reconcile.AppStatus `json:"reconciler,omitempty"`
}

type statusView struct {
	// Revision and SourceError are the reconciler's last fetch.
	Revision    string `json:"revision,omitempty"`
	SourceError string `json:"sourceError,omitempty"`
	// PausedAll: the ConfigMap deliver-control pauses every app.
	PausedAll bool            `json:"pausedAll,omitempty"`
	Apps      []appStatusView `json:"apps"`

	// Several clusters (issue #20): with --env, the environment, its
	// cluster and why it cannot be reached; without, the environments
	// whose status a multi-cluster reconciler keeps here.
	Env          string   `json:"env,omitempty"`
	Cluster      string   `json:"cluster,omitempty"`
	ClusterError string   `json:"clusterError,omitempty"`
	Envs         []string `json:"envs,omitempty"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var (
		ns     string
		env    string
		apps   []string
		output *outputFormat
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print each app's last applied revision, time, result and message",
		Long: `status reads the inventory Secrets of --inventory-namespace, which every
deliver apply (CLI, CI or reconciler) writes, and the reconciler's ConfigMap
deliver-status there, and prints one line per app. RESULT is the last run
that reached the cluster; RECONCILER is what the reconciler says now
(running, waiting, failed before any write such as Vault down, ...); the
message is the reconciler's when it has one, else the inventory's. Secret
values never show: both sources are redacted when written.`,
		Example: `  deliver status
  deliver status --inventory-namespace deliver-system -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			cfg.QPS, cfg.Burst = g.qps, g.burst
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("status: client: %w", err)
			}
			sess, err := apply.NewSession(cfg, apply.SessionOptions{})
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			mgr := apply.NewManager(sess, apply.Options{InventoryNamespace: ns})
			var st *statusView
			if env != "" {
				st, err = readEnvStatus(cmd.Context(), kc, ns, env, apps)
			} else {
				st, err = readStatus(cmd.Context(), kc, mgr, ns, apps)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output.is("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(w, st, time.Now())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ns, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets and of the reconciler's status ConfigMap")
	fl.StringSliceVar(&apps, "app", nil, "only these apps")
	fl.StringVar(&env, "env", "", "the status a multi-cluster reconciler (deliver reconcile --clusters) keeps of this environment, in ConfigMap "+reconcile.EnvStatusName("ENV"))
	output = addOutputFlag(cmd, "text", "json")
	return cmd
}

// readStatus merges the inventories and the reconciler's status: the
// apps of either, sorted by name.
func readStatus(ctx context.Context, kc kubernetes.Interface, mgr *apply.Manager, ns string, only []string) (*statusView, error) {
	secrets, err := kc.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: apply.LabelInventory})
	if err != nil {
		return nil, fmt.Errorf("status: inventories in %s: %w", ns, err)
	}
	views := map[string]*appStatusView{}
	view := func(app string) *appStatusView {
		if views[app] == nil {
			views[app] = &appStatusView{App: app}
		}
		return views[app]
	}
	wanted := func(app string) bool { return app != "" && (len(only) == 0 || slices.Contains(only, app)) }
	for _, s := range secrets.Items {
		app := s.Labels[apply.LabelInventory]
		if !wanted(app) {
			continue
		}
		inv, err := mgr.ReadInventory(ctx, app)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		v := view(app)
		v.Revision, v.Time, v.Result, v.Message = inv.Revision, inv.Time, inv.Result, inv.Message
		v.Suspended = s.Annotations[reconcile.AnnotationSuspend] == "true"
		v.Pin = inv.Pin
		run, err := mgr.RunState(ctx, app)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		if run.Holder != "" {
			v.Run = &run
		}
	}
	st := &statusView{}
	cm, err := reconcile.ReadStatus(ctx, kc, ns)
	switch {
	case apierrors.IsNotFound(err):
		// No reconciler runs here: the inventories are all there is.
	case err != nil:
		return nil, fmt.Errorf("status: %s/%s: %w", ns, reconcile.StatusConfigMap, err)
	default:
		st.Revision = cm.Annotations[reconcile.AnnotationRevision]
		st.SourceError = cm.Annotations[reconcile.AnnotationSourceError]
		for app, data := range cm.Data {
			if !wanted(app) {
				continue
			}
			var as reconcile.AppStatus
			if err := json.Unmarshal([]byte(data), &as); err != nil {
				return nil, fmt.Errorf("status: %s/%s key %s: %w", ns, reconcile.StatusConfigMap, app, err)
			}
			v := view(app)
			v.Reconciler = &as
			v.Suspended = v.Suspended || as.Suspended
		}
	}
	ctl, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, reconcile.ControlConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("status: %s/%s: %w", ns, reconcile.ControlConfigMap, err)
	default:
		st.PausedAll = ctl.Annotations[reconcile.AnnotationSuspend] == "true"
	}
	for _, v := range views {
		v.Suspended = v.Suspended || st.PausedAll
		st.Apps = append(st.Apps, *v)
	}
	if st.Revision == "" {
		if st.Envs, err = statusEnvs(ctx, kc, ns); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(st.Apps, func(a, b appStatusView) int { return strings.Compare(a.App, b.App) })
	return st, nil
}

func printStatus(w io.Writer, st *statusView, now time.Time) error {
	printClusters(w, st)
	if st.Revision != "" || st.SourceError != "" {
		fmt.Fprintf(w, "reconciler at %s", shortRev(st.Revision))
		if st.SourceError != "" {
			fmt.Fprintf(w, ": fetch failed: %s", oneLine(st.SourceError))
		}
		fmt.Fprintln(w)
	}
	if st.PausedAll {
		fmt.Fprintf(w, "every app paused: annotation %s=true on configmap %s\n", reconcile.AnnotationSuspend, reconcile.ControlConfigMap)
	}
	if len(st.Apps) == 0 {
		fmt.Fprintln(w, "no apps delivered yet")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tREVISION\tAPPLIED\tAGE\tRESULT\tRECONCILER\tSUSPENDED\tMESSAGE")
	for _, a := range st.Apps {
		applied, age := "-", "-"
		if !a.Time.IsZero() {
			applied, age = a.Time.UTC().Format(time.RFC3339), now.Sub(a.Time).Round(time.Second).String()
		}
		rec, msg := "-", a.Message
		if a.Reconciler != nil {
			rec = a.Reconciler.Result
			if a.Reconciler.Failures > 0 {
				rec = fmt.Sprintf("%s(%d)", rec, a.Reconciler.Failures)
			}
			if a.Reconciler.Message != "" && a.Reconciler.Result != apply.ResultSucceeded {
				msg = a.Reconciler.Message
			}
			if len(a.Reconciler.Drift) > 0 && msg == "" {
				msg = fmt.Sprintf("drift: %s", strings.Join(a.Reconciler.Drift, ", "))
			}
			if a.Reconciler.Held != "" { // a change window (docs/windows.md)
				rec, msg = rec+",held", a.Reconciler.Held
			}
		}
		result := a.Result
		switch {
		case a.Run != nil && a.Run.UnderWay():
			result, msg = apply.ResultApplying, fmt.Sprintf("run under way: %s since %s", a.Run.Holder, a.Run.Since.Format(time.RFC3339))
		case a.Run != nil && msg == "":
			msg = fmt.Sprintf("a run by %s (started %s) was killed before it finished; the next run takes over", a.Run.Holder, a.Run.Since.Format(time.RFC3339))
		}
		suspended := ""
		if a.Suspended {
			suspended = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.App, orDash(shortRev(a.Revision)), applied, age, orDash(result), rec, orDash(suspended), oneLine(msg))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printPins(w, st.Apps)
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line and of a readable length; -o
// json has the whole message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
