package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/deliverhq/deliver/pkg/object"
)

// KustomizeOptions configure Renderer.Kustomize.
type KustomizeOptions struct {
	// Root is the repository snapshot. The build reads files anywhere
	// inside it and nowhere outside: a "../../../etc" resource or a symlink
	// out of it is an error.
	Root string
	// Path is the folder of the kustomization, relative to Root.
	Path string
	// App is recorded in each object's origin.
	App string
	// AllowRemote allows remote bases (git URLs in resources and
	// components, cloned by kustomize with the git CLI) and remote files
	// (http and https URLs). Off by default: every resource, component,
	// generator and transformer must then be inside Root. file:// git URLs
	// are refused either way. The clones go to $TMPDIR/kustomize-* and
	// are removed after the build.
	AllowRemote bool
	// Decrypt decrypts the SOPS-encrypted files of secretGenerators (files,
	// envs) before the build; the plaintext stays in memory. Nil refuses an
	// encrypted file there.
	Decrypt DecryptFunc
	// MaxFileSize bounds each file the build reads. Default
	// DefaultMaxFileSize.
	MaxFileSize int64
	// Reads, when set, records every path the build reads from Root; a
	// remote base or file (AllowRemote) marks it uncertain.
	Reads *Reads
	// Additions, when set, are added to the kustomization of Path before
	// the build, as a Flux Kustomization adds its fields.
	Additions *KustomizeAdditions
	// HelmCluster, when set, returns the cluster the helmCharts render
	// for: their .Capabilities are its version and API versions, as
	// `kustomize build --enable-helm --helm-kube-version V
	// --helm-api-versions ...` gives them (what Argo CD passes for the
	// destination cluster), and as a Helm app renders for it; a chart's own
	// kubeVersion and apiVersions are then not used. Called only when a
	// kustomization has helmCharts. Nil: offline, as `kustomize build`.
	HelmCluster func(context.Context) (*Cluster, error)
	// HelmKubeVersion and HelmAPIVersions, when set, replace every
	// chart's kubeVersion and apiVersions offline, as `kustomize build
	// --helm-kube-version --helm-api-versions` (deliver render's
	// --kube-version and --api-versions).
	HelmKubeVersion string
	HelmAPIVersions []string
	// HTTPClient fetches the helmCharts that are not in the repository
	// from their repo, as a Helm app's chart is fetched (without
	// credentials: kustomize's helm pull has none either). Default
	// http.DefaultClient.
	HTTPClient *http.Client
}

