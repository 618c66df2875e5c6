package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/deliverhq/deliver/pkg/reconcile"
)

// Several clusters (issue #20): deliver status --env.

// readEnvStatus reads the status a multi-cluster reconciler keeps of
// environment env in ns of its own cluster. The apps' inventories are in
// the environment's cluster, not read here: deliver status with that
// cluster's --context shows them.
func readEnvStatus(ctx context.Context, kc kubernetes.Interface, ns, env string, only []string) (*statusView, error) {
	name := reconcile.EnvStatusName(env)
	cm, err := reconcile.ReadStatusNamed(ctx, kc, ns, name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("status: no status of environment %s in %s (ConfigMap %s): is a reconciler with --env %s running there?", env, ns, name, env)
	}
	if err != nil {
		return nil, fmt.Errorf("status: %s/%s: %w", ns, name, err)
	}
	st := &statusView{
		Env:          env,
		Revision:     cm.Annotations[reconcile.AnnotationRevision],
		SourceError:  cm.Annotations[reconcile.AnnotationSourceError],
		Cluster:      cm.Annotations[reconcile.AnnotationCluster],
		ClusterError: cm.Annotations[reconcile.AnnotationClusterError],
	}
	for app, data := range cm.Data {
		if len(only) > 0 && !slices.Contains(only, app) {
			continue
		}
		var as reconcile.AppStatus
		if err := json.Unmarshal([]byte(data), &as); err != nil {
			return nil, fmt.Errorf("status: %s/%s key %s: %w", ns, name, app, err)
		}
		v := appStatusView{App: app, Reconciler: &as, Suspended: as.Suspended}
		if as.Result == "succeeded" || as.Result == "failed" {
			v.Result, v.Time = as.Result, as.LastRun
		}
		v.Revision = as.Revision
		st.Apps = append(st.Apps, v)
	}
	slices.SortFunc(st.Apps, func(a, b appStatusView) int { return strings.Compare(a.App, b.App) })
	return st, nil
}

// statusEnvs lists the environments whose status a multi-cluster
// reconciler keeps in ns.
func statusEnvs(ctx context.Context, kc kubernetes.Interface, ns string) ([]string, error) {
	cms, err := kc.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: reconcile.LabelStatusEnv})
	if err != nil {
		return nil, fmt.Errorf("status: environments in %s: %w", ns, err)
	}
	var envs []string
	for _, cm := range cms.Items {
		if e := cm.Labels[reconcile.LabelStatusEnv]; cm.Name == reconcile.EnvStatusName(e) {
			envs = append(envs, e)
		}
	}
	slices.Sort(envs)
	return envs, nil
}

// printClusters prints the environment and its cluster, or the
// environments there are.
func printClusters(w io.Writer, st *statusView) {
	if st.Env != "" {
		fmt.Fprintf(w, "environment %s, cluster: %s", st.Env, orDash(st.Cluster))
		if st.ClusterError != "" {
			fmt.Fprintf(w, ": %s", oneLine(st.ClusterError))
		}
		fmt.Fprintln(w)
	}
	if len(st.Envs) > 0 {
		fmt.Fprintf(w, "a multi-cluster reconciler reports environments %s here: deliver status --env NAME\n", strings.Join(st.Envs, ", "))
	}
}
