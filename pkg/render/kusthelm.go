package render

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/kio"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/kustomize/kyaml/yaml/merge2"
	"sigs.k8s.io/yaml"
)

// kustHelm is a kustomization with helmCharts, as the scan found it.
type kustHelm struct {
	dir  string // its folder, relative to the root
	file string // its file, relative to the root
	k    types.Kustomization
}

// helmChartsFile is the resource file that holds a kustomization's
// inflated charts, beside it in the build's overlay; it exists nowhere
// else.
const helmChartsFile = ".deliver-helm-charts.yaml"

// inflateHelmCharts does what `kustomize build --enable-helm` does with
// the helmCharts of each kustomization found, without running the helm
// binary: each chart is rendered by deliver's Helm engine with the
// arguments kustomize's HelmChartInflationGenerator gives `helm
// template`, its values made as that generator makes them (the chart's
// values.yaml or valuesFile, merged with valuesInline by kyaml as
// valuesMerge says, then additionalValuesFiles), its output marked as the
// generator marks it (so that the kustomization's namespace leaves it
// alone); the output becomes a resource file of the kustomization in the
// build's overlay, and the kustomization, rewritten there without
// helmCharts, lists it last among its resources. The charts must be in the
// repository (chartHome) or in their repo (a chart repository, or an
// oci:// registry), which deliver fetches into memory as it fetches a Helm
// app's chart.
// TestKustomizeHelmChartsAsCLI compares the result with `kustomize build
// --enable-helm` over a generated corpus.
func inflateHelmCharts(ctx context.Context, fsys *confinedFS, found []kustHelm, opts KustomizeOptions) error {
	for _, kh := range found {
		var out bytes.Buffer
		for i, hc := range kh.k.HelmCharts {
			at := fmt.Sprintf("%s: helmCharts[%d] (%s)", kh.file, i, hc.Name)
			text, err := inflateChart(ctx, fsys, kh, hc, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			out.Write(text)
		}
		marked, err := markHelmGenerated(out.Bytes())
		if err != nil {
			return fmt.Errorf("%s: helmCharts: read the output: %w", kh.file, err)
		}
		k := kh.k
		k.HelmCharts, k.HelmGlobals, k.HelmChartInflationGenerator = nil, nil, nil
		k.Resources = append(slices.Clone(k.Resources), helmChartsFile)
		rewritten, err := yaml.Marshal(k)
		if err != nil {
			return fmt.Errorf("%s: %w", kh.file, err)
		}
		fsys.overlay[fsys.abs(path.Join(kh.dir, helmChartsFile))] = marked
		fsys.overlay[fsys.abs(kh.file)] = rewritten
	}
	return nil
}

// inflateChart returns what `helm template` prints for one chart of a
// kustomization, as kustomize runs it.
func inflateChart(ctx context.Context, fsys *confinedFS, kh kustHelm, hc types.HelmChart, opts KustomizeOptions) ([]byte, error) {
	switch {
	case hc.Name == "":
		return nil, fmt.Errorf("chart name cannot be empty")
	case hc.ReleaseName == "":
		// kustomize would have helm generate a name from the time: a new
		// release name, and new objects, on every build.
		return nil, fmt.Errorf("releaseName is required (kustomize would let helm generate one that changes on every build)")
	case hc.NameTemplate != "":
		return nil, fmt.Errorf("nameTemplate is not supported: set releaseName")
	}
	home := types.HelmDefaultHome
	if kh.k.HelmGlobals != nil && kh.k.HelmGlobals.ChartHome != "" {
		home = kh.k.HelmGlobals.ChartHome
	}
	if filepath.IsAbs(home) {
		return nil, fmt.Errorf("chartHome %s: absolute paths are not allowed", home)
	}
	chartHome := path.Join(kh.dir, filepath.ToSlash(home))
	if chartHome == ".." || strings.HasPrefix(chartHome, "../") {
		return nil, fmt.Errorf("chartHome %s: path escapes the repository root", home)
	}
	if hc.Version != "" && hc.Repo != "" {
		chartHome = path.Join(chartHome, hc.Name+"-"+hc.Version)
	}
	chart := path.Join(chartHome, hc.Name)
	ho := HelmOptions{
		Root: opts.Root, App: opts.App, Chart: chart,
		ReleaseName: hc.ReleaseName, Namespace: hc.Namespace,
		KubeVersion: hc.KubeVersion, ExtraAPIVersions: hc.ApiVersions, IncludeCRDs: hc.IncludeCRDs,
		MaxFileSize: opts.MaxFileSize, Reads: opts.Reads,
	}
	if opts.HelmKubeVersion != "" {
		ho.KubeVersion = opts.HelmKubeVersion
	}
	if len(opts.HelmAPIVersions) > 0 {
		ho.ExtraAPIVersions = opts.HelmAPIVersions
	}
	if opts.HelmCluster != nil {
		var err error
		if ho.Cluster, err = opts.HelmCluster(ctx); err != nil {
			return nil, err
		}
	}
	// The chart's values.yaml, the values file unless another is named.
	chartValuesFile := func() ([]byte, error) {
		p := path.Join(chart, "values.yaml")
		data, err := fsys.ReadFile(fsys.abs(p))
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", p, err)
		}
		return data, nil
	}
	if !fsys.IsDir(fsys.abs(chart)) {
		// Not vendored: pulled from its repository, as `helm pull`
		// would, into memory.
		if hc.Repo == "" {
			return nil, fmt.Errorf("no repo specified for pull, no chart found at %s", chart)
		}
		ho.Repository, ho.Chart, ho.Version, ho.HTTPClient = hc.Repo, hc.Name, hc.Version, opts.HTTPClient
		ch, err := fetchChart(ctx, ho)
		if err != nil {
			return nil, err
		}
		ho.loaded = ch
		chartValuesFile = func() ([]byte, error) {
			for _, f := range ch.Raw {
				if f.Name == "values.yaml" {
					return f.Data, nil
				}
			}
			return nil, fmt.Errorf("chart %s %s from %s has no values.yaml", hc.Name, hc.Version, hc.Repo)
		}
	}
	values, err := chartValues(fsys, kh.dir, hc, chartValuesFile)
	if err != nil {
		return nil, err
	}
	ho.Values = values
	docs, err := helmDocs(ctx, ho)
	if err != nil {
		return nil, err
	}
	return templateText(docs, hc.SkipHooks, hc.SkipTests), nil
}