// Kustomize builds a kustomization like `kustomize build` with its default
// flags: builtin plugins only (no exec or container KRM functions), legacy
// output order; and like `kustomize build --enable-helm` where a
// kustomization has helmCharts, which deliver's own Helm engine inflates
// (inflateHelmCharts: the helm binary is never run). Hooks (see object.IsHook) go to
// Set.Hooks. Each object's origin is Path and its index in the build output.
// Builds are serialised on r because kustomize keeps global state.
func (r *Renderer) Kustomize(ctx context.Context, opts KustomizeOptions) (*object.Set, error) {
	built, err := r.kustomizeBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	file := path.Clean(filepath.ToSlash(opts.Path))
	// The CLI prints each resource as YAML made from its JSON
	// (resource.AsYAML); taking the JSON skips that conversion and parsing
	// the YAML back, a fifth of a small build's CPU. The JSON is made from
	// the YAML the resource's node tree encodes to, as the CLI's output is:
	// reading the node tree directly would differ where yaml.v3's encoder
	// changes a value (a folded scalar written back as a literal one), and
	// saved only 5% of a render (TestKustomizeCorpusLibrary). Converting the
	// built resources touches none of kustomize's global state, so it runs
	// on every core, outside kustomizeMu.
	return collect(decodeAll(len(built), func(i int) ([]*object.Object, error) {
		origin := object.Origin{App: opts.App, File: file, Doc: i}
		m, err := resourceObject(built[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", originString(origin), err)
		}
		return objectsOf(origin, m)
	}))
}

// kustomizeBuild returns the resources `kustomize build` prints for opts,
// in its order.
func (r *Renderer) kustomizeBuild(ctx context.Context, opts KustomizeOptions) ([]*resource.Resource, error) {
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	rel, err := cleanRel(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("kustomize: overlay %w", err)
	}
	fsys, err := newConfinedFS(ctx, opts.Root, opts.MaxFileSize, opts.AllowRemote)
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	defer fsys.close()
	fsys.rec = opts.Reads
	if opts.Additions != nil {
		if err := addToKustomization(fsys, rel, opts.Additions); err != nil {
			return nil, fmt.Errorf("kustomize: %w", err)
		}
	}
	sc := &kustScan{fsys: fsys, allowRemote: opts.AllowRemote, seen: map[string]bool{}}
	if err := sc.dir(rel); err != nil {
		return nil, fmt.Errorf("kustomize: %s: %w", opts.Path, err)
	}
	for _, f := range sc.secretFiles {
		data, err := fsys.ReadFile(fsys.abs(f))
		if err != nil {
			return nil, fmt.Errorf("kustomize: %s: secretGenerator file %s: %w", opts.Path, f, err)
		}
		if !IsSOPS(data) {
			continue
		}
		if opts.Decrypt == nil {
			return nil, fmt.Errorf("kustomize: %s: secretGenerator file %s is SOPS-encrypted and no decrypter is configured", opts.Path, f)
		}
		plain, err := opts.Decrypt(ctx, f, data)
		if err != nil {
			return nil, fmt.Errorf("kustomize: %s: decrypt %s: %w", opts.Path, f, err)
		}
		fsys.overlay[fsys.abs(f)] = plain
	}
	if err := inflateHelmCharts(ctx, fsys, sc.helm, opts); err != nil {
		return nil, fmt.Errorf("kustomize: %s: %w", opts.Path, err)
	}
	r.kustomizeMu.Lock()
	defer r.kustomizeMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	out, err := runKustomize(fsys, fsys.abs(rel))
	if err != nil {
		return nil, fmt.Errorf("kustomize: build %s: %w%s", opts.Path, err, kustomizeHint(err))
	}
	return out, nil
}

// kustomizeHint explains kustomize's refusal of a resource without
// metadata.name, which is how a hook named by metadata.generateName fails:
// `kustomize build` refuses it too (and so does Argo CD with a kustomize
// source), and deliver renders what kustomize builds, so the hint points to
// the two ways out instead of building something kustomize would not.
func kustomizeHint(err error) string {
	if !strings.Contains(err.Error(), "missing metadata.name") {
		return ""
	}
	return " (kustomize needs metadata.name on every resource, as `kustomize build` does: a hook named by metadata.generateName must be given a name, or be delivered as plain manifests or in a Helm chart, where generateName hooks are supported)"
}

// runKustomize is the one call into kustomize: krusty with builtin plugins
// only, on a file system confined to the repository (hence no load
// restriction of kustomize's own, which would confine to the overlay's
// folder instead). A panic becomes an error.
func runKustomize(fsys filesys.FileSystem, dir string) (res []*resource.Resource, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	o := krusty.MakeDefaultOptions()
	o.LoadRestrictions = types.LoadRestrictionsNone
	o.Reorder = krusty.ReorderOptionUnspecified // the CLI's default: legacy order
	o.PluginConfig = types.DisabledPluginConfig()
	m, err := krusty.MakeKustomizer(o).Run(fsys, dir)
	if err != nil {
		return nil, err
	}
	return m.Resources(), nil
}

// resourceJSON encodes a built resource as the CLI does before printing
// it. It runs in decodeAll's goroutines, where a panic in kustomize would
// end the process: it becomes an error.
func resourceJSON(res *resource.Resource) (doc []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return res.MarshalJSON()
}

// resourceObject returns a built resource as deliver's decoder reads the
// CLI's output of it (resourceJSON, then decodeJSON); errors name the
// resource.
func resourceObject(res *resource.Resource) (map[string]any, error) {
	doc, err := resourceJSON(res)
	if err != nil {
		return nil, fmt.Errorf("%s: encode: %w", res.CurId(), err)
	}
	m, err := decodeJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: parse: %w", res.CurId(), err)
	}
	return m, nil
}

