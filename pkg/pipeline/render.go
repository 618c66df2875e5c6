package pipeline

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/object"
	"github.com/deliverhq/deliver/pkg/render"
	"github.com/deliverhq/deliver/pkg/secrets"
	"github.com/deliverhq/deliver/pkg/source"
)

// LoadConfig reads deliver.yaml from the snapshot for Options.Env and
// Options.Apps, or builds the one-app config of Options.Manifests: what a
// run would deliver. The reconciler schedules apps from it.
func LoadConfig(snap *source.Snapshot, opts Options) (*config.Resolved, error) {
	opts.ConfigFile = cmp.Or(opts.ConfigFile, config.FileName)
	opts.App = cmp.Or(opts.App, "default")
	return loadConfig(snap, opts)
}

// loadConfig is LoadConfig for options with their defaults applied.
func loadConfig(snap *source.Snapshot, opts Options) (*config.Resolved, error) {
	if opts.Manifests != "" {
		ns := cmp.Or(opts.Namespace, "default")
		timeout := opts.Apply.Timeout
		if timeout == 0 {
			timeout = 5 * time.Minute
		}
		return &config.Resolved{Apps: []config.ResolvedApp{{
			App:      config.App{Name: opts.App, Namespace: ns, AllowedNamespaces: []string{"*"}, Manifests: &config.Manifests{Path: opts.Manifests}},
			Strategy: "rolling", Prune: true, Wait: true, WaitTimeout: timeout, HookTimeout: 5 * time.Minute,
		}}}, nil
	}
	if opts.Config != nil && opts.Snapshot == snap {
		r := *opts.Config
		return selectApps(&r, opts)
	}
	f, err := snap.Open(opts.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (use -f to deliver a folder of manifests without one)", opts.ConfigFile, err)
	}
	defer f.Close()
	const maxConfig = 1 << 20
	data, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.ConfigFile, err)
	}
	if len(data) > maxConfig {
		return nil, fmt.Errorf("%s: file larger than the limit of %d bytes", opts.ConfigFile, maxConfig)
	}
	c, err := config.Parse(opts.ConfigFile, data)
	if err != nil {
		return nil, err
	}
	r, err := c.ForEnvironment(opts.Env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.ConfigFile, err)
	}
	return selectApps(r, opts)
}

// selectApps keeps the apps of r that opts.Apps names, all when it names
// none, in r's order; r.Apps is replaced, not changed.
func selectApps(r *config.Resolved, opts Options) (*config.Resolved, error) {
	if len(opts.Apps) > 0 {
		want := map[string]bool{}
		for _, a := range opts.Apps {
			want[a] = true
		}
		var kept []config.ResolvedApp
		for _, a := range r.Apps {
			if want[a.Name] {
				kept = append(kept, a)
				delete(want, a.Name)
			}
		}
		for a := range want {
			return nil, fmt.Errorf("%s: unknown app %q", opts.ConfigFile, a)
		}
		r.Apps = kept
	}
	return r, nil
}

// runSecrets holds the secret engines of one run.
type runSecrets struct {
	sops     *secrets.SOPS
	vault    *secrets.Vault
	ownVault bool // logged in for this run, not shared (Options.Vault)
	resolver *secrets.Resolver
	red      *secrets.Redactor
	opts     *Options // for the spans of its operations (trace.go)
}

func (s *runSecrets) redact(v string) string { return s.red.Redact(v) }

func (s *runSecrets) close() {
	if s.vault != nil && s.ownVault {
		s.vault.Close()
	}
}

// newVault logs in to the Vault of opts; nil when VAULT_ADDR is not set.
func newVault(ctx context.Context, opts Options) (*secrets.Vault, error) {
	getenv := opts.Secrets.Getenv
	if getenv("VAULT_ADDR") == "" {
		return nil, nil
	}
	v, err := secrets.NewVault(ctx, secrets.VaultOptions{Env: getenv, Auth: opts.Secrets.VaultAuth, Redactor: opts.Redactor, Logger: opts.Log})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return v, nil
}

