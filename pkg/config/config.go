// Package config reads deliver.yaml: the apps of a repository, how each is
// rendered and delivered, and the environments that override them. The same
// file drives the laptop diff, the CI step and the in-cluster reconciler.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/deliverhq/deliver/pkg/health"
	"github.com/deliverhq/deliver/pkg/object"
)

// The schema version this package reads.
const (
	APIVersion = "deliver.dev/v1alpha1"
	Kind       = "Config"
	// FileName is where deliver looks for the config in a repository.
	FileName = "deliver.yaml"
)

// Config is the content of deliver.yaml.
type Config struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion" jsonschema:"enum=deliver.dev/v1alpha1"`
	Kind       string `yaml:"kind" json:"kind" jsonschema:"enum=Config"`
	// Defaults apply to every app that does not set the field itself.
	Defaults Defaults `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	// Apps are delivered in dependsOn order; independent apps in parallel.
	Apps []App `yaml:"apps" json:"apps" jsonschema:"minItems=1"`
	// Environments override apps per target (staging, prod, ...).
	Environments map[string]Environment `yaml:"environments,omitempty" json:"environments,omitempty"`

	// Change windows (docs/windows.md).
	// Windows hold deliveries in a freeze: the reconciler does not deliver
	// an app while a deny window concerning it is active (or, when allow
	// windows concern it, while none of them is), and deliver apply
	// refuses unless --ignore-windows.
	Windows []Window `yaml:"windows,omitempty" json:"windows,omitempty"`
	// Notifications (issue 20, notify): commit statuses and messages the
	// reconciler sends after each delivery (docs/notify.md).
	Notifications []Notification `yaml:"notifications,omitempty" json:"notifications,omitempty"`
	// PruneApps removes the apps that leave deliver.yaml, as Flux prunes
	// a Kustomization removed from git: deliver apply (of every app) and
	// the reconciler delete their objects and inventories as deliver
	// delete does, and deliver diff shows it. Only apps this environment
	// of this deliver.yaml of this repository delivered, by the identity
	// their inventories record. Default false: an app that leaves keeps
	// its objects until deliver delete.
	PruneApps bool `yaml:"pruneApps,omitempty" json:"pruneApps,omitempty"`
}

// Defaults are settings shared by all apps.
type Defaults struct {
	// Strategy is rolling (default) or recreate.
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty" jsonschema:"enum=rolling,enum=recreate"`
	// Prune deletes objects that left git. Default true.
	Prune *bool `yaml:"prune,omitempty" json:"prune,omitempty"`
	// DeletionPolicy is what removing an app (deliver delete,
	// pruneApps) does with its objects, as Flux's: MirrorPrune (default)
	// deletes them when the app prunes and leaves them when it does
	// not, Delete deletes them, WaitForTermination deletes them and
	// waits until they are gone, Orphan leaves them. Each run records
	// it in the app's inventory (docs/delete.md).
	DeletionPolicy string `yaml:"deletionPolicy,omitempty" json:"deletionPolicy,omitempty" jsonschema:"enum=MirrorPrune,enum=Delete,enum=WaitForTermination,enum=Orphan"`
	// CreateNamespace creates an app's namespace when it is missing and
	// the app's objects do not include it, as Helm's --create-namespace
	// and Argo CD's CreateNamespace=true do. It is no object of the app:
	// neither labelled nor pruned, and left by the app's removal.
	// Default false: a missing namespace fails the objects in it.
	CreateNamespace *bool `yaml:"createNamespace,omitempty" json:"createNamespace,omitempty"`
	// Force deletes and re-creates an object whose change touches an
	// immutable field (a Job's template, a Service's clusterIP, an
	// immutable ConfigMap's data), as Flux's spec.force and deliver's
	// --recreate; otherwise such a change fails naming the object (the
	// annotation deliver.dev/recreate allows it for one object).
	Force *bool `yaml:"force,omitempty" json:"force,omitempty"`
	// Wait waits for readiness after apply. Default true.
	Wait *bool `yaml:"wait,omitempty" json:"wait,omitempty"`
	// WaitTimeout bounds the wait. Default 5m.
	WaitTimeout Duration `yaml:"waitTimeout,omitempty" json:"waitTimeout,omitempty"`
	// HookTimeout bounds each hook run. Default 5m.
	HookTimeout Duration `yaml:"hookTimeout,omitempty" json:"hookTimeout,omitempty"`
	// RollbackOnFailure restores the previous workloads, and the objects
	// a health check judges, when a rollout does not become ready in time
	// or a health check fails. Needs wait. Default false.
	RollbackOnFailure *bool `yaml:"rollbackOnFailure,omitempty" json:"rollbackOnFailure,omitempty"`

	// RestartOnConfigChange stamps a digest of the ConfigMaps and Secrets
	// of the app that a workload's pod template references into the
	// template (see docs/restart.md), so that the workload rolls when
	// their data changes. Default false.
	RestartOnConfigChange *bool `yaml:"restartOnConfigChange,omitempty" json:"restartOnConfigChange,omitempty"`
	// Per-app identity (see docs/identity.md).
	// ServiceAccountName is the ServiceAccount, in each app's namespace,
	// whose identity the requests about the app's objects take, for the
	// apps that name none themselves. Default: deliver's own identity.
	ServiceAccountName string `yaml:"serviceAccountName,omitempty" json:"serviceAccountName,omitempty"`

	// Ignore rules (docs/ignore.md).
	// IgnoreDifferences are fields of every app's objects that deliver
	// neither diffs, applies nor reverts; an app's own rules add to these.
	IgnoreDifferences []IgnoreRule `yaml:"ignoreDifferences,omitempty" json:"ignoreDifferences,omitempty"`

	// Health checks of custom resources (docs/health.md).
	// HealthChecks decide with CEL whether objects of an apiVersion and
	// kind are ready, instead of kstatus; an app's rule replaces the
	// defaults' rule for the same apiVersion and kind.
	HealthChecks []health.Check `yaml:"healthChecks,omitempty" json:"healthChecks,omitempty"`
}