// kustScan walks the kustomizations reachable from an overlay before the
// build, to refuse remote references (unless allowed) and to find the files
// of secretGenerators.
type kustScan struct {
	fsys        *confinedFS
	allowRemote bool
	seen        map[string]bool
	secretFiles []string
	helm        []kustHelm // kustomizations with helmCharts
}

// isRemoteFile reports whether kustomize loads p over HTTP. Its loader
// decides with url.Parse, which reads the scheme in any case (HTTPS://
// too); a prefix test here would let such a file past the refusal. (The
// loader's IsRemoteFile is internal to kustomize.)
func isRemoteFile(p string) bool {
	u, err := url.Parse(p)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}

func (s *kustScan) dir(dir string) error {
	if s.seen[dir] {
		return nil
	}
	s.seen[dir] = true
	data, name, err := s.fsys.readKustomization(dir)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // not a kustomization: kustomize reports it
	}
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return nil // kustomize reports it, in its own words
	}
	k.FixKustomization()
	if len(k.HelmCharts) > 0 {
		s.helm = append(s.helm, kustHelm{dir: dir, file: name, k: k})
	}
	// Entries kustomize may load as a folder (a kustomization) or a remote
	// base.
	for _, list := range [][]string{k.Resources, k.Bases, k.Components, k.Generators, k.Transformers, k.Validators} {
		for _, e := range list {
			if strings.Contains(e, "\n") {
				continue // inline configuration
			}
			if err := s.ref(dir, name, e, true); err != nil {
				return err
			}
		}
	}
	// Files kustomize may fetch over HTTP.
	files := append([]string{}, k.Crds...)
	files = append(files, k.Configurations...)
	files = append(files, k.OpenAPI["path"])
	for _, p := range k.PatchesStrategicMerge {
		files = append(files, string(p))
	}
	for _, p := range append(k.Patches, k.PatchesJson6902...) {
		files = append(files, p.Path)
	}
	for _, r := range k.Replacements {
		files = append(files, r.Path)
	}
	for _, g := range k.ConfigMapGenerator {
		files = append(files, kvFiles(g.KvPairSources)...)
	}
	for _, f := range files {
		if _, err := s.remote(name, f); err != nil {
			return err
		}
	}
	for _, g := range k.SecretGenerator {
		for _, f := range kvFiles(g.KvPairSources) {
			remote, err := s.remote(name, f)
			if err != nil {
				return err
			}
			if !remote {
				if err := s.secret(dir, name, f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// readKustomization returns the kustomization file of folder dir
// (relative to the root) and its path, under the first name kustomize
// recognises that exists there (in the overlay too); no name when there
// is none.
func (c *confinedFS) readKustomization(dir string) ([]byte, string, error) {
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		d, err := c.ReadFile(c.abs(path.Join(dir, n)))
		if err == nil {
			return d, path.Join(dir, n), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	return nil, "", nil
}

// remote reports whether file f of kustomization file name is one
// kustomize fetches over HTTP: refused unless remote references are
// allowed, and then a read the snapshot cannot vouch for (Reads
// uncertain).
func (s *kustScan) remote(name, f string) (bool, error) {
	if !isRemoteFile(f) {
		return false, nil
	}
	if !s.allowRemote {
		return true, fmt.Errorf("%s: %s: remote files are disabled", name, f)
	}
	s.fsys.rec.Uncertain("remote file " + f)
	return true, nil
}

// kvFiles returns the paths of a generator's files and env files.
func kvFiles(kv types.KvPairSources) []string {
	var out []string
	for _, f := range kv.FileSources {
		if _, p, ok := strings.Cut(f, "="); ok {
			f = p
		}
		out = append(out, f)
	}
	out = append(out, kv.EnvSources...)
	if kv.EnvSource != "" {
		out = append(out, kv.EnvSource)
	}
	return out
}

// ref checks a resource-like entry e of kustomization file name in dir:
// inside the repository (or remote and allowed), and scans it when it is a
// folder.
func (s *kustScan) ref(dir, name, e string, mayBeDir bool) error {
	lower := strings.ToLower(e)
	if strings.HasPrefix(strings.TrimPrefix(lower, "git::"), "file:") {
		// kustomize clones a file:// URL with git (git::file:// too, in
		// any case): a local repository anywhere on the machine, outside
		// the snapshot.
		return fmt.Errorf("%s: %s: local git URLs are not allowed", name, e)
	}
	if isRemoteFile(e) || strings.Contains(e, "://") || strings.HasPrefix(e, "git@") || strings.HasPrefix(lower, "git::") {
		if !s.allowRemote {
			return fmt.Errorf("%s: %s: remote bases are disabled", name, e)
		}
		s.fsys.rec.Uncertain("remote base " + e)
		return nil
	}
	if filepath.IsAbs(e) {
		return fmt.Errorf("%s: %s: absolute paths are not allowed", name, e)
	}
	p := path.Join(dir, filepath.ToSlash(e))
	if p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("%s: %s: path escapes the repository root", name, e)
	}
	fi, err := fs.Stat(s.fsys.rootFS(), p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if s.allowRemote {
				s.fsys.rec.Uncertain("remote base " + e)
				return nil // maybe a remote base in a form kustomize knows
			}
			return fmt.Errorf("%s: %s: not found in the repository (remote bases are disabled)", name, e)
		}
		return fmt.Errorf("%s: %s: %w", name, e, err)
	}
	if fi.IsDir() && mayBeDir {
		return s.dir(p)
	}
	return nil
}

// secret records the file(s) of a secretGenerator entry f.
func (s *kustScan) secret(dir, name, f string) error {
	if filepath.IsAbs(f) {
		return fmt.Errorf("%s: %s: absolute paths are not allowed", name, f)
	}
	p := path.Join(dir, filepath.ToSlash(f))
	if p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("%s: %s: path escapes the repository root", name, f)
	}
	fsys := s.fsys.rootFS()
	fi, err := fs.Stat(fsys, p)
	if err != nil {
		return fmt.Errorf("%s: secretGenerator %s: %w", name, f, err)
	}
	if !fi.IsDir() {
		s.secretFiles = append(s.secretFiles, p)
		return nil
	}
	entries, err := fs.ReadDir(fsys, p)
	if err != nil {
		return fmt.Errorf("%s: secretGenerator %s: %w", name, f, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			s.secretFiles = append(s.secretFiles, path.Join(p, e.Name()))
		}
	}
	return nil
}

// confinedFS is the file system kustomize builds on: read-only, every path
// resolved through an os.Root on the repository snapshot (so neither ".."
// nor a symlink leaves it), with decrypted files overlaid in memory. When
// remote bases are allowed, kustomize's own clone folders
// ($TMPDIR/kustomize-*) are reachable too, each through its own os.Root.
type confinedFS struct {
	ctx         context.Context
	dir         string // absolute, symlinks resolved
	root        *os.Root
	max         int64
	overlay     map[string][]byte // absolute path -> plaintext
	allowClones bool
	mu          sync.Mutex
	clones      map[string]*os.Root
	// rec records what is read from root; a read in a clone makes it
	// uncertain.
	rec *Reads
}

// rootRec is rec for reads in r, the root or a clone: reads in a clone
// are not recorded but make rec uncertain.
func (c *confinedFS) rootRec(r *os.Root) *Reads {
	if c.rec != nil && r != c.root {
		c.rec.Uncertain("a remote base cloned by kustomize")
		return nil
	}
	return c.rec
}

// rootFS is the repository snapshot as an fs.FS that records its reads.
func (c *confinedFS) rootFS() fs.FS { return recording(c.root.FS(), c.rec) }

// note records a read of kind of rel in r.
func (c *confinedFS) note(kind string, r *os.Root, rel string) {
	if c.rec == nil {
		return
	}
	if r != c.root {
		c.rec.Uncertain("a remote base cloned by kustomize")
		return
	}
	c.rec.Add(kind, filepath.ToSlash(rel))
}

var _ filesys.FileSystem = (*confinedFS)(nil)

func newConfinedFS(ctx context.Context, dir string, max int64, allowClones bool) (*confinedFS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open repository root: %w", err)
	}
	return &confinedFS{ctx: ctx, dir: abs, root: root, max: max, overlay: map[string][]byte{}, allowClones: allowClones, clones: map[string]*os.Root{}}, nil
}

func (c *confinedFS) close() {
	c.root.Close()
	for _, r := range c.clones {
		r.Close()
	}
}

// abs turns a slash path relative to the repository into an absolute one.
func (c *confinedFS) abs(rel string) string { return filepath.Join(c.dir, filepath.FromSlash(rel)) }

// resolve maps an absolute (or repository-relative) path to the root that
// holds it and the path inside that root.
func (c *confinedFS) resolve(p string) (*os.Root, string, error) {
	r, _, rel, err := c.resolveDir(p)
	return r, rel, err
}

// resolveDir is resolve that also returns the root's absolute folder.
func (c *confinedFS) resolveDir(p string) (*os.Root, string, string, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, "", "", err
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	p = filepath.Clean(p)
	if rel, err := filepath.Rel(c.dir, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return c.root, c.dir, rel, nil
	}
	if c.allowClones {
		if tmp, rel, ok := cloneRel(p); ok {
			clone, inside, _ := strings.Cut(rel, string(filepath.Separator))
			c.mu.Lock()
			defer c.mu.Unlock()
			dir := filepath.Join(tmp, clone)
			r, ok := c.clones[dir]
			if !ok {
				var err error
				if r, err = os.OpenRoot(dir); err != nil {
					return nil, "", "", err
				}
				c.clones[dir] = r
			}
			return r, dir, cmp.Or(inside, "."), nil
		}
	}
	return nil, "", "", &fs.PathError{Op: "open", Path: p, Err: errors.New("outside the repository snapshot")}
}

// cloneRel splits p, when it is inside a clone folder of kustomize
// ($TMPDIR/kustomize-*, with $TMPDIR as given or with its symlinks
// resolved, since kustomize resolves them), into $TMPDIR and the rest.
func cloneRel(p string) (tmp, rel string, ok bool) {
	tmp = filepath.Clean(os.TempDir())
	dirs := []string{tmp}
	if resolved, err := filepath.EvalSymlinks(tmp); err == nil && resolved != tmp {
		dirs = append(dirs, resolved)
	}
	for _, tmp := range dirs {
		if rel, err := filepath.Rel(tmp, p); err == nil && strings.HasPrefix(rel, "kustomize-") {
			return tmp, rel, true
		}
	}
	return "", "", false
}

func errReadOnly(p string) error {
	return &fs.PathError{Op: "write", Path: p, Err: errors.New("the repository snapshot is read-only")}
}

// Create refuses: the build never writes.
func (c *confinedFS) Create(p string) (filesys.File, error) { return nil, errReadOnly(p) }

// Mkdir refuses: the build never writes.
func (c *confinedFS) Mkdir(p string) error { return errReadOnly(p) }

// MkdirAll refuses: the build never writes.
func (c *confinedFS) MkdirAll(p string) error { return errReadOnly(p) }

// WriteFile refuses: the build never writes.
func (c *confinedFS) WriteFile(p string, _ []byte) error { return errReadOnly(p) }

// RemoveAll removes only kustomize's clone folders.
func (c *confinedFS) RemoveAll(p string) error {
	r, _, err := c.resolve(p)
	if err != nil {
		return err
	}
	if r == c.root {
		return errReadOnly(p)
	}
	return os.RemoveAll(p)
}

// Open opens a file for reading.
func (c *confinedFS) Open(p string) (filesys.File, error) {
	if _, ok := c.overlay[filepath.Clean(p)]; ok {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("a decrypted file can only be read whole")}
	}
	r, rel, err := c.resolve(p)
	if err != nil {
		return nil, err
	}
	c.note(ReadFile, r, rel)
	return r.Open(rel)
}

