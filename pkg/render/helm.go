package render

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/ignore"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"oras.land/oras-go/v2/registry/remote/auth"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// DefaultKubeVersion is the Kubernetes version a chart sees in
// .Capabilities.KubeVersion when HelmOptions.KubeVersion is empty. It is the
// default of the released helm CLI of the same version as the library,
// which takes it from the minor of its k8s.io/client-go (the library alone
// would say v1.20.0).
const DefaultKubeVersion = "v1.37.0"

// DefaultReleaseName is the release name when neither HelmOptions.ReleaseName
// nor HelmOptions.App is set; it is the one `helm template` uses.
const DefaultReleaseName = "release-name"

// DefaultMaxChartSize bounds a chart archive downloaded from a repository
// and a repository index.
const DefaultMaxChartSize = 64 << 20

// ResolveValuesFunc returns values with the secret references they hold
// replaced by the secrets. It must not modify values.
type ResolveValuesFunc func(ctx context.Context, name string, values map[string]any) (map[string]any, error)

// HelmOptions configure Helm.
//
// Values are merged in this order, later ones winning: the chart's own
// values.yaml, ValuesFiles, SecretValuesFiles (decrypted in memory),
// Values, Set, then SetString. Maps are merged key by key; any other value
// replaces the earlier one, as with helm's -f and --set.
type HelmOptions struct {
	// Root is the repository snapshot. Chart (when local) and every values
	// file are paths relative to it and may not leave it, not even through
	// a symlink.
	Root string
	// App is recorded in each object's origin and is the default release
	// name.
	App string
	// Chart is the path of a chart folder or .tgz archive relative to Root,
	// with its dependencies vendored in charts/. When Repository is set it
	// is the chart's name in that repository instead.
	Chart string
	// Repository, when set, is the URL of a chart repository (http:// or
	// https://, serving index.yaml) or an OCI registry location
	// (oci://host/path) from which Chart is fetched at Version. The chart is
	// downloaded into memory; nothing is cached on disk.
	Repository string
	// Version is the chart version to fetch from Repository: an exact
	// version or, for a chart repository, a semver constraint. Required for
	// OCI.
	Version string
	// Username and Password authenticate to Repository. For a chart
	// repository they are sent only to the repository's own host.
	Username, Password string
	// PlainHTTP talks to an OCI registry without TLS.
	PlainHTTP bool
	// HTTPClient fetches from a chart repository or OCI registry. Default
	// http.DefaultClient.
	HTTPClient *http.Client
	// ReleaseName is .Release.Name. Default App, or DefaultReleaseName.
	ReleaseName string
	// Namespace is .Release.Namespace. Default "default", like helm.
	Namespace string
	// ValuesFiles are values files relative to Root, merged in order.
	ValuesFiles []string
	// SecretValuesFiles are SOPS-encrypted values files relative to Root,
	// decrypted with Decrypt and merged in order after ValuesFiles.
	SecretValuesFiles []string
	// Values are inline values merged after the files.
	Values map[string]any
	// Set are helm --set expressions (a.b=c,d[0]=e), applied in order.
	Set []string
	// SetString are helm --set-string expressions, applied after Set.
	SetString []string
	// KubeVersion is .Capabilities.KubeVersion offline (no Cluster), as
	// `helm template --kube-version`. Default DefaultKubeVersion.
	KubeVersion string
	// APIVersions, when not nil, is the complete .Capabilities.APIVersions
	// offline (group/version and group/version/Kind entries). Nil means
	// helm's default set: the API versions built into deliver's
	// Kubernetes client.
	APIVersions []string
	// ExtraAPIVersions are added to the API versions offline, like
	// `helm template --api-versions`.
	ExtraAPIVersions []string
	// Cluster, when set, is the target cluster: the chart's .Capabilities
	// are its version and API versions as `helm install` and `helm
	// upgrade` read them, and KubeVersion, APIVersions and
	// ExtraAPIVersions are not used (helm install ignores
	// --api-versions). Nil: offline, as `helm template`.
	Cluster *Cluster
	// IncludeCRDs renders the CRDs of the chart's crds/ folders (and its
	// subcharts') first, like `helm template --include-crds`. Without it they
	// are left out, as `helm template` does.
	IncludeCRDs bool
	// Decrypt decrypts SecretValuesFiles. Required when there are any.
	Decrypt DecryptFunc
	// Lookup, when set, serves the chart's lookup function from the
	// cluster, as `helm install` does; a chart that looks anything up
	// marks Reads uncertain (the cluster is an input of its render). Nil:
	// lookups find nothing, as in `helm template`.
	Lookup *Lookup
	// ResolveValues, when set, replaces the secret references (such as
	// ref+vault://...) in the content of each values file, and of each
	// secret values file after decryption, before it is merged: a template
	// that transforms a value (b64enc, sha256sum) then sees the secret, not
	// the reference. name is the file's path relative to Root; errors
	// should name it. pkg/secrets' Resolver.ResolveValues is the real
	// implementation. Inline Values and Set are not passed to it.
	ResolveValues ResolveValuesFunc
	// MaxFileSize bounds each values file. Default DefaultMaxFileSize.
	MaxFileSize int64
	// PostRenderers run in order on the chart's manifests (not on its
	// hooks, as Helm 3's --post-renderer), each like `kustomize build` of
	// a kustomization with the chart's output as its resource. Only
	// Renderer.Render runs them.
	PostRenderers []PostRenderer
	// Reads, when set, records the paths read from Root; a chart fetched
	// from Repository at a version that is not exact (a constraint, which
	// a new release of the chart may match) marks it uncertain.
	Reads *Reads

	// loaded, when set, is the chart, fetched already from Repository.
	loaded *chart.Chart
}