// templateText is what `helm template` prints for a chart's documents:
// the manifests (CRDs first), trimmed as one text, then each hook, none
// with --no-hooks (noHooks), no test hook with --skip-tests (skipTests).
// pkg/render TestHelmCorpusTemplate compares it with the CLI, byte for
// byte.
func templateText(docs []helmDoc, noHooks, skipTests bool) []byte {
	var manifest, hooks strings.Builder
	for _, d := range docs {
		w := &manifest
		if d.hook {
			if noHooks || skipTests && isTestHook(d) {
				continue
			}
			w = &hooks
		}
		fmt.Fprintf(w, "---\n# Source: %s\n%s\n", d.source, d.content)
	}
	var b bytes.Buffer
	fmt.Fprintln(&b, strings.TrimSpace(manifest.String()))
	b.WriteString(hooks.String())
	return b.Bytes()
}

// isTestHook reports whether a hook runs on `helm test`: an event helm
// reads as test (trimmed, in any case, and Helm 2's test-success).
func isTestHook(d helmDoc) bool {
	for _, e := range strings.Split(d.events, ",") {
		switch strings.ToLower(strings.TrimSpace(e)) {
		case "test", "test-success":
			return true
		}
	}
	return false
}

// chartValues makes the values kustomize gives `helm template` for hc:
// its values file (valuesFile, default the chart's values.yaml, which
// chartValuesFile reads), or that
// file merged with valuesInline as valuesMerge says (by kyaml, as
// kustomize does), then additionalValuesFiles, each read as helm reads a
// -f file.
func chartValues(fsys *confinedFS, dir string, hc types.HelmChart, chartValuesFile func() ([]byte, error)) (map[string]any, error) {
	read := func(p string) ([]byte, error) {
		data, err := fsys.ReadFile(fsys.abs(p))
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", p, err)
		}
		return data, nil
	}
	valuesFile := chartValuesFile
	if hc.ValuesFile != "" {
		if isRemoteFile(hc.ValuesFile) || filepath.IsAbs(hc.ValuesFile) {
			return nil, fmt.Errorf("valuesFile %s: only files of the repository are allowed", hc.ValuesFile)
		}
		valuesFile = func() ([]byte, error) { return read(path.Join(dir, filepath.ToSlash(hc.ValuesFile))) }
	}
	// The file is read unless valuesInline replaces it.
	var data []byte
	merge := cmp.Or(hc.ValuesMerge, "override")
	switch {
	case len(hc.ValuesInline) == 0, merge == "override", merge == "merge":
		var err error
		if data, err = valuesFile(); err != nil {
			return nil, err
		}
	case merge != "replace":
		return nil, fmt.Errorf("valuesMerge must be one of [merge override replace], got %q", merge)
	}
	if len(hc.ValuesInline) > 0 {
		inline := hc.ValuesInline
		if merge != "replace" {
			var err error
			if inline, err = mergeInline(data, inline, merge); err != nil {
				return nil, err
			}
		}
		var err error
		if data, err = yaml.Marshal(inline); err != nil {
			return nil, err
		}
	}
	vals := map[string]any{}
	files := [][]byte{data}
	for _, f := range hc.AdditionalValuesFiles {
		if isRemoteFile(f) || filepath.IsAbs(f) {
			return nil, fmt.Errorf("additionalValuesFiles %s: only files of the repository are allowed", f)
		}
		d, err := read(path.Join(dir, filepath.ToSlash(f)))
		if err != nil {
			return nil, err
		}
		files = append(files, d)
	}
	for i, d := range files {
		m := map[string]any{}
		if err := yaml.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("values file %d: parse: %w", i, err)
		}
		vals = MergeValues(vals, m)
	}
	return vals, nil
}

