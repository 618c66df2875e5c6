package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/window"
)

// Resolved is the config for one environment: defaults and overrides
// applied, disabled apps left out.
type Resolved struct {
	// Environment is the environment name, empty for none.
	Environment string
	// Context is the kubeconfig context, empty for the current one.
	Context string
	// Apps in the order of deliver.yaml.
	Apps []ResolvedApp

	// Change windows (docs/windows.md).
	// Windows are every window of deliver.yaml; window.Check picks those
	// of an app and Environment. Not part of an app's inputs: they say
	// when an app is delivered, not what.
	Windows []*window.Window
	// Notifications (issue 20, notify): the providers told of deliveries;
	// all of them, each filtering by app and environment itself.
	Notifications []Notification
	// Several clusters (issue #20): the environment's kubeconfig Secret
	// for the reconciler, nil for the reconciler's own cluster.
	KubeconfigSecret *KubeconfigSecretRef
	// InventoryNamespace is the environment's inventory namespace; ""
	// for the run's (--inventory-namespace).
	InventoryNamespace string
	// PruneApps is Config.PruneApps.
	PruneApps bool
}

// ResolvedApp is an app with every setting decided.
type ResolvedApp struct {
	App
	Strategy string
	Prune    bool
	// DeletionPolicy is MirrorPrune (the default), Delete,
	// WaitForTermination or Orphan.
	DeletionPolicy string
	// CreateNamespace creates the app's namespace when it is missing.
	CreateNamespace bool
	// Force re-creates objects whose change touches an immutable field.
	Force       bool
	Wait        bool
	WaitTimeout time.Duration
	HookTimeout time.Duration
	// RollbackOnFailure restores the previous workloads after a rollout
	// that did not become ready.
	RollbackOnFailure bool

	// RestartOnConfigChange stamps the config digest into the app's
	// workloads' pod templates.
	RestartOnConfigChange bool
}