// exactVersion matches a chart version that names one release (semver
// 2.0 without ranges or wildcards), unlike a constraint such as ^1.2 or
// 1.x that a new release may match.
var exactVersion = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// Helm renders a chart like `helm template` (client-side only: no cluster
// lookups, no DNS, no plugins) and returns its objects; hooks go to
// Set.Hooks. Each object's Origin.Template is the template that produced
// it, like helm's "# Source:" comments (mychart/templates/x.yaml), and
// Origin.Doc counts that template's documents in the order helm prints
// them (helm sorts documents by kind, so it may differ from the order in
// the template). Post-renderers need a Renderer, which serialises
// kustomize builds: Helm refuses opts with any, Renderer.Render runs them.
func Helm(ctx context.Context, opts HelmOptions) (*object.Set, error) {
	if len(opts.PostRenderers) > 0 {
		return nil, errors.New("helm: post-renderers run through Renderer.Render")
	}
	return (*Renderer)(nil).helm(ctx, opts)
}

// helm renders a chart and runs its post-renderers (see postRender);
// r may be nil when there are none.
func (r *Renderer) helm(ctx context.Context, opts HelmOptions) (*object.Set, error) {
	docs, err := helmDocs(ctx, opts)
	if err != nil {
		return nil, err
	}
	set := &object.Set{}
	if len(opts.PostRenderers) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("helm: %w", err)
		}
		built, err := r.postRender(opts, docs)
		if err != nil {
			return nil, err
		}
		for _, b := range built {
			objs, err := objectsOf(b.origin, b.m)
			if err != nil {
				return nil, fmt.Errorf("helm: after postRenderers: %w", err)
			}
			for _, o := range objs {
				add(set, o)
			}
		}
	}
	counts := map[string]int{}
	for _, d := range docs {
		for _, m := range d.parsed {
			origin := object.Origin{App: opts.App, Template: d.source, Doc: counts[d.source]}
			counts[d.source]++
			if len(opts.PostRenderers) > 0 && !d.hook {
				continue // post-rendered above
			}
			objs, err := objectsOf(origin, m)
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				add(set, o)
			}
		}
	}
	return set, nil
}

// helmDocs renders the chart of opts into its documents, parsed, in the
// order `helm template` prints them.
func helmDocs(ctx context.Context, opts HelmOptions) ([]helmDoc, error) {
	if opts.Chart == "" {
		return nil, errors.New("helm: no chart given")
	}
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.ReleaseName == "" {
		opts.ReleaseName = cmp.Or(opts.App, DefaultReleaseName)
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("helm: open repository root: %w", err)
	}
	defer root.Close()
	fsys := recording(root.FS(), opts.Reads)

	ch := opts.loaded
	switch {
	case ch != nil:
	case opts.Repository != "":
		ch, err = fetchChart(ctx, opts)
	default:
		ch, err = loadLocalChart(fsys, opts.Chart)
	}
	if err != nil {
		return nil, err
	}
	if err := checkChart(ch); err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", opts.Chart, err)
	}
	vals, err := helmValues(ctx, fsys, opts)
	if err != nil {
		return nil, err
	}
	var crds []helmDoc
	if opts.IncludeCRDs {
		// Parsed once: for the capabilities and as the first documents.
		if crds, err = chartCRDs(ch); err != nil {
			return nil, fmt.Errorf("helm: render chart %s: %w", opts.Chart, err)
		}
	}
	caps, err := helmCapabilities(crds, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	docs, err := runHelm(ctx, ch, vals, caps, crds, opts)
	if err != nil {
		return nil, fmt.Errorf("helm: render chart %s: %w", opts.Chart, err)
	}
	return docs, nil
}

