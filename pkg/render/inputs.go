package render

import (
	"encoding/hex"
	"hash"
	"io"
	"io/fs"
	"path"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
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
	// ReadCluster: a Helm chart consulted this part of the cluster's
	// .Capabilities (HelmOptions.Cluster): "c:kube-version" or
	// "c:api-versions". Not a path of the repository: the digest of the
	// app's inputs covers what the cluster serves for it.
	ReadCluster = "c:"
	// ReadObject: an object of the cluster was read for the render (a
	// ConfigMap or Secret of a post-build's substituteFrom):
	// "o:Kind/namespace/name". Its sum is the version read (AddObject).
	ReadObject = "o:"
)

// The parts of a cluster's capabilities a render records as ReadCluster.
const (
	// CapKubeVersion is .Capabilities.KubeVersion, and Chart.yaml's
	// kubeVersion constraint, checked against it.
	CapKubeVersion = "kube-version"
	// CapAPIVersions is .Capabilities.APIVersions.
	CapAPIVersions = "api-versions"
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
	sums      map[string]string // ReadFile path -> git blob id of what was read
	uncertain string
}

// Add records a read of kind (ReadFile, ReadDir, ReadStat) of p, a slash
// path relative to the snapshot root.
func (r *Reads) Add(kind, p string) {
	if r == nil {
		return
	}
	p = cleanRead(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paths == nil {
		r.paths = map[string]bool{}
	}
	r.paths[kind+p] = true
}

// AddObject records that the render read the object p of the cluster
// (Kind/namespace/name) at version: its uid and resourceVersion, or
// "absent" when it did not exist. The version is what the read returned,
// so that a change made after the read is a change of the inputs.
func (r *Reads) AddObject(p, version string) {
	if r == nil {
		return
	}
	r.Add(ReadObject, p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sums == nil {
		r.sums = map[string]string{}
	}
	r.sums[ReadObject+cleanRead(p)] = version
}

// ObjectVersion is the version AddObject records for an object read with
// the given uid and resourceVersion.
func ObjectVersion(uid, resourceVersion string) string { return uid + "/" + resourceVersion }

// ObjectAbsent is the version AddObject records for an object that did
// not exist.
const ObjectAbsent = "absent"

// addContent records a read of the whole content of file p: a ReadFile
// read, with the git blob id of data, so that the caller hashing the
// render's inputs need not read the file again (see Sum).
func (r *Reads) addContent(p string, data []byte) {
	if r == nil {
		return
	}
	h := newBlobHash(int64(len(data)))
	h.Write(data)
	r.addSum(p, hex.EncodeToString(h.Sum(nil)))
}

// addSum records sum, the git blob id of the whole content of file p,
// whose read its caller has recorded with Add.
func (r *Reads) addSum(p, sum string) {
	p = ReadFile + cleanRead(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sums == nil {
		r.sums = map[string]string{}
	}
	r.sums[p] = sum
}

// Sum returns the git blob id (as git hash-object computes it) of the
// content a render read whole for read, a ReadFile path of Paths: the
// bytes the render used, hashed as they were read. False when no render
// read that file whole (a folder opened for listing, a file read in part
// or that changed while read): its hash must then be computed from the
// file. Secret plaintext is never hashed: a SOPS file counts by the
// encrypted bytes read from the repository.
func (r *Reads) Sum(read string) (string, bool) {
	if r == nil {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sums[read]
	return s, ok
}

// cleanRead is p as Reads records it: clean, relative, "." for the root.
func cleanRead(p string) string {
	p = path.Clean("/" + p)[1:]
	if p == "" {
		p = "."
	}
	return p
}

// newBlobHash starts the git blob id (go-git's, as source.Snapshot's
// InputHash computes it) of a content of size bytes.
func newBlobHash(size int64) hash.Hash {
	return plumbing.NewHasher(plumbing.BlobObject, size).Hash
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
// be listed, of its listing: see the snapshot's hashing of ReadFile). A
// file read through to its end has its blob id recorded too (Sum).
func (r *recordFS) Open(name string) (fs.File, error) {
	r.rec.Add(ReadFile, name)
	f, err := r.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	sf := &sumFile{file: f, rec: r.rec, name: name}
	if _, ok := f.(fs.ReadDirFile); ok {
		return &sumDirFile{sf}, nil
	}
	return sf, nil
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
	data, err := fs.ReadFile(r.fsys, name)
	if err == nil {
		r.rec.addContent(name, data)
	}
	return data, err
}

// sumFile hashes what is read through it: the hashing of a render's
// inputs (pipeline) then need not open and read again each file the
// render read (reading them again was about a tenth of the CPU of a CLI
// apply of 1,000 files, observed with perf). Only Read, Stat and Close
// are offered: a Seek would make what was read differ from the file.
type sumFile struct {
	file fs.File
	rec  *Reads
	name string
	h    hash.Hash // nil before the first Read
	size int64
	n    int64
	done bool // recorded, or not a whole regular file
}

func (f *sumFile) Stat() (fs.FileInfo, error) { return f.file.Stat() }
func (f *sumFile) Close() error               { return f.file.Close() }

func (f *sumFile) Read(p []byte) (int, error) {
	if f.h == nil && !f.done {
		fi, err := f.file.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			f.done = true
		} else {
			f.size, f.h = fi.Size(), newBlobHash(fi.Size())
		}
	}
	n, err := f.file.Read(p)
	if f.done {
		return n, err
	}
	f.h.Write(p[:n])
	f.n += int64(n)
	switch {
	case err == io.EOF:
		f.done = true
		if f.n == f.size { // else it changed while read: the caller hashes the file
			f.rec.addSum(f.name, hex.EncodeToString(f.h.Sum(nil)))
		}
	case err != nil || f.n > f.size:
		f.done = true
	}
	return n, err
}

// sumDirFile is a sumFile over a file that can list a folder, so that
// fs.ReadDir through Open keeps working.
type sumDirFile struct{ *sumFile }

func (f *sumDirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	return f.file.(fs.ReadDirFile).ReadDir(n)
}
