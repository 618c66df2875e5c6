package ui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/pkg/pin"
	"github.com/deliverhq/deliver/pkg/reconcile"
	"github.com/deliverhq/deliver/pkg/secrets"
)

// LocalOptions configure ServeLocal.
type LocalOptions struct {
	// Config is the cluster to read (the current kubeconfig). Required.
	Config *rest.Config
	// Addr is where to listen; it must be a loopback address. Default
	// "127.0.0.1:8080".
	Addr string
	// Environment names the apps' environment; the status read is then
	// the environment's (reconcile.EnvStatusName) when a multi-cluster
	// reconciler keeps one, else the reconciler's.
	Environment string
	// ClusterName names the cluster on the pages (the kubeconfig context).
	ClusterName string
	// InventoryNamespace holds the inventories and the status. Default
	// "deliver-system".
	InventoryNamespace string
	// Actions turns the guarded buttons on (reconcile now, pin, unpin),
	// done as the kubeconfig's user. Default off.
	Actions bool
	// Redactor masks secret values in every byte served. Default: an
	// empty one.
	Redactor *secrets.Redactor
	// Listening, when set, is called with the URL once the port is open.
	Listening func(url string)
	// Log receives the server's log. Default: discard.
	Log *slog.Logger
	// Environments, when set, are shown together, each read in its own
	// cluster (Sources); Config, Environment, ClusterName and
	// InventoryNamespace are then unused. Actions are done as each
	// cluster's kubeconfig user; pins record the first one's.
	Environments []LocalEnvironment
}

// LocalEnvironment is one environment of a local view of several.
type LocalEnvironment struct {
	// Name is the environment. Required.
	Name string
	// Config is its cluster. Required.
	Config *rest.Config
	// ClusterName names the cluster on the pages (its kubeconfig
	// context).
	ClusterName string
	// InventoryNamespace holds its inventories and status. Default
	// "deliver-system".
	InventoryNamespace string
}

// ErrNotLoopbackAddr is returned by ServeLocal for an address other
// than loopback: the local view has no authentication.
var ErrNotLoopbackAddr = errors.New("the local view listens on loopback only (use kubectl port-forward or ssh -L to reach it from elsewhere)")

// ServeLocal serves the view of `deliver ui` until ctx is done: the
// apps of Config's cluster, read with the kubeconfig's rights, for the
// local user only (LocalGuard).
func ServeLocal(ctx context.Context, opts LocalOptions) error {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8080"
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return fmt.Errorf("ui: address %q: %w", opts.Addr, err)
	}
	if !IsLoopback(host) {
		return fmt.Errorf("ui: address %q: %w", opts.Addr, ErrNotLoopbackAddr)
	}
	envs := opts.Environments
	if len(envs) == 0 {
		envs = []LocalEnvironment{{Name: opts.Environment, Config: opts.Config, ClusterName: opts.ClusterName, InventoryNamespace: opts.InventoryNamespace}}
	}
	var src interface {
		Source
		Actions
	}
	var sources []EnvSource
	for _, e := range envs {
		c, err := localCluster(ctx, e)
		if err != nil {
			return err
		}
		src = c
		sources = append(sources, EnvSource{Environment: e.Name, Source: c, Actions: c})
	}
	if len(opts.Environments) > 0 {
		s, err := NewSources(sources...)
		if err != nil {
			return err
		}
		src = s
	}
	so := Options{Guard: LocalGuard{}, Source: src, Redactor: opts.Redactor, Log: opts.Log}
	if opts.Actions {
		so.Actions = src
		// Pins record the user the API server knows the kubeconfig as.
		if who, err := pin.Who(ctx, envs[0].Config); err == nil {
			so.LocalUser = who
		}
	}
	srv, err := New(so)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("ui: listen: %w", err)
	}
	if opts.Listening != nil {
		opts.Listening("http://" + ln.Addr().String() + "/")
	}
	return srv.Serve(ctx, ln)
}

// localCluster is the Cluster of one environment of the local view.
func localCluster(ctx context.Context, e LocalEnvironment) (*Cluster, error) {
	if e.Config == nil {
		if e.Name != "" {
			return nil, fmt.Errorf("ui: environment %s: a cluster (Config) is required", e.Name)
		}
		return nil, errors.New("ui: a cluster (Config) is required")
	}
	src, err := NewCluster(ClusterOptions{Config: e.Config, Environment: e.Name, ClusterName: e.ClusterName, InventoryNamespace: e.InventoryNamespace})
	if err != nil {
		return nil, err
	}
	if e.Name != "" {
		// A multi-cluster reconciler keeps each environment's status
		// under its own name; a single one under the default.
		if _, err := reconcile.ReadStatusNamed(ctx, src.kube, src.opts.InventoryNamespace, reconcile.EnvStatusName(e.Name)); err == nil {
			src.opts.StatusName = reconcile.EnvStatusName(e.Name)
		}
	}
	return src, nil
}