// IgnoreRule names fields of some objects that others own (an
// autoscaler, a webhook's CA injector), in Argo CD's ignoreDifferences
// shape: deliver neither shows them in a diff nor sends them in an apply,
// and leaves their live values alone.
type IgnoreRule struct {
	// Group is the objects' API group; "" is the core group.
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
	// Kind is the objects' kind. Required.
	Kind string `yaml:"kind" json:"kind"`
	// Name and Namespace narrow the rule to one object; empty matches all.
	Name      string `yaml:"name,omitempty" json:"name,omitempty"`
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// JSONPointers are the fields (RFC 6901); the token * stands for every
	// item of a list, as in /webhooks/*/clientConfig/caBundle.
	JSONPointers []string `yaml:"jsonPointers" json:"jsonPointers" jsonschema:"minItems=1"`
}

// ObjectRef names an object in the cluster.
type ObjectRef struct {
	// APIVersion, Kind and Name are required.
	APIVersion string `yaml:"apiVersion" json:"apiVersion" jsonschema:"minLength=1"`
	Kind       string `yaml:"kind" json:"kind" jsonschema:"minLength=1"`
	Name       string `yaml:"name" json:"name" jsonschema:"minLength=1"`
	// Namespace defaults to the app's; a cluster-scoped kind has none.
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
}