// runHelm is the one call into helm's engine: what an install in
// client-side dry run does (`helm template`), with the capabilities given
// rather than helm's defaults, and with opts.Lookup the lookups of an
// install. A panic in helm or in a template function
// becomes an error.
//
// It calls the engine itself instead of action.Install, because the
// install sorts the rendered documents by parsing each of them
// (releaseutil.SortManifests: half of the CPU of a 1,000-object chart),
// and deliver parses each one anyway: it parses once, on every core, and
// sorts and tells hooks apart from what it parsed, as SortManifests does.
// The tests compare the result with the helm CLI's, byte for byte.
func runHelm(ctx context.Context, ch *chart.Chart, vals map[string]any, caps *chartutil.Capabilities, crds []helmDoc, opts HelmOptions) (docs []helmDoc, err error) {
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	if err := chartutil.ValidateReleaseName(opts.ReleaseName); err != nil {
		return nil, fmt.Errorf("release name %q: %w", opts.ReleaseName, err)
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, err
	}
	if v := ch.Metadata.KubeVersion; v != "" {
		opts.Reads.Add(ReadCluster, CapKubeVersion)
		if !chartutil.IsCompatibleRange(v, caps.KubeVersion.String()) {
			return nil, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", v, caps.KubeVersion.String())
		}
	}
	values, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, chartutil.ReleaseOptions{
		Name: opts.ReleaseName, Namespace: opts.Namespace, Revision: 1, IsInstall: true,
	}, caps, false)
	if err != nil {
		return nil, err
	}
	values["Capabilities"] = &capsView{caps: caps, reads: opts.Reads}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var files map[string]string
	if opts.Lookup != nil {
		files, err = engine.RenderWithClientProvider(ch, values, clientProvider{l: opts.Lookup, read: func() {
			opts.Reads.Uncertain("a chart that looks up objects in the cluster")
		}})
	} else {
		var e engine.Engine
		files, err = e.Render(ch, values)
	}
	if err != nil {
		return nil, err
	}
	manifests, hooks, err := sortRendered(splitRendered(files))
	if err != nil {
		return nil, err
	}
	return slices.Concat(crds, manifests, hooks), nil
}

// chartCRDs parses the CRDs of the chart's crds/ folders (and its
// subcharts'), each file whole, as `helm template --include-crds` prints
// them.
func chartCRDs(ch *chart.Chart) ([]helmDoc, error) {
	var crds []helmDoc
	for _, crd := range ch.CRDObjects() {
		d := helmDoc{source: crd.Filename, content: string(crd.File.Data)}
		var err error
		if d.parsed, err = splitParse(crd.File.Data); err != nil {
			return nil, fmt.Errorf("YAML parse error on %s: %w", crd.Filename, err)
		}
		crds = append(crds, d)
	}
	return crds, nil
}

// sortRendered parses the rendered documents (once each, on every core)
// and orders them as releaseutil.SortManifests does: manifests and hooks
// apart, each sorted by kind in install order.
func sortRendered(rendered []helmDoc) (manifests, hooks []helmDoc, err error) {
	parsed, errs := decodeAll(len(rendered), func(i int) (map[string]any, error) {
		return unmarshalObject(installedForm(rendered[i].content))
	})
	for i, d := range rendered {
		if errs[i] != nil {
			return nil, nil, fmt.Errorf("YAML parse error on %s: %w", d.source, errs[i])
		}
		head, err := simpleHead(parsed[i])
		if err != nil {
			return nil, nil, fmt.Errorf("YAML parse error on %s: %w", d.source, err)
		}
		d.parsed, d.kind = []map[string]any{parsed[i]}, head.kind
		events, isHook := head.annotations[helmHookAnnotation]
		switch {
		case !isHook:
			manifests = append(manifests, d)
		case knownHookEvents(events):
			d.hook, d.events = true, events
			hooks = append(hooks, d)
		default:
			// helm skips a hook with an unknown event ("info: skipping
			// unknown hook"): it is neither installed nor printed.
		}
	}
	sortByKind(manifests)
	sortByKind(hooks)
	return manifests, hooks, nil
}