// ForEnvironment applies an environment's overrides. An empty name means
// no environment; an unknown name is an error listing the known ones.
func (c *Config) ForEnvironment(name string) (*Resolved, error) {
	var env Environment
	if name != "" {
		var ok bool
		if env, ok = c.Environments[name]; !ok {
			known := make([]string, 0, len(c.Environments))
			for n := range c.Environments {
				known = append(known, n)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown environment %q (deliver.yaml defines: %s)", name, strings.Join(known, ", "))
		}
	}
	r := &Resolved{Environment: name, Context: env.Context, KubeconfigSecret: env.KubeconfigSecret, InventoryNamespace: env.InventoryNamespace, PruneApps: c.PruneApps}
	// Change windows (docs/windows.md).
	var err error
	if r.Windows, err = c.compileWindows(); err != nil {
		return nil, err
	}
	r.Notifications = c.Notifications // issue 20, notify
	disabled := map[string]bool{}
	for _, a := range c.Apps {
		o := env.Apps[a.Name]
		if o.Disabled {
			disabled[a.Name] = true
			continue
		}
		a = applyOverride(a, o)
		// The defaults' ignore rules first, then the app's: both apply.
		a.IgnoreDifferences = slices.Concat(c.Defaults.IgnoreDifferences, a.IgnoreDifferences)
		a.HealthChecks = health.Merge(c.Defaults.HealthChecks, a.HealthChecks)
		ra := ResolvedApp{
			App:               a,
			Strategy:          cmp.Or(a.Strategy, c.Defaults.Strategy, "rolling"),
			Prune:             firstBool(a.Prune, c.Defaults.Prune, true),
			DeletionPolicy:    cmp.Or(a.DeletionPolicy, c.Defaults.DeletionPolicy, "MirrorPrune"),
			CreateNamespace:   firstBool(a.CreateNamespace, c.Defaults.CreateNamespace, false),
			Force:             firstBool(a.Force, c.Defaults.Force, false),
			Wait:              firstBool(a.Wait, c.Defaults.Wait, true),
			WaitTimeout:       firstDuration(a.WaitTimeout, c.Defaults.WaitTimeout, 5*time.Minute),
			HookTimeout:       firstDuration(a.HookTimeout, c.Defaults.HookTimeout, 5*time.Minute),
			RollbackOnFailure: firstBool(a.RollbackOnFailure, c.Defaults.RollbackOnFailure, false),

			RestartOnConfigChange: firstBool(a.RestartOnConfigChange, c.Defaults.RestartOnConfigChange, false),
		}
		// Per-app identity: the app's, else the defaults'.
		ra.ServiceAccountName = cmp.Or(ra.ServiceAccountName, c.Defaults.ServiceAccountName)
		if len(ra.AllowedNamespaces) == 0 {
			ra.AllowedNamespaces = []string{ra.Namespace}
		}
		r.Apps = append(r.Apps, ra)
	}
	for _, a := range r.Apps {
		for _, d := range a.DependsOn {
			if disabled[d] {
				return nil, fmt.Errorf("environment %s: app %s depends on %s, which is disabled there", name, a.Name, d)
			}
		}
	}
	return r, nil
}

func applyOverride(a App, o Override) App {
	if o.Namespace != "" {
		a.Namespace = o.Namespace
		a.AllowedNamespaces = nil // follow the new namespace unless listed again
	}
	if o.Strategy != "" {
		a.Strategy = o.Strategy
	}
	if o.DeletionPolicy != "" {
		a.DeletionPolicy = o.DeletionPolicy
	}
	if o.CreateNamespace != nil {
		a.CreateNamespace = o.CreateNamespace
	}
	if o.Suspend != nil {
		a.Suspend = *o.Suspend
	}
	if o.Force != nil {
		a.Force = o.Force
	}
	if len(o.WaitFor) > 0 {
		a.WaitFor = slices.Concat(a.WaitFor, o.WaitFor)
	}
	if o.ServiceAccountName != "" {
		a.ServiceAccountName = o.ServiceAccountName
	}
	if o.Path != "" {
		switch {
		case a.Kustomize != nil:
			k := *a.Kustomize
			k.Path = o.Path
			a.Kustomize = &k
		case a.Manifests != nil:
			m := *a.Manifests
			m.Path = o.Path
			a.Manifests = &m
		}
	}
	if o.Kustomize != nil && a.Kustomize != nil {
		k := *a.Kustomize
		k.KustomizeFields = k.Merge(*o.Kustomize)
		a.Kustomize = &k
	}
	if o.CommonMetadata != nil {
		a.CommonMetadata = a.CommonMetadata.Merge(o.CommonMetadata)
	}
	if len(o.Substitute) > 0 {
		pb := PostBuild{}
		if a.PostBuild != nil {
			pb = *a.PostBuild
		}
		pb.Substitute = maps.Clone(pb.Substitute)
		if pb.Substitute == nil {
			pb.Substitute = map[string]string{}
		}
		maps.Copy(pb.Substitute, o.Substitute)
		a.PostBuild = &pb
	}
	if a.Helm != nil {
		h := *a.Helm
		h.ValuesFiles = append(append([]string(nil), h.ValuesFiles...), o.ValuesFiles...)
		h.SecretValuesFiles = append(append([]string(nil), h.SecretValuesFiles...), o.SecretValuesFiles...)
		h.Set = append(append([]string(nil), h.Set...), o.Set...)
		h.ValuesFrom = slices.Concat(h.ValuesFrom, o.ValuesFrom)
		h.Values = mergeMaps(h.Values, o.Values)
		a.Helm = &h
	}
	return a
}

// mergeMaps merges b over a recursively, as Helm's CLI merges two values
// files (-f a -f b). It is not chartutil.MergeTables, which writes into
// its arguments and logs the values it cannot merge (a secret value
// among them) with the standard logger. TestInlineValuesReadAsHelm
// compares it with Helm's merge (values.Options.MergeValues).
func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func firstBool(a, b *bool, def bool) bool {
	if a != nil {
		return *a
	}
	if b != nil {
		return *b
	}
	return def
}

func firstDuration(a, b Duration, def time.Duration) time.Duration {
	if a.Duration != 0 {
		return a.Duration
	}
	if b.Duration != 0 {
		return b.Duration
	}
	return def
}

// Dependencies returns the apps of r that app name depends on, directly
// or through others of r, in r's order. An app that is not in r (left out
// by a selection) ends its chain: its own dependencies are not known.
func (r *Resolved) Dependencies(name string) []string {
	byName := make(map[string]*ResolvedApp, len(r.Apps))
	for i := range r.Apps {
		byName[r.Apps[i].Name] = &r.Apps[i]
	}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		a, ok := byName[n]
		if !ok {
			return
		}
		for _, d := range a.DependsOn {
			if _, ok := byName[d]; ok && !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(name)
	var out []string
	for _, a := range r.Apps {
		if seen[a.Name] {
			out = append(out, a.Name)
		}
	}
	return out
}

// Levels groups apps by dependency depth: every app's dependencies are in
// earlier levels, so the apps of one level can be delivered in parallel.
// Validate has ruled out cycles.
func (r *Resolved) Levels() [][]ResolvedApp {
	level := map[string]int{}
	byName := map[string]ResolvedApp{}
	for _, a := range r.Apps {
		byName[a.Name] = a
	}
	var depth func(string) int
	depth = func(n string) int {
		if l, ok := level[n]; ok {
			return l
		}
		l := 0
		for _, d := range byName[n].DependsOn {
			if dl := depth(d) + 1; dl > l {
				l = dl
			}
		}
		level[n] = l
		return l
	}
	var out [][]ResolvedApp
	for _, a := range r.Apps {
		l := depth(a.Name)
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], a)
	}
	return out
}