// App is one unit of delivery: a set of objects rendered from one source,
// tracked in one inventory.
type App struct {
	// Name identifies the app: its objects carry it as a label and its
	// inventory is kept under it. A DNS label.
	Name string `yaml:"name" json:"name" jsonschema:"pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"`
	// Namespace is where namespaced objects without one go.
	Namespace string `yaml:"namespace" json:"namespace"`
	// AllowedNamespaces limits the namespaces the app may write; default
	// only Namespace. ["*"] allows all.
	AllowedNamespaces []string `yaml:"allowedNamespaces,omitempty" json:"allowedNamespaces,omitempty"`
	// Exactly one of Helm, Kustomize and Manifests.
	Helm      *Helm      `yaml:"helm,omitempty" json:"helm,omitempty"`
	Kustomize *Kustomize `yaml:"kustomize,omitempty" json:"kustomize,omitempty"`
	Manifests *Manifests `yaml:"manifests,omitempty" json:"manifests,omitempty"`
	// Strategy, Prune, Wait, WaitTimeout and HookTimeout override Defaults.
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty" jsonschema:"enum=rolling,enum=recreate"`
	Prune    *bool  `yaml:"prune,omitempty" json:"prune,omitempty"`
	Wait     *bool  `yaml:"wait,omitempty" json:"wait,omitempty"`
	// CreateNamespace overrides Defaults.CreateNamespace.
	CreateNamespace *bool `yaml:"createNamespace,omitempty" json:"createNamespace,omitempty"`
	// Force overrides Defaults.Force.
	Force *bool `yaml:"force,omitempty" json:"force,omitempty"`
	// DeletionPolicy overrides Defaults.DeletionPolicy.
	DeletionPolicy string   `yaml:"deletionPolicy,omitempty" json:"deletionPolicy,omitempty" jsonschema:"enum=MirrorPrune,enum=Delete,enum=WaitForTermination,enum=Orphan"`
	WaitTimeout    Duration `yaml:"waitTimeout,omitempty" json:"waitTimeout,omitempty"`
	HookTimeout    Duration `yaml:"hookTimeout,omitempty" json:"hookTimeout,omitempty"`
	// RollbackOnFailure overrides Defaults.RollbackOnFailure.
	RollbackOnFailure *bool `yaml:"rollbackOnFailure,omitempty" json:"rollbackOnFailure,omitempty"`
	// DependsOn names apps that must be delivered first.
	DependsOn []string `yaml:"dependsOn,omitempty" json:"dependsOn,omitempty"`
	// Suspend pauses the app from git, as Flux's spec.suspend: diff and
	// apply skip it (and the apps that depend on it) and the reconciler
	// does not run it, until a commit sets it false. Its objects stay as
	// they are, and it stays listed (pruneApps keeps it); render still
	// renders it. Not part of the app's inputs: resuming an app whose
	// inputs did not change costs no render.
	Suspend bool `yaml:"suspend,omitempty" json:"suspend,omitempty"`

	// RestartOnConfigChange overrides Defaults.RestartOnConfigChange.
	RestartOnConfigChange *bool `yaml:"restartOnConfigChange,omitempty" json:"restartOnConfigChange,omitempty"`
	// Per-app identity (see docs/identity.md).
	// ServiceAccountName is a ServiceAccount in the app's namespace: every
	// request about the app's objects (dry runs, applies, hooks, waits,
	// prunes, reads) impersonates system:serviceaccount:<namespace>:<name>,
	// as Flux's spec.serviceAccountName does; deliver's own identity keeps
	// only its bookkeeping (inventory, lock, status). Overrides
	// defaults.serviceAccountName.
	ServiceAccountName string `yaml:"serviceAccountName,omitempty" json:"serviceAccountName,omitempty"`

	// Ignore rules (docs/ignore.md).
	// IgnoreDifferences add to Defaults.IgnoreDifferences for this app.
	IgnoreDifferences []IgnoreRule `yaml:"ignoreDifferences,omitempty" json:"ignoreDifferences,omitempty"`

	// Health checks of custom resources (docs/health.md).
	// HealthChecks are added to Defaults.HealthChecks, replacing the
	// defaults' rule for the same apiVersion and kind. After
	// ForEnvironment they are the merged list.
	HealthChecks []health.Check `yaml:"healthChecks,omitempty" json:"healthChecks,omitempty"`
	// WaitFor are objects that are not the app's (a Secret cert-manager
	// issues, a Deployment an operator makes) whose readiness each run
	// waits for after applying, even without wait, as Flux's
	// Kustomization healthChecks (docs/health.md).
	WaitFor []ObjectRef `yaml:"waitFor,omitempty" json:"waitFor,omitempty"`

	// PostBuild substitutes ${var} in the objects of a kustomize or
	// manifests app, as Flux's spec.postBuild (docs/postbuild.md).
	PostBuild *PostBuild `yaml:"postBuild,omitempty" json:"postBuild,omitempty"`
	// CommonMetadata are labels and annotations set on every object of a
	// kustomize or manifests app after the post-build (replacing those of
	// the same key; selectors and templates untouched), as Flux's
	// spec.commonMetadata.
	CommonMetadata *CommonMetadata `yaml:"commonMetadata,omitempty" json:"commonMetadata,omitempty"`
}