// helmDoc is one document a chart rendered (a whole file for a CRD of its
// crds/ folder), with what it parsed to.
type helmDoc struct {
	source  string // the template, as in helm's "# Source:" comment
	content string
	parsed  []map[string]any // one per YAML document; nil for an empty one
	kind    string
	hook    bool
	events  string // a hook's helm.sh/hook annotation
}

// splitRendered splits the rendered templates into documents as
// releaseutil.SortManifests does: templates in path order, without
// partials (_*), NOTES.txt and empty output, each split with helm's own
// SplitManifests.
func splitRendered(files map[string]string) []helmDoc {
	paths := make([]string, 0, len(files))
	for p, content := range files {
		if strings.HasSuffix(p, "NOTES.txt") || strings.HasPrefix(path.Base(p), "_") || strings.TrimSpace(content) == "" {
			continue
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var docs []helmDoc
	for _, p := range paths {
		entries := releaseutil.SplitManifests(files[p])
		keys := slices.Collect(maps.Keys(entries))
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			docs = append(docs, helmDoc{source: p, content: entries[k]})
		}
	}
	return docs
}

// installedForm is a document as Helm's install decodes it: SplitManifests
// trims each document, and Helm parses it followed by a line break (the
// release manifest writes "%s\n" after each document, and the line reader
// that reads a hook's manifest ends its last line with one). Only a block
// scalar at the end of the document sees the difference: `rules: |` keeps
// its final "\n", as it does in `helm template` and `helm install`.
func installedForm(content string) []byte {
	b := make([]byte, 0, len(content)+1)
	return append(append(b, content...), '\n')
}

// splitParse parses every YAML document of data.
func splitParse(data []byte) ([]map[string]any, error) {
	raws, err := readDocuments(data)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, len(raws))
	for i, raw := range raws {
		if out[i], err = unmarshalObject(raw); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const helmHookAnnotation = "helm.sh/hook"

// helmHead is what releaseutil.SimpleHead reads of a document.
type helmHead struct {
	kind        string
	annotations map[string]string
}

// simpleHead reads the head of a parsed document, refusing what helm's
// SimpleHead refuses to unmarshal: a map or a list where apiVersion, kind,
// metadata.name or an annotation should be a string. Like sigs.k8s.io/yaml
// for a string field, it takes other scalars as strings (`kind: 5`).
func simpleHead(m map[string]any) (helmHead, error) {
	var h helmHead
	str := func(v any, field string) (string, error) {
		switch v := v.(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		case map[string]any, []any:
			return "", fmt.Errorf("%s: %T is not a string", field, v)
		}
		return fmt.Sprint(v), nil
	}
	if _, err := str(m["apiVersion"], "apiVersion"); err != nil {
		return h, err
	}
	var err error
	if h.kind, err = str(m["kind"], "kind"); err != nil {
		return h, err
	}
	switch md := m["metadata"].(type) {
	case nil:
	case map[string]any:
		if _, err := str(md["name"], "metadata.name"); err != nil {
			return h, err
		}
		switch an := md["annotations"].(type) {
		case nil:
		case map[string]any:
			h.annotations = make(map[string]string, len(an))
			for k, v := range an {
				if h.annotations[k], err = str(v, "metadata.annotations."+k); err != nil {
					return h, err
				}
			}
		default:
			return h, fmt.Errorf("metadata.annotations: %T is not a map", an)
		}
	default:
		return h, fmt.Errorf("metadata: %T is not a map", md)
	}
	return h, nil
}

// knownHookEvents says whether every event of a helm.sh/hook annotation is
// one helm knows.
func knownHookEvents(events string) bool {
	for _, e := range strings.Split(events, ",") {
		switch strings.ToLower(strings.TrimSpace(e)) {
		case "pre-install", "post-install", "pre-delete", "post-delete", "pre-upgrade", "post-upgrade",
			"pre-rollback", "post-rollback", "test", "test-success":
		default:
			return false
		}
	}
	return true
}

// sortByKind orders documents as helm installs them: by kind in
// releaseutil.InstallOrder, then kinds it does not know alphabetically,
// keeping the order of documents of one kind.
func sortByKind(docs []helmDoc) {
	rank := make(map[string]int, len(releaseutil.InstallOrder))
	for i, k := range releaseutil.InstallOrder {
		rank[k] = i
	}
	sort.SliceStable(docs, func(i, j int) bool {
		a, aok := rank[docs[i].kind]
		b, bok := rank[docs[j].kind]
		switch {
		case !aok && !bok:
			return docs[i].kind < docs[j].kind
		case !aok:
			return false
		case !bok:
			return true
		}
		return a < b
	})
}

// checkChart refuses what `helm template` refuses before rendering, and
// values schemas that would make helm read a file or URL.
func checkChart(ch *chart.Chart) error {
	switch ch.Metadata.Type {
	case "", "application":
	default:
		return fmt.Errorf("%s charts are not installable", ch.Metadata.Type)
	}
	// As action.CheckDependencies, which is the only thing deliver would
	// need of helm's action package (and its lint and kube clients).
	var missing []string
	for _, r := range ch.Metadata.Dependencies {
		if !slices.ContainsFunc(ch.Dependencies(), func(d *chart.Chart) bool { return d.Name() == r.Name }) {
			missing = append(missing, r.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("dependencies must be vendored in charts/ (helm dependency build): found in Chart.yaml, but missing in charts/ directory: %s", strings.Join(missing, ", "))
	}
	return checkSchemas(ch)
}

// checkSchemas refuses a values.schema.json (of the chart or a subchart)
// with a $ref or $schema that is not inside the schema itself or a known
// JSON Schema draft: helm's validator would load it from the local disk or
// the network.
func checkSchemas(ch *chart.Chart) error {
	if len(ch.Schema) > 0 {
		var doc any
		if err := json.Unmarshal(ch.Schema, &doc); err != nil {
			return fmt.Errorf("%s: values.schema.json: %w", ch.ChartFullPath(), err)
		}
		if err := checkSchemaRefs(doc); err != nil {
			return fmt.Errorf("%s: values.schema.json: %w", ch.ChartFullPath(), err)
		}
	}
	for _, d := range ch.Dependencies() {
		if err := checkSchemas(d); err != nil {
			return err
		}
	}
	return nil
}

func checkSchemaRefs(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			s, isString := x.(string)
			switch {
			case isString && (k == "$ref" || k == "$dynamicRef"):
				if !strings.HasPrefix(s, "#") {
					return fmt.Errorf("%s %q: only references inside the schema (#...) are allowed", k, s)
				}
			case isString && k == "$schema":
				if !strings.HasPrefix(s, "http://json-schema.org/") && !strings.HasPrefix(s, "https://json-schema.org/") {
					return fmt.Errorf("$schema %q: only the JSON Schema drafts are allowed", s)
				}
			default:
				if err := checkSchemaRefs(x); err != nil {
					return err
				}
			}
		}
	case []any:
		for _, x := range v {
			if err := checkSchemaRefs(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadLocalChart loads a chart folder or archive from fsys (an os.Root), so
// no file of the chart can be outside the repository. Folders are read like
// helm's loader.LoadDir: .helmignore honoured, symlinks followed (inside the
// repository only), irregular files refused.
func loadLocalChart(fsys fs.FS, p string) (*chart.Chart, error) {
	rel, err := cleanRel(p)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %w", err)
	}
	fi, err := fs.Stat(fsys, rel)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", p, err)
	}
	if !fi.IsDir() {
		f, err := fsys.Open(rel)
		if err != nil {
			return nil, fmt.Errorf("helm: chart %s: %w", p, err)
		}
		defer f.Close()
		ch, err := loader.LoadArchive(io.LimitReader(f, DefaultMaxChartSize))
		if err != nil {
			return nil, fmt.Errorf("helm: load chart %s: %w", p, err)
		}
		return ch, nil
	}
	rules := ignore.Empty()
	if data, err := fs.ReadFile(fsys, path.Join(rel, ignore.HelmIgnore)); err == nil {
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("helm: chart %s: %s: %w", p, ignore.HelmIgnore, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("helm: chart %s: %s: %w", p, ignore.HelmIgnore, err)
	}
	rules.AddDefaults()
	var files []*loader.BufferedFile
	if err := walkChart(fsys, rel, "", rules, &files, 0); err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", p, err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("helm: load chart %s: %w", p, err)
	}
	return ch, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func walkChart(fsys fs.FS, top, dir string, rules *ignore.Rules, files *[]*loader.BufferedFile, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%s: folders nested too deep (a symlink loop?)", dir)
	}
	entries, err := fs.ReadDir(fsys, path.Join(top, dir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := path.Join(dir, e.Name())
		fi, err := fs.Stat(fsys, path.Join(top, n)) // follows symlinks, inside the root only
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if rules.Ignore(n, fi) {
			continue
		}
		if fi.IsDir() {
			if err := walkChart(fsys, top, n, rules, files, depth+1); err != nil {
				return err
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("cannot load irregular file %s", n)
		}
		if fi.Size() > loader.MaxDecompressedFileSize {
			return fmt.Errorf("chart file %q is larger than the maximum file size %d", n, loader.MaxDecompressedFileSize)
		}
		data, err := fs.ReadFile(fsys, path.Join(top, n))
		if err != nil {
			return fmt.Errorf("read %s: %w", n, err)
		}
		*files = append(*files, &loader.BufferedFile{Name: n, Data: bytes.TrimPrefix(data, utf8BOM)})
	}
	return nil
}

// fetchChart downloads a chart from a chart repository or OCI registry into
// memory.
func fetchChart(ctx context.Context, opts HelmOptions) (*chart.Chart, error) {
	if !exactVersion.MatchString(opts.Version) {
		opts.Reads.Uncertain(fmt.Sprintf("chart %s from %s at a version that is not exact (%q)", opts.Chart, opts.Repository, opts.Version))
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	where := opts.Repository + " " + opts.Chart + "@" + opts.Version
	if registry.IsOCI(opts.Repository) {
		return fetchOCIChart(ctx, hc, opts)
	}
	base, err := url.Parse(opts.Repository)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("helm: chart repository %q: want an http, https or oci URL", opts.Repository)
	}
	idxURL := strings.TrimSuffix(opts.Repository, "/") + "/index.yaml"
	data, err := httpGet(ctx, hc, idxURL, base.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", where, err)
	}
	idx, err := parseRepoIndex(data)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: parse %s: %w", where, idxURL, err)
	}
	cv, err := idx.get(opts.Chart, opts.Version)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", where, err)
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("helm: chart %s: the index has no URL for version %s", where, cv.Version)
	}
	chartURL, err := resolveChartURL(opts.Repository, cv.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", where, err)
	}
	tgz, err := httpGet(ctx, hc, chartURL, base.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: %w", where, err)
	}
	if cv.Digest != "" {
		sum := sha256.Sum256(tgz)
		if got := hex.EncodeToString(sum[:]); got != cv.Digest {
			return nil, fmt.Errorf("helm: chart %s: digest %s of %s does not match the index (%s)", where, got, chartURL, cv.Digest)
		}
	}
	ch, err := loader.LoadArchive(bytes.NewReader(tgz))
	if err != nil {
		return nil, fmt.Errorf("helm: load chart %s: %w", where, err)
	}
	return ch, nil
}

// fetchOCIChart pulls a chart from an OCI registry into memory with helm's
// registry client. Only Username and Password authenticate, and only to
// the registry's own host: no credentials file, no docker config, no
// credential helper.
func fetchOCIChart(ctx context.Context, hc *http.Client, opts HelmOptions) (*chart.Chart, error) {
	ref := strings.TrimSuffix(strings.TrimPrefix(opts.Repository, registry.OCIScheme+"://"), "/") + "/" + opts.Chart + ":" + opts.Version
	where := registry.OCIScheme + "://" + ref
	if opts.Version == "" {
		return nil, fmt.Errorf("helm: chart %s: a version is required for OCI", where)
	}
	host, _, _ := strings.Cut(ref, "/")
	// helm's Pull has no context: the transport gives each request ctx.
	hc = &http.Client{Transport: ctxTransport{ctx: ctx, base: hc.Transport}, CheckRedirect: hc.CheckRedirect, Timeout: hc.Timeout}
	authorizer := auth.Client{
		Client: hc,
		Cache:  auth.NewCache(),
		Credential: func(_ context.Context, hostport string) (auth.Credential, error) {
			if hostport != host || (opts.Username == "" && opts.Password == "") {
				return auth.EmptyCredential, nil
			}
			return auth.Credential{Username: opts.Username, Password: opts.Password}, nil
		},
	}
	copts := []registry.ClientOption{
		registry.ClientOptHTTPClient(hc),
		registry.ClientOptAuthorizer(authorizer),
		registry.ClientOptCredentialsFile(os.DevNull),
		registry.ClientOptWriter(io.Discard),
	}
	if opts.PlainHTTP {
		copts = append(copts, registry.ClientOptPlainHTTP())
	}
	c, err := registry.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("helm: chart %s: registry client: %w", where, err)
	}
	res, err := c.Pull(ref, registry.PullOptWithChart(true))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("helm: pull chart %s: %w", where, err)
	}
	if int64(len(res.Chart.Data)) > DefaultMaxChartSize {
		return nil, fmt.Errorf("helm: chart %s: larger than %d bytes", where, DefaultMaxChartSize)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(res.Chart.Data))
	if err != nil {
		return nil, fmt.Errorf("helm: load chart %s: %w", where, err)
	}
	return ch, nil
}

// ctxTransport sends every request with ctx and refuses a response
// announced larger than DefaultMaxChartSize.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req.WithContext(t.ctx))
	if err == nil && resp.ContentLength > DefaultMaxChartSize {
		resp.Body.Close()
		return nil, fmt.Errorf("get %s: larger than %d bytes", req.URL.Redacted(), DefaultMaxChartSize)
	}
	return resp, err
}

// httpGet fetches u, sending the repository credentials only to host.
func httpGet(ctx context.Context, hc *http.Client, u, host string, opts HelmOptions) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	if (opts.Username != "" || opts.Password != "") && req.URL.Host == host {
		req.SetBasicAuth(opts.Username, opts.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, DefaultMaxChartSize+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	if len(data) > DefaultMaxChartSize {
		return nil, fmt.Errorf("get %s: larger than %d bytes", u, DefaultMaxChartSize)
	}
	return data, nil
}

// helmValues merges the values in the documented order.
func helmValues(ctx context.Context, fsys fs.FS, opts HelmOptions) (map[string]any, error) {
	vals := map[string]any{}
	load := func(p string, secret bool) error {
		rel, err := cleanRel(p)
		if err != nil {
			return fmt.Errorf("helm: values file %w", err)
		}
		data, err := readRootFile(fsys, rel, opts.MaxFileSize)
		if err != nil {
			return fmt.Errorf("helm: values file %s: %w", p, err)
		}
		if secret {
			if opts.Decrypt == nil {
				return fmt.Errorf("helm: secret values file %s: no decrypter configured", p)
			}
			if data, err = opts.Decrypt(ctx, rel, data); err != nil {
				return fmt.Errorf("helm: decrypt secret values file %s: %w", p, err)
			}
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("helm: values file %s: parse: %w", p, err)
		}
		if opts.ResolveValues != nil && m != nil {
			if m, err = opts.ResolveValues(ctx, rel, m); err != nil {
				return fmt.Errorf("helm: %w", err)
			}
		}
		vals = MergeValues(vals, m)
		return nil
	}
	for _, f := range opts.ValuesFiles {
		if err := load(f, false); err != nil {
			return nil, err
		}
	}
	for _, f := range opts.SecretValuesFiles {
		if err := load(f, true); err != nil {
			return nil, err
		}
	}
	if opts.Values != nil {
		vals = MergeValues(vals, copyValue(opts.Values).(map[string]any))
	}
	for _, s := range opts.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("helm: set %q: %w", s, err)
		}
	}
	for _, s := range opts.SetString {
		if err := strvals.ParseIntoString(s, vals); err != nil {
			return nil, fmt.Errorf("helm: set-string %q: %w", s, err)
		}
	}
	return vals, nil
}

// MergeValues merges b into a like helm's -f: maps key by key, anything
// else replaced. Helm's own is unexported (pkg/cli/values), and
// chartutil.MergeTables writes into its arguments and logs values it
// cannot merge; TestHelmValuesMergeAsHelm compares this one with Helm's
// CLI merge. config's mergeMaps is the same merge, for an environment's
// values over an app's, before they reach here.
func MergeValues(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = MergeValues(am, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// copyValue deep-copies maps and slices so --set never writes into the
// caller's Values.
func copyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = copyValue(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = copyValue(x)
		}
		return s
	}
	return v
}