// IsDir reports whether p is a folder.
func (c *confinedFS) IsDir(p string) bool {
	r, rel, err := c.resolve(p)
	if err != nil {
		return false
	}
	c.note(ReadStat, r, rel)
	fi, err := r.Stat(rel)
	return err == nil && fi.IsDir()
}

// ReadDir lists the names in folder p.
func (c *confinedFS) ReadDir(p string) ([]string, error) {
	r, rel, err := c.resolve(p)
	if err != nil {
		return nil, err
	}
	c.note(ReadDir, r, rel)
	entries, err := fs.ReadDir(r.FS(), filepath.ToSlash(rel))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// CleanedAbs splits p into a confirmed folder and a file name (empty when p
// is a folder).
func (c *confinedFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	p = filepath.Clean(p)
	r, rel, err := c.resolve(p)
	if err != nil {
		return "", "", err
	}
	c.note(ReadStat, r, rel)
	fi, err := r.Stat(rel)
	if err != nil {
		if _, ok := c.overlay[p]; !ok {
			return "", "", err
		}
	} else if fi.IsDir() {
		return filesys.ConfirmedDir(p), "", nil
	}
	return filesys.ConfirmedDir(filepath.Dir(p)), filepath.Base(p), nil
}

// Exists reports whether p exists.
func (c *confinedFS) Exists(p string) bool {
	if _, ok := c.overlay[filepath.Clean(p)]; ok {
		return true
	}
	r, rel, err := c.resolve(p)
	if err != nil {
		return false
	}
	c.note(ReadStat, r, rel)
	_, err = r.Stat(rel)
	return err == nil
}

// Glob returns the paths matching pattern, like filepath.Glob.
func (c *confinedFS) Glob(pattern string) ([]string, error) {
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(c.dir, pattern)
	}
	r, base, rel, err := c.resolveDir(pattern)
	if err != nil {
		return nil, err
	}
	matches, err := fs.Glob(recording(r.FS(), c.rootRec(r)), filepath.ToSlash(rel))
	if err != nil {
		return nil, err
	}
	for i, m := range matches {
		matches[i] = filepath.Join(base, filepath.FromSlash(m))
	}
	return matches, nil
}

// ReadFile returns the content of p, or its plaintext when it was
// decrypted.
func (c *confinedFS) ReadFile(p string) ([]byte, error) {
	if data, ok := c.overlay[filepath.Clean(p)]; ok {
		return append([]byte(nil), data...), nil
	}
	r, rel, err := c.resolve(p)
	if err != nil {
		return nil, err
	}
	c.note(ReadFile, r, rel)
	data, err := readRootFile(r.FS(), filepath.ToSlash(rel), c.max)
	if err != nil {
		return nil, err
	}
	if r == c.root {
		c.rec.addContent(filepath.ToSlash(rel), data)
	}
	return data, nil
}

// Walk walks the tree at p in lexical order.
func (c *confinedFS) Walk(p string, walkFn filepath.WalkFunc) error {
	r, base, rel, err := c.resolveDir(p)
	if err != nil {
		return walkFn(p, nil, err)
	}
	return fs.WalkDir(recording(r.FS(), c.rootRec(r)), filepath.ToSlash(rel), func(q string, d fs.DirEntry, err error) error {
		full := filepath.Join(base, filepath.FromSlash(q))
		if err != nil {
			return walkFn(full, nil, err)
		}
		fi, err := d.Info()
		return walkFn(full, fi, err)
	})
}