func newSecrets(ctx context.Context, opts Options, root string) (*runSecrets, error) {
	s := &runSecrets{red: opts.Redactor, opts: &opts}
	getenv := opts.Secrets.Getenv
	v, owned, err := runVault(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.vault, s.ownVault = v, owned
	sops, err := secrets.NewSOPS(secrets.SOPSOptions{
		AgeKeyFiles: opts.Secrets.AgeKeyFiles, PGPKeyringFiles: opts.Secrets.PGPKeyFiles,
		Vault: s.vault, Env: getenv, Redactor: opts.Redactor,
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("sops: %w", err)
	}
	s.sops = sops
	s.resolver = secrets.NewResolver(secrets.ResolverOptions{Vault: s.vault, SOPS: sops, Root: root, Redactor: opts.Redactor})
	return s, nil
}

// renderAll renders the apps in parallel (the Renderer serialises
// kustomize itself), resolves secrets in what they produced and refuses
// objects that two apps claim. An app whose post-build reads variables
// from the cluster waits for the renders of the apps it depends on, and
// takes a ConfigMap or Secret one of them renders from there (postBuild).
func renderAll(ctx context.Context, opts Options, root string, sec *runSecrets, caps *clusterCaps, key *digestKey, apps []*AppResult) (err error) {
	ctx, span := startSpan(ctx, &opts, "render", attribute.Int(attrAppCount, len(apps)))
	defer func() { endSpan(span, opts.Redactor, err) }()
	var (
		r    render.Renderer
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	rendered := make(map[*AppResult]chan struct{}, len(apps))
	for _, ar := range apps {
		rendered[ar] = make(chan struct{})
	}
	// Started in dependency order (an app's dependencies, transitive,
	// are more than any of theirs), so that an app waiting for its
	// dependencies' renders holds its slot of the group only after
	// every one of them has taken theirs: the waits cannot deadlock.
	order := slices.Clone(apps)
	slices.SortStableFunc(order, func(a, b *AppResult) int { return cmp.Compare(len(a.deps), len(b.deps)) })
	// Every app's error is collected, not only the first: the group's
	// functions return none.
	g.SetLimit(opts.Parallel)
	for _, ar := range order {
		// An unchanged app that reads variables from the cluster waits
		// for its dependencies (whether they render is known once they
		// are done): one may change what it reads.
		if ar.Unchanged && !(ar.app.ReadsClusterVars() && len(ar.deps) > 0) {
			close(rendered[ar])
			continue // planned from its inventory: nothing to render
		}
		g.Go(func() error {
			defer close(rendered[ar])
			var deps depObjects
			if ar.app.ReadsClusterVars() {
				deps = depObjects{deps: ar.deps, rendered: rendered}
			}
			if ar.Unchanged && !depsChange(ctx, &opts, sec, ar, deps) {
				return nil
			}
			ar.Plan, ar.Unchanged = nil, false
			actx, span := startSpan(ctx, &opts, "render", appAttributes(ar)...)
			ar.reads, ar.vault = &render.Reads{}, &vaultRefs{}
			set, err := renderApp(actx, &r, opts, root, sec, ar, caps, deps)
			if err == nil && ar.app.RestartOnConfigChange {
				err = stampConfig(set, ar.app.Namespace, key)
			}
			span.SetAttributes(attribute.Int(attrObjects, objectCount(set)))
			endSpan(span, opts.Redactor, err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("app %s: %w", ar.Name, err))
				return nil
			}
			ar.Set = set
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return checkOwners(apps, runScope(apps))
}

// depsChange reports whether app ar, found unchanged, must render
// because a dependency that renders in this run changes a ConfigMap or
// Secret its post-build reads: the dependency renders it with other data
// than the cluster holds (its version, in ar's inputs, is still the one
// before the dependency is applied). Flux builds such a Kustomization
// after its dependencies, on the same revision. Any doubt renders.
func depsChange(ctx context.Context, opts *Options, sec *runSecrets, ar *AppResult, deps depObjects) bool {
	lookup := sec.lookup(ar.mgr)
	for _, ref := range ar.app.ClusterRefs() {
		obj := refObject(ref, ar.app.Namespace)
		u, dep, err := deps.find(ctx, obj)
		if err != nil {
			opts.Log.Info("inputs unchanged, but a dependency did not render: rendering", "app", ar.Name, "object", obj.String())
			return true
		}
		if u == nil {
			continue // no dependency renders it: the cluster's, as recorded
		}
		want, err := objectData(obj, u, sec)
		var have map[string]string
		if err == nil && lookup != nil {
			_, have, err = liveData(ctx, lookup.Client, obj, sec)
		}
		if err != nil || lookup == nil || !maps.Equal(want, have) {
			opts.Log.Info("inputs unchanged, but a dependency changes what the post-build reads: rendering", "app", ar.Name, "dependency", dep, "object", obj.String())
			return true
		}
	}
	return false
}

// runScope is how the cross-app check tells cluster-scoped kinds: from the
// cluster's discovery when the run has one (diff, apply), from the built-in
// table otherwise (render), and from the CRDs the apps render in both.
func runScope(apps []*AppResult) scopeFunc {
	var all []*unstructured.Unstructured
	for _, ar := range apps {
		if ar.Set == nil {
			continue
		}
		for _, o := range ar.Set.Objects {
			all = append(all, o.Unstructured)
		}
	}
	crds := crdScopes(all)
	for _, ar := range apps {
		if ar.mgr != nil {
			return mapperScope(ar.mgr.RESTMapper(), crds)
		}
	}
	return builtinScope(crds)
}

// checkOwners refuses objects that two apps declare. Two apps owning one
// object would take it from each other on every run (its LabelApp flips)
// and prune each other's work. A cluster-scoped object is one object
// whatever namespace its apps default to, and whatever namespace a
// template wrote into it (the server ignores it).
func checkOwners(apps []*AppResult, scope scopeFunc) error {
	type owner struct {
		app    string
		origin object.Origin
	}
	owners := map[object.ID]owner{}
	var errs []error
	for _, ar := range apps {
		if ar.Set == nil {
			// Not rendered (unchanged inputs): its objects were checked
			// when it was, and a plan refuses an object another app
			// owns in the cluster.
			continue
		}
		for _, o := range ar.Set.Objects {
			id := o.ID()
			namespaced, err := scope(id.GroupKind())
			if err != nil {
				return fmt.Errorf("%s (%s): %w", id, o.Origin, err)
			}
			switch {
			case !namespaced:
				id.Namespace = ""
			case id.Namespace == "":
				id.Namespace = ar.Namespace
			}
			if prev, ok := owners[id]; ok && prev.app != ar.Name {
				errs = append(errs, fmt.Errorf("%s: declared by two apps, %s and %s (%s; %s): an object belongs to one app", id, prev.app, ar.Name, prev.origin, o.Origin))
				continue
			}
			owners[id] = owner{ar.Name, o.Origin}
		}
	}
	return errors.Join(errs...)
}

// lookup serves the Helm lookups of an app whose run reads the cluster
// (diff, apply: mgr is set), as its identity, registering the values of
// the Secrets it returns; nil for render, whose lookups find nothing, as
// in helm template.
func (s *runSecrets) lookup(mgr *apply.Manager) *render.Lookup {
	if mgr == nil {
		return nil
	}
	mapper, dyn, err := mgr.Reader()
	if err != nil {
		return nil // the app's requests fail with it, when it plans
	}
	return &render.Lookup{Mapper: mapper, Client: dyn, Seen: func(u *unstructured.Unstructured) {
		if gvk := u.GroupVersionKind(); gvk.Group == "" && gvk.Kind == "Secret" {
			s.red.AddSecret(u)
		}
	}}
}

// renderApp renders app ar: its source, SOPS Secrets decrypted in place,
// its post-build (reading the cluster through the app's identity, and the
// objects of deps), then the secret refs in what it produced.
func renderApp(ctx context.Context, r *render.Renderer, opts Options, root string, sec *runSecrets, ar *AppResult, caps *clusterCaps, deps depObjects) (*object.Set, error) {
	a, reads, vault, lookup := ar.app, ar.reads, ar.vault, sec.lookup(ar.mgr)
	ro := render.Options{
		Root: root, App: a.Name, Namespace: a.Namespace,
		Decrypt: sec.decrypt, Reads: reads,
	}
	if !(len(a.AllowedNamespaces) == 1 && a.AllowedNamespaces[0] == "*") {
		ro.AllowedNamespaces = a.AllowedNamespaces
	}
	switch {
	case a.Helm != nil:
		noteRefs(reads, vault, map[string]any(a.Helm.Values)) // the map, not config.Values, for noteRefs' type switch
		values, err := sec.resolveValues(ctx, "deliver.yaml: apps."+a.Name+".helm.values", a.Helm.Values)
		if err != nil {
			return nil, err
		}
		if len(a.Helm.ValuesFrom) > 0 {
			// Under the inline values, as Flux merges spec.values over
			// spec.valuesFrom.
			from, err := helmValuesFrom(ctx, a, lookup, deps, sec, reads, &ar.runVars)
			if err != nil {
				return nil, err
			}
			values = render.MergeValues(from, values)
		}
		cluster, err := caps.helm(ctx)
		if err != nil {
			return nil, err
		}
		h := &render.HelmOptions{
			ReleaseName: cmp.Or(a.Helm.ReleaseName, a.Name),
			ValuesFiles: a.Helm.ValuesFiles, SecretValuesFiles: a.Helm.SecretValuesFiles,
			Values: values, Set: a.Helm.Set, IncludeCRDs: a.Helm.IncludeCRDs, KubeVersion: opts.KubeVersion, Cluster: cluster,
			ExtraAPIVersions: opts.APIVersions,
			PostRenderers:    postRenderers(a.Helm.PostRenderers),
			Lookup:           lookup,
			// Refs in values files are resolved before the templates
			// see them (a b64enc of a ref would not be resolvable later).
			ResolveValues: func(ctx context.Context, name string, values map[string]any) (map[string]any, error) {
				noteRefs(reads, vault, values)
				return sec.resolveValues(ctx, name, values)
			},
		}
		if a.Helm.Repository != "" {
			h.Repository, h.Chart, h.Version = a.Helm.Repository, a.Helm.Chart, a.Helm.Version
		} else {
			h.Chart = a.Helm.Chart
		}
		ro.Sources = []render.Source{{Helm: h}}
	case a.Kustomize != nil:
		ro.Sources = []render.Source{{Kustomize: &render.KustomizeOptions{
			Path: a.Kustomize.Path, Additions: kustomizeAdditions(a.Kustomize),
			HelmCluster: caps.helm, HelmKubeVersion: opts.KubeVersion, HelmAPIVersions: opts.APIVersions,
		}}}
	case a.Manifests != nil:
		ro.Sources = []render.Source{{Plain: &render.PlainOptions{Path: a.Manifests.Path}}}
	}
	// Secret manifests encrypted in place with SOPS are decrypted before
	// the post-build substitution, as Flux does.
	ro.DecryptObject = func(ctx context.Context, o *object.Object) (*unstructured.Unstructured, error) {
		objs, err := decryptInPlace(ctx, sec, root, o, a.Manifests != nil)
		if err != nil || len(objs) != 1 {
			return o.Unstructured, err
		}
		return objs[0], nil
	}
	pb, err := postBuild(ctx, a, lookup, deps, sec, reads, &ar.runVars)
	if err != nil {
		return nil, err
	}
	ro.PostBuild = pb
	if m := a.CommonMetadata; m != nil {
		ro.CommonLabels, ro.CommonAnnotations = m.Labels, m.Annotations
	}
	set, err := r.Render(ctx, ro)
	if err != nil {
		return nil, err
	}
	var all []*unstructured.Unstructured
	for _, o := range append(append([]*object.Object(nil), set.Objects...), set.Hooks...) {
		all = append(all, o.Unstructured)
		noteRefs(reads, vault, o.Object)
	}
	if err := sec.resolveObjects(ctx, a.Name, all); err != nil {
		return nil, err
	}
	if err := secrets.CheckDecrypted(all...); err != nil {
		return nil, err
	}
	return set, nil
}

// decryptInPlace decrypts a manifest encrypted in place with SOPS. The
// MAC covers the values in the order the file has them, which decoding
// into a map loses: a plain manifest is decrypted from its file's own
// bytes (its document Origin.Doc), anything else (kustomize output, which
// may have changed the object) from the decoded object.
func decryptInPlace(ctx context.Context, sec *runSecrets, root string, o *object.Object, plain bool) ([]*unstructured.Unstructured, error) {
	if plain && o.Origin.File != "" {
		// Clean as an absolute path first: the file stays under root.
		path := filepath.Join(root, filepath.Clean("/"+o.Origin.File))
		if data, err := os.ReadFile(path); err == nil {
			docs := yamlDocuments(data)
			if o.Origin.Doc < len(docs) {
				return sec.decryptManifest(ctx, o.Origin.String(), docs[o.Origin.Doc])
			}
		}
	}
	data, err := o.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return sec.decryptManifest(ctx, o.Origin.String(), data)
}

// yamlDocuments splits a YAML stream into its documents as the plain
// renderer counts them (Origin.Doc).
func yamlDocuments(data []byte) [][]byte {
	var docs [][]byte
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		b, err := rd.Read()
		if err != nil {
			return docs
		}
		docs = append(docs, b)
	}
}