// CommonMetadata are labels and annotations for every object of an app.
type CommonMetadata struct {
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty" json:"annotations,omitempty"`
}

// Helm renders a chart.
type Helm struct {
	// Chart is a path in the repository, or a chart name with Repository.
	Chart string `yaml:"chart" json:"chart"`
	// Repository is a chart repository URL or an oci:// reference.
	Repository string `yaml:"repository,omitempty" json:"repository,omitempty"`
	// Version of a chart from a repository.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// ReleaseName defaults to the app name.
	ReleaseName string `yaml:"releaseName,omitempty" json:"releaseName,omitempty"`
	// ValuesFiles are merged in order after the chart's defaults.
	ValuesFiles []string `yaml:"valuesFiles,omitempty" json:"valuesFiles,omitempty"`
	// SecretValuesFiles are SOPS-encrypted values files, merged after
	// ValuesFiles. Vault refs (ref+vault://...) in any values are resolved.
	SecretValuesFiles []string `yaml:"secretValuesFiles,omitempty" json:"secretValuesFiles,omitempty"`
	// Values are inline values, merged after the files.
	Values Values `yaml:"values,omitempty" json:"values,omitempty"`
	// Set are --set style overrides, applied last.
	Set []string `yaml:"set,omitempty" json:"set,omitempty"`
	// ValuesFrom are ConfigMaps and Secrets of the cluster holding values,
	// as a Flux HelmRelease's valuesFrom: merged in order after the
	// values files, and under Values and Set (docs/migrating.md).
	ValuesFrom []ValuesReference `yaml:"valuesFrom,omitempty" json:"valuesFrom,omitempty"`
	// IncludeCRDs renders the chart's crds/ folder, as --include-crds.
	IncludeCRDs bool `yaml:"includeCRDs,omitempty" json:"includeCRDs,omitempty"`

	// PostRenderers run in order on the chart's rendered manifests (not
	// on its hooks, as Helm 3's --post-renderer), before deliver handles
	// the objects. See docs/postrender.md.
	PostRenderers []PostRenderer `yaml:"postRenderers,omitempty" json:"postRenderers,omitempty"`
}

// Kustomize builds an overlay.
type Kustomize struct {
	// Path is the overlay folder in the repository.
	Path string `yaml:"path" json:"path"`
	// What a Flux Kustomization adds to the overlay (docs/migrating.md).
	KustomizeFields `yaml:",inline"`
}

