package render

import (
	"io/fs"
	"path"
	"slices"
	"sync"
)

// Kinds of read a Reads records, the prefix of each of its paths.
const (
	// ReadFile: the file's content was read ("f:path").
	ReadFile = "f:"
	// ReadDir: the folder was listed, names and types of its entries
	// ("d:path").
	ReadDir = "d:"
	// ReadStat: only whether the path exists and is a folder mattered
	// ("s:path").
	ReadStat = "s:"
)

// Reads records what renders read from the repository snapshot: every path
// with the kind of read, so that a later revision can tell from those
// paths alone (their content, listing or existence there) whether a render
// would read anything different. A render that depends on something
// outside the snapshot (a remote base or chart that is not pinned) marks
// it uncertain. The zero value is ready; a nil *Reads records nothing. It
// is safe for concurrent use.
type Reads struct {
	mu        sync.Mutex
	paths     map[string]bool
	uncertain string
}

// Add records a read of kind (ReadFile, ReadDir, ReadStat) of p, a slash
// path relative to the snapshot root.
func (r *Reads) Add(kind, p string) {
	if r == nil {
		return
	}
	p = path.Clean("/" + p)[1:]
	if p == "" {
		p = "."
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paths == nil {
		r.paths = map[string]bool{}
	}
	r.paths[kind+p] = true
}

// Uncertain records that the render depended on something the paths do
// not cover; the first reason is kept.
func (r *Reads) Uncertain(why string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.uncertain == "" {
		r.uncertain = why
	}
}

// UncertainReason returns why the reads do not cover everything the
// render depended on, or "".
func (r *Reads) UncertainReason() string {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uncertain
}

// Paths returns the recorded reads, each its kind prefix and path, sorted.
func (r *Reads) Paths() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.paths))
	for p := range r.paths {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// recordFS is an fs.FS that records what is read through it.
type recordFS struct {
	fsys fs.FS
	rec  *Reads
}

// recording wraps fsys so that rec records its reads; fsys itself when rec
// is nil.
func recording(fsys fs.FS, rec *Reads) fs.FS {
	if rec == nil {
		return fsys
	}
	return &recordFS{fsys: fsys, rec: rec}
}

var (
	_ fs.StatFS     = (*recordFS)(nil)
	_ fs.ReadDirFS  = (*recordFS)(nil)
	_ fs.ReadFileFS = (*recordFS)(nil)
)

// Open records a read of the file's content (or, for a folder opened to
// be listed, of its listing: see the snapshot's hashing of ReadFile).
func (r *recordFS) Open(name string) (fs.File, error) {
	r.rec.Add(ReadFile, name)
	return r.fsys.Open(name)
}

func (r *recordFS) Stat(name string) (fs.FileInfo, error) {
	r.rec.Add(ReadStat, name)
	return fs.Stat(r.fsys, name)
}

func (r *recordFS) ReadDir(name string) ([]fs.DirEntry, error) {
	r.rec.Add(ReadDir, name)
	return fs.ReadDir(r.fsys, name)
}

func (r *recordFS) ReadFile(name string) ([]byte, error) {
	r.rec.Add(ReadFile, name)
	return fs.ReadFile(r.fsys, name)
}