// mergeInline merges valuesInline with the values file's content as
// kustomize's generator does: override puts the inline values over the
// file's, merge the file's over the inline ones.
func mergeInline(file []byte, inline map[string]any, how string) (map[string]any, error) {
	fileValues, err := kyaml.Parse(string(file))
	if err != nil {
		return nil, fmt.Errorf("could not parse values file into rnode: %w", err)
	}
	inlineValues, err := kyaml.FromMap(inline)
	if err != nil {
		return nil, fmt.Errorf("could not parse values inline into rnode: %w", err)
	}
	var out *kyaml.RNode
	if how == "override" {
		out, err = merge2.Merge(inlineValues, fileValues.Copy(), kyaml.MergeOptions{})
	} else {
		out, err = merge2.Merge(fileValues, inlineValues.Copy(), kyaml.MergeOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("could not merge values: %w", err)
	}
	return out.Map()
}

// markHelmGenerated reads what helm printed as kustomize's generator reads
// it and sets the annotation the generator sets (kustomize's namespace
// transformer leaves such objects alone, and the build removes it from
// its output). The objects are written back as JSON documents, which
// kustomize reads back to the same values: YAML written back could read
// otherwise (the trailing lines of a block scalar kept with |+).
func markHelmGenerated(text []byte) ([]byte, error) {
	nodes, err := kio.FromBytes(text)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, n := range nodes {
		if n.IsNilOrEmpty() {
			continue // a document of comments only
		}
		if err := n.PipeE(kyaml.SetAnnotation(konfig.HelmGeneratedAnnotation, "true")); err != nil {
			return nil, err
		}
		doc, err := n.MarshalJSON()
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(doc)
		out.WriteString("\n")
	}
	return out.Bytes(), nil
}