// KustomizeFields are what a Flux Kustomization adds to the overlay's
// kustomization before the build, with the same meaning
// (docs/migrating.md): TargetNamespace replaces its namespace, NamePrefix
// and NameSuffix its own, Patches and Components are added after its own,
// Images are merged with its own by name. An environment's (Override)
// are merged over the app's (see Merge).
type KustomizeFields struct {
	TargetNamespace string           `yaml:"targetNamespace,omitempty" json:"targetNamespace,omitempty"`
	NamePrefix      string           `yaml:"namePrefix,omitempty" json:"namePrefix,omitempty"`
	NameSuffix      string           `yaml:"nameSuffix,omitempty" json:"nameSuffix,omitempty"`
	Patches         []KustomizePatch `yaml:"patches,omitempty" json:"patches,omitempty"`
	Images          []KustomizeImage `yaml:"images,omitempty" json:"images,omitempty"`
	Components      []string         `yaml:"components,omitempty" json:"components,omitempty"`
	// IgnoreMissingComponents leaves out the Components that do not
	// exist.
	IgnoreMissingComponents bool `yaml:"ignoreMissingComponents,omitempty" json:"ignoreMissingComponents,omitempty"`
}

// Manifests reads plain YAML or JSON manifests.
type Manifests struct {
	// Path is a file or folder in the repository, read recursively.
	Path string `yaml:"path" json:"path"`
}

// Environment overrides apps for one target.
type Environment struct {
	// Context is the kubeconfig context of the target cluster.
	Context string `yaml:"context,omitempty" json:"context,omitempty"`
	// Apps overrides apps by name.
	Apps map[string]Override `yaml:"apps,omitempty" json:"apps,omitempty"`

	// Several clusters (issue #20, see docs/clusters.md).
	// KubeconfigSecret names the Secret holding the kubeconfig of this
	// environment's cluster, for the reconciler (deliver reconcile
	// --clusters); the CLI uses Context instead. Unset: the reconciler's
	// own cluster.
	KubeconfigSecret *KubeconfigSecretRef `yaml:"kubeconfigSecret,omitempty" json:"kubeconfigSecret,omitempty"`
	// InventoryNamespace is the namespace of this environment's inventory
	// Secrets, for the CLI and the reconciler alike (it wins over
	// --inventory-namespace, which stays the reconciler's namespace for
	// status, Leases and kubeconfig Secrets). Two environments that
	// deliver apps of one name to one cluster need one each. Unset:
	// --inventory-namespace.
	InventoryNamespace string `yaml:"inventoryNamespace,omitempty" json:"inventoryNamespace,omitempty"`
}

// KubeconfigSecretRef names a kubeconfig in a Secret of the reconciler's
// own cluster, as Flux's spec.kubeConfig.secretRef does.
type KubeconfigSecretRef struct {
	// Name of the Secret.
	Name string `yaml:"name" json:"name"`
	// Key of the kubeconfig in the Secret's data. Default "value" (Flux's
	// default).
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// Namespace of the Secret. Default: the reconciler's namespace
	// (--inventory-namespace).
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
}

// DefaultKubeconfigKey is the key read when KubeconfigSecretRef.Key is
// empty: Flux's, so that a Secret made for Flux serves deliver as is.
const DefaultKubeconfigKey = "value"

// Override changes an app in one environment.
type Override struct {
	// Namespace replaces the app's namespace.
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// Path replaces the kustomize or manifests path.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// ValuesFiles and SecretValuesFiles are added after the app's.
	ValuesFiles       []string `yaml:"valuesFiles,omitempty" json:"valuesFiles,omitempty"`
	SecretValuesFiles []string `yaml:"secretValuesFiles,omitempty" json:"secretValuesFiles,omitempty"`
	// Values are merged over the app's inline values.
	Values Values `yaml:"values,omitempty" json:"values,omitempty"`
	// Set are added after the app's.
	Set []string `yaml:"set,omitempty" json:"set,omitempty"`
	// ValuesFrom are added after the app's helm.valuesFrom: a cluster's
	// own ConfigMap of settings.
	ValuesFrom []ValuesReference `yaml:"valuesFrom,omitempty" json:"valuesFrom,omitempty"`
	// Strategy replaces the app's strategy.
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty" jsonschema:"enum=rolling,enum=recreate"`
	// DeletionPolicy replaces the app's deletionPolicy.
	DeletionPolicy string `yaml:"deletionPolicy,omitempty" json:"deletionPolicy,omitempty" jsonschema:"enum=MirrorPrune,enum=Delete,enum=WaitForTermination,enum=Orphan"`
	// CreateNamespace replaces the app's createNamespace: a cluster whose
	// namespaces a platform team makes, beside one where the app makes
	// its own.
	CreateNamespace *bool `yaml:"createNamespace,omitempty" json:"createNamespace,omitempty"`
	// Force replaces the app's force in this environment.
	Force *bool `yaml:"force,omitempty" json:"force,omitempty"`
	// Disabled leaves the app out of this environment.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Suspend replaces the app's suspend in this environment: paused in
	// one cluster, delivered in the others.
	Suspend *bool `yaml:"suspend,omitempty" json:"suspend,omitempty"`
	// WaitFor are added to the app's waitFor in this environment: an
	// object only one cluster has (its cert-manager Secret, an operator's
	// Deployment).
	WaitFor []ObjectRef `yaml:"waitFor,omitempty" json:"waitFor,omitempty"`
	// Substitute are post-build variables merged over the app's
	// postBuild.substitute in this environment (a cluster's name, its
	// region): the app's own file stays the same for every cluster.
	Substitute map[string]string `yaml:"substitute,omitempty" json:"substitute,omitempty"`

	// Per-app identity (see docs/identity.md).
	// ServiceAccountName replaces the app's ServiceAccount in this
	// environment.
	ServiceAccountName string `yaml:"serviceAccountName,omitempty" json:"serviceAccountName,omitempty"`

	// Kustomize are Flux Kustomization fields of a kustomize app for
	// this environment, merged over the app's (KustomizeFields.Merge):
	// a cluster's image tags, patches, target namespace, components.
	Kustomize *KustomizeFields `yaml:"kustomize,omitempty" json:"kustomize,omitempty"`
	// CommonMetadata's labels and annotations are merged over the app's
	// in this environment.
	CommonMetadata *CommonMetadata `yaml:"commonMetadata,omitempty" json:"commonMetadata,omitempty"`
}

// Duration is a Go duration written as a string ("90s", "5m").
type Duration struct{ time.Duration }

// UnmarshalYAML parses the duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 90s or 5m", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// IsZero reports an unset duration, for omitempty.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Parse reads deliver.yaml strictly: an unknown field, a wrong type or a
// second document is an error naming the file and line.
func Parse(file string, data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, cleanYAMLError(err))
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: more than one YAML document", file)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return err
}

// Validate checks what the YAML decoder cannot: versions, names, one
// source per app, known strategies, dependsOn and environment references,
// and dependency cycles.
func (c *Config) Validate() error {
	var errs []error
	if c.APIVersion != APIVersion || c.Kind != Kind {
		errs = append(errs, fmt.Errorf("apiVersion/kind must be %s/%s, got %q/%q", APIVersion, Kind, c.APIVersion, c.Kind))
	}
	if len(c.Apps) == 0 {
		errs = append(errs, errors.New("no apps"))
	}
	if err := checkStrategy("defaults", c.Defaults.Strategy); err != nil {
		errs = append(errs, err)
	}
	if err := checkDeletionPolicy("defaults", c.Defaults.DeletionPolicy); err != nil {
		errs = append(errs, err)
	}
	if err := checkServiceAccount("defaults", c.Defaults.ServiceAccountName); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkIgnore("defaults", c.Defaults.IgnoreDifferences)...)
	// Compiled here so that a broken expression fails the parse, not the
	// wait; the pipeline compiles the resolved list again (cheap).
	if _, err := health.Compile("defaults: healthChecks", c.Defaults.HealthChecks); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for i, a := range c.Apps {
		where := fmt.Sprintf("apps[%d] (%s)", i, a.Name)
		errs = append(errs, checkIgnore(fmt.Sprintf("app %q", a.Name), a.IgnoreDifferences)...)
		if len(validation.IsDNS1123Label(a.Name)) > 0 || len(a.Name) > 50 {
			errs = append(errs, fmt.Errorf("%s: name must be a DNS label of at most 50 characters", where))
		}
		if names[a.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate app name", where))
		}
		names[a.Name] = true
		if a.Namespace == "" {
			errs = append(errs, fmt.Errorf("%s: namespace is required", where))
		}
		n := 0
		for _, set := range []bool{a.Helm != nil, a.Kustomize != nil, a.Manifests != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("%s: set exactly one of helm, kustomize or manifests", where))
		}
		if a.Helm != nil && a.Helm.Chart == "" {
			errs = append(errs, fmt.Errorf("%s: helm.chart is required", where))
		}
		// Post-renderers (issue 19).
		if a.Helm != nil {
			errs = append(errs, validatePostRenderers(where, a.Helm.PostRenderers)...)
			errs = append(errs, validateValuesFrom(where, a.Helm.ValuesFrom)...)
		}
		errs = append(errs, validatePostBuild(where, a)...)
		if a.Kustomize != nil {
			errs = append(errs, validateKustomize(where, &a.Kustomize.KustomizeFields)...)
		}
		errs = append(errs, validateCommonMetadata(where, a)...)
		if a.Kustomize != nil && a.Kustomize.Path == "" {
			errs = append(errs, fmt.Errorf("%s: kustomize.path is required", where))
		}
		if a.Manifests != nil && a.Manifests.Path == "" {
			errs = append(errs, fmt.Errorf("%s: manifests.path is required", where))
		}
		if err := checkStrategy(where, a.Strategy); err != nil {
			errs = append(errs, err)
		}
		if err := checkDeletionPolicy(where, a.DeletionPolicy); err != nil {
			errs = append(errs, err)
		}
		if err := checkServiceAccount(where, a.ServiceAccountName); err != nil {
			errs = append(errs, err)
		}
		if _, err := health.Compile(fmt.Sprintf("app %q: healthChecks", a.Name), a.HealthChecks); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, checkWaitFor(where, a.WaitFor)...)
	}
	for _, a := range c.Apps {
		for _, d := range a.DependsOn {
			if !names[d] {
				errs = append(errs, fmt.Errorf("app %s: dependsOn: unknown app %q", a.Name, d))
			}
		}
	}
	envNames := make([]string, 0, len(c.Environments))
	for name := range c.Environments {
		envNames = append(envNames, name)
	}
	sort.Strings(envNames)
	for _, name := range envNames {
		// Several clusters (issue #20).
		errs = append(errs, checkKubeconfigSecret(name, c.Environments[name].KubeconfigSecret)...)
		if ns := c.Environments[name].InventoryNamespace; ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
			errs = append(errs, fmt.Errorf("environments.%s.inventoryNamespace %q is not a valid namespace", name, ns))
		}
		for app, o := range c.Environments[name].Apps {
			if !names[app] {
				errs = append(errs, fmt.Errorf("environments.%s.apps: unknown app %q", name, app))
			}
			if err := checkStrategy("environments."+name+".apps."+app, o.Strategy); err != nil {
				errs = append(errs, err)
			}
			if err := checkDeletionPolicy("environments."+name+".apps."+app, o.DeletionPolicy); err != nil {
				errs = append(errs, err)
			}
			if err := checkServiceAccount("environments."+name+".apps."+app, o.ServiceAccountName); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, checkVarNames("environments."+name+".apps."+app+".substitute", o.Substitute)...)
			where := "environments." + name + ".apps." + app
			errs = append(errs, checkWaitFor(where, o.WaitFor)...)
			if i := slices.IndexFunc(c.Apps, func(a App) bool { return a.Name == app }); i >= 0 {
				a := c.Apps[i]
				if a.Helm != nil && len(o.Substitute) > 0 {
					errs = append(errs, fmt.Errorf("%s.substitute: post-build variables apply to kustomize and manifests apps; a Helm chart takes values", where))
				}
				if len(o.ValuesFrom) > 0 && a.Helm == nil {
					errs = append(errs, fmt.Errorf("%s.valuesFrom: applies to Helm apps; app %s is not one", where, app))
				}
				errs = append(errs, validateValuesFrom(where, o.ValuesFrom)...)
				if o.Kustomize != nil && a.Kustomize == nil {
					errs = append(errs, fmt.Errorf("%s.kustomize: applies to kustomize apps; app %s is not one", where, app))
				}
				errs = append(errs, validateKustomize(where, o.Kustomize)...)
				errs = append(errs, validateCommonMetadata(where, App{Helm: a.Helm, CommonMetadata: o.CommonMetadata})...)
			}
		}
	}
	// Change windows (docs/windows.md).
	if _, err := c.compileWindows(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateNotifications(c.Notifications, names, c.Environments)...) // issue 20, notify
	if len(errs) == 0 {
		if cycle := findCycle(c.Apps); cycle != nil {
			errs = append(errs, fmt.Errorf("dependency cycle: %s", strings.Join(cycle, " -> ")))
		}
	}
	return errors.Join(errs...)
}

// checkWaitFor checks that each object of a waitFor list is named.
func checkWaitFor(where string, refs []ObjectRef) []error {
	var errs []error
	for j, r := range refs {
		if r.APIVersion == "" || r.Kind == "" || r.Name == "" {
			errs = append(errs, fmt.Errorf("%s: waitFor[%d]: apiVersion, kind and name are required", where, j))
		}
	}
	return errs
}

// checkIgnore checks ignore rules: a kind, and at least one valid JSON
// pointer each. An unknown kind is no error: its CRD may come later.
func checkIgnore(where string, rules []IgnoreRule) []error {
	var errs []error
	for i, r := range rules {
		at := fmt.Sprintf("%s: ignoreDifferences[%d]", where, i)
		if r.Kind == "" {
			errs = append(errs, fmt.Errorf("%s: kind is required", at))
		}
		if len(r.JSONPointers) == 0 {
			errs = append(errs, fmt.Errorf("%s: jsonPointers: at least one is required", at))
		}
		for j, p := range r.JSONPointers {
			if _, err := object.ParsePointer(p); err != nil {
				errs = append(errs, fmt.Errorf("%s.jsonPointers[%d]: %w", at, j, err))
			}
		}
	}
	return errs
}

func checkStrategy(where, s string) error {
	switch s {
	case "", "rolling", "recreate":
		return nil
	}
	return fmt.Errorf("%s: unknown strategy %q (want rolling or recreate)", where, s)
}

// checkDeletionPolicy checks a deletionPolicy: Flux's four values.
func checkDeletionPolicy(where, s string) error {
	switch s {
	case "", "MirrorPrune", "Delete", "WaitForTermination", "Orphan":
		return nil
	}
	return fmt.Errorf("%s: unknown deletionPolicy %q (want MirrorPrune, Delete, WaitForTermination or Orphan)", where, s)
}

// checkServiceAccount checks a serviceAccountName: a ServiceAccount's
// name is a DNS subdomain (apimachinery's rule, as the API server checks
// it).
func checkServiceAccount(where, name string) error {
	if name == "" {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%s: serviceAccountName %q: %s", where, name, strings.Join(msgs, "; "))
	}
	return nil
}

// findCycle returns a dependency cycle as a path of app names, or nil.
func findCycle(apps []App) []string {
	deps := map[string][]string{}
	for _, a := range apps {
		deps[a.Name] = a.DependsOn
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		state[n] = visiting
		stack = append(stack, n)
		for _, d := range deps[n] {
			switch state[d] {
			case visiting:
				for i, s := range stack {
					if s == d {
						return append(append([]string(nil), stack[i:]...), d)
					}
				}
			case unvisited:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return nil
	}
	for _, a := range apps {
		if state[a.Name] == unvisited {
			if c := visit(a.Name); c != nil {
				return c
			}
		}
	}
	return nil
}
