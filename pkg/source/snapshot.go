package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/gofrs/flock"
)

// Snapshot is the tree of one pinned commit on disk.
//
// A tree fetched from a remote lives in the cache and is shared: every
// Fetch of the same commit, in this process or another, returns the same
// directory, written once. It is read-only (files 0444 or 0555, directories
// 0555) and callers must never change it, not even after a chmod: other
// snapshots see the change, and the cache trusts a published tree without
// checking it again. Copy it to modify it. Close releases it; the cache
// removes it later, when it falls out of Options.KeepTrees and no
// Snapshot, in any process, holds it.
//
// A file:// URL's tree is written read-only into a fresh directory under
// Options.SnapshotDir that Close removes. In local mode Dir is the caller's
// working tree and Close leaves it alone.
//
// Later stages must reach files through Resolve, Open or FS, never by
// joining paths onto Dir themselves: those refuse anything (a "..", an
// absolute path, a symlink) that leads outside Dir.
type Snapshot struct {
	// Dir is the root of the tree. Read-only; see above.
	Dir string
	// URL is the repository URL without credentials.
	URL string
	// Ref is the ref that was asked for ("HEAD" when none was).
	Ref string
	// RefName is the full remote ref Ref resolved through, such as
	// refs/heads/main; empty when Ref was a SHA and in local mode.
	RefName string
	// Commit is the full SHA of the pinned commit.
	Commit string
	// AuthorTime is the commit's author time.
	AuthorTime time.Time
	// Subject is the first line of the commit message.
	Subject string
	// Fetched reports whether the remote was asked for objects; false
	// when the cache already had the commit (only refs were listed), and
	// always false for file:// and local mode.
	Fetched bool
	// Local reports local mode: Dir is a working tree used as is.
	Local bool
	// SignedBy is the fingerprint of the trusted key that signed Commit,
	// empty when no verification was asked for.
	SignedBy string

	root *os.Root
	// dirty answers Dirty; nil when the tree is known to be clean (not
	// local mode).
	dirty func() bool
	// owned: Dir is this snapshot's own and Close removes it.
	owned bool
	// lock is the shared lock on a cached tree that keeps the cache from
	// removing it until Close.
	lock *flock.Flock
	// hashes memoises InputHash: the tree does not change. A pointer, so
	// that a Snapshot stays printable and copyable.
	hashes *hashMemo
	// owners counts the open clones of an owned tree (see Clone); nil
	// while there was never a clone.
	owners *atomic.Int32
}

// Resolve returns the absolute, symlink-free path of rel (slash or OS
// separated, relative to Dir), or an error wrapping ErrPathEscapes when
// rel is absolute, climbs out with "..", or goes through a symlink that
// points outside Dir. The path must exist.
func (s *Snapshot) Resolve(rel string) (string, error) {
	rel = filepath.FromSlash(rel)
	if rel == "" {
		rel = "."
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("resolve %q: %w", rel, ErrPathEscapes)
	}
	root, err := filepath.EvalSymlinks(s.Dir)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", rel, err)
	}
	// Walk the path through symlinks first; only the final location
	// matters, wherever intermediate links point.
	real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", rel, err)
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("resolve %q: %w", rel, ErrPathEscapes)
	}
	return real, nil
}

// Open opens rel for reading through an os.Root, which refuses to leave
// Dir even through symlinks.
func (s *Snapshot) Open(rel string) (*os.File, error) {
	return s.root.Open(filepath.FromSlash(rel))
}

// FS returns the tree as an fs.FS confined to Dir, for walking and reading
// with io/fs; symlinks that leave Dir fail to open.
func (s *Snapshot) FS() fs.FS { return s.root.FS() }

// Dirty reports, in local mode, uncommitted or untracked changes: Dir
// then differs from Commit. Without RequireClean or signature keys the
// check (a walk of the whole working tree) runs while the caller goes on,
// and Dirty waits for it; a tree that could not be checked counts as dirty.
func (s *Snapshot) Dirty() bool { return s.dirty != nil && s.dirty() }

// Close releases the snapshot. A cached tree stays in the cache for the
// next Fetch; a file:// snapshot's directory is removed; a local working
// tree is left alone. Dir must not be used after Close.
func (s *Snapshot) Close() error {
	if s.dirty != nil {
		s.dirty() // a check still reading the tree finishes first
	}
	if s.root != nil {
		s.root.Close()
		s.root = nil
	}
	var err error
	if s.lock != nil {
		err = s.lock.Unlock()
		s.lock = nil
	}
	if s.owned {
		if s.owners == nil || s.owners.Add(-1) == 0 {
			err = errors.Join(err, removeTree(s.Dir))
		}
		s.owned = false
	}
	return err
}

// snapshot verifies commit and returns its tree: the cached one, written
// first if need be, when c is set; else a new directory.
func (f *fetcher) snapshot(ctx context.Context, c *cache, repo *git.Repository, commit *object.Commit, refName plumbing.ReferenceName) (*Snapshot, error) {
	s := &Snapshot{
		hashes:     &hashMemo{},
		URL:        f.loc.url,
		Ref:        f.ref,
		RefName:    refName.String(),
		Commit:     commit.Hash.String(),
		AuthorTime: commit.Author.When,
		Subject:    subject(commit.Message),
	}
	if refName == plumbing.HEAD {
		s.RefName = ""
	}
	if len(f.keys) > 0 {
		signer, err := f.keys.verify(commit)
		if err != nil {
			return nil, f.fail("verify signature", err)
		}
		s.SignedBy = signer
	}
	if c != nil {
		return f.cachedSnapshot(ctx, c, repo, commit, s)
	}
	dir, err := os.MkdirTemp(f.opts.SnapshotDir, "deliver-"+s.Commit[:12]+"-")
	if err != nil {
		return nil, f.fail("checkout", err)
	}
	s.Dir, s.owned = dir, true
	if s.root, err = os.OpenRoot(dir); err != nil {
		s.Close()
		return nil, f.fail("checkout", err)
	}
	files := map[string]string{}
	if err := f.writeCommit(ctx, commit, s.root, f.newTreeWriter(ctx, repo, ".", files)); err != nil {
		s.Close()
		return nil, err
	}
	s.hashes.m = files
	return s, nil
}

// cachedSnapshot points s at the cached tree of commit, writing it only if
// the cache has none, and then trims the cache to Options.KeepTrees.
func (f *fetcher) cachedSnapshot(ctx context.Context, c *cache, repo *git.Repository, commit *object.Commit, s *Snapshot) (*Snapshot, error) {
	name := s.Commit
	if f.opts.Submodules {
		// Same commit, different content: submodule directories filled.
		name += "-submodules"
	}
	var (
		werr    error
		files   map[string]string
		written bool
	)
	dir, lock, err := c.tree(name, func(dir string) error {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		defer root.Close()
		written, files = true, map[string]string{}
		w := f.newTreeWriter(ctx, repo, ".", files)
		if !f.opts.Submodules {
			// The files the newest cached tree shares with this one
			// are linked from it instead of written again.
			if b := openLinkBase(repo, c.treesDir(), c.newestTree(name)); b != nil {
				defer b.close()
				w.link = b
			}
		}
		// Kept apart: writeCommit's errors are already *Error values
		// with their own step.
		werr = f.writeCommit(ctx, commit, root, w)
		return werr
	})
	if werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, f.fail("checkout", err)
	}
	s.Dir, s.lock = dir, lock
	if s.root, err = os.OpenRoot(dir); err != nil {
		s.Close()
		return nil, f.fail("checkout", err)
	}
	if !written {
		// Written by an earlier fetch: the blob ids from the tree
		// objects, without reading the files (nil on any doubt).
		files = treeFiles(commit)
	}
	s.hashes.m = files
	keep := f.opts.KeepTrees
	if keep <= 0 {
		keep = defaultKeepTrees
	}
	c.collect(keep)
	return s, nil
}

// newTreeWriter returns a writer of repo's trees at dir of a root. When
// files is not nil, the git blob id of each regular file written is
// recorded there as InputHash would compute it, under "f:" and its path:
// a reconciler checking a thousand apps for changes then reads no file to
// hash it.
func (f *fetcher) newTreeWriter(ctx context.Context, repo *git.Repository, dir string, files map[string]string) *treeWriter {
	// Submodules are written into directories of this tree afterwards,
	// so with them sealing waits until the end: a non-root user cannot
	// create anything in a directory already made read-only.
	return &treeWriter{ctx: ctx, s: repo.Storer, base: dir, deferSeal: f.opts.Submodules, files: files}
}

// writeCommit writes commit's tree into root at w's dir, then its
// submodules when asked, and makes the result read-only.
func (f *fetcher) writeCommit(ctx context.Context, commit *object.Commit, root *os.Root, w *treeWriter) error {
	tree, err := commit.Tree()
	if err != nil {
		return f.fail("checkout", err)
	}
	dir := w.base
	top, err := root.OpenRoot(dir)
	if err != nil {
		return f.fail("checkout", err)
	}
	defer top.Close()
	if err := w.write(top, tree, dir, w.link.top()); err != nil {
		return f.fail("checkout", err)
	}
	if f.opts.Submodules && len(w.gitlinks) > 0 {
		if err := f.submodules(ctx, commit, root, dir, w.gitlinks); err != nil {
			return err
		}
	}
	// Deepest first, and the top last.
	for _, rel := range append(w.unsealed, ".") {
		if err := top.Chmod(rel, 0o555); err != nil {
			return f.fail("checkout", err)
		}
	}
	return nil
}

// treeFiles returns the "f:" InputHash of every regular file of commit's
// tree, from its tree objects (no blob is read); nil if a tree cannot be
// read, and InputHash then reads the files.
func treeFiles(commit *object.Commit) map[string]string {
	tree, err := commit.Tree()
	if err != nil {
		return nil
	}
	files := map[string]string{}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			return nil
		}
		switch e.Mode {
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			files["f:"+name] = e.Hash.String()
		}
	}
}

func subject(message string) string {
	line, _, _ := strings.Cut(strings.TrimLeft(message, "\n"), "\n")
	return strings.TrimSpace(line)
}

// gitlink is a submodule entry met while writing a tree.
type gitlink struct {
	path string
	hash plumbing.Hash
}

// treeWriter writes a git tree through os.Root handles, one per
// directory: even a hostile tree (duplicate names, a symlink followed by a
// directory of the same name) cannot make it write outside the root,
// because every entry is created by a single-component name relative to a
// directory it created itself, and os.Root never follows a symlink out.
// One handle per directory also keeps it to one openat per file, which
// matters with thousands of files.
type treeWriter struct {
	ctx context.Context
	s   storer.EncodedObjectStorer
	// base is the label of the top directory, the prefix of every path
	// write is given.
	base string
	// deferSeal leaves directories writable, listed in unsealed (relative
	// to the top, deepest first), for the caller to seal when done.
	deferSeal bool
	unsealed  []string
	gitlinks  []gitlink
	// files, when not nil, records the blob id of every regular file
	// written (see newTreeWriter).
	files map[string]string
	// link, when not nil, is a tree written before, whose files this one
	// shares are linked instead of written (see linkBase).
	link *linkBase
}

// seal makes the directory name in d, at label p, read-only now or, with
// deferSeal, records it for later.
func (w *treeWriter) seal(d *os.Root, name, p string) error {
	if w.deferSeal {
		rel := p
		if w.base != "." {
			rel = strings.TrimPrefix(p, w.base+"/")
		}
		w.unsealed = append(w.unsealed, rel)
		return nil
	}
	return d.Chmod(name, 0o555)
}

// write writes tree into dir, the directory held open by d; dir is only
// used for error messages and submodule paths. b is the same directory in
// the tree linked from, nil when there is none.
func (w *treeWriter) write(d *os.Root, tree *object.Tree, dir string, b *baseDir) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	var df *os.File // d, for linking into it
	if b != nil {
		var err error
		if df, err = d.Open("."); err != nil {
			return err
		}
		defer df.Close()
	}
	for _, e := range tree.Entries {
		if !validName(e.Name) {
			return fmt.Errorf("tree %s: invalid entry name %q", tree.Hash, e.Name)
		}
		p := path.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			if err := w.dir(d, e, p, b); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if !b.linked(e, df) {
				if err := w.file(d, e); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			if w.files != nil {
				w.files["f:"+p] = e.Hash.String()
			}
		case filemode.Symlink:
			blob, err := object.GetBlob(w.s, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			target, err := readBlob(blob)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			// Written as is, wherever it points: Resolve, Open and FS
			// are what refuse to follow it out of the snapshot.
			if err := d.Symlink(string(target), e.Name); err != nil {
				return err
			}
		case filemode.Submodule:
			// Like git without --recurse-submodules: an empty directory.
			if err := d.Mkdir(e.Name, 0o755); err != nil {
				return err
			}
			w.gitlinks = append(w.gitlinks, gitlink{path: p, hash: e.Hash})
			if !w.deferSeal {
				// Left empty: seal it like any other directory. With
				// submodules, their own checkout seals it.
				if err := d.Chmod(e.Name, 0o555); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s: unsupported file mode %s", p, e.Mode)
		}
	}
	return nil
}

func (w *treeWriter) dir(d *os.Root, e object.TreeEntry, p string, b *baseDir) error {
	// Mkdir fails if the name exists (a duplicate entry or a symlink
	// written before), so OpenRoot below opens the directory just made.
	if err := d.Mkdir(e.Name, 0o755); err != nil {
		return err
	}
	sub, err := object.GetTree(w.s, e.Hash)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	child, err := d.OpenRoot(e.Name)
	if err != nil {
		return err
	}
	cb := b.child(w.link, e.Name)
	err = w.write(child, sub, p, cb)
	cb.close()
	child.Close()
	if err != nil {
		return err
	}
	// Sealed deepest first, once its content is complete.
	return w.seal(d, e.Name, p)
}

func (w *treeWriter) file(d *os.Root, e object.TreeEntry) error {
	blob, err := object.GetBlob(w.s, e.Hash)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o444)
	if e.Mode == filemode.Executable {
		mode = 0o555
	}
	// O_EXCL: a duplicate entry in a crafted tree is an error, not a
	// silent overwrite.
	out, err := d.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	r, err := blob.Reader()
	if err != nil {
		out.Close()
		return err
	}
	_, err = io.Copy(out, r)
	r.Close()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// maxSymlinkTarget bounds what is read from a symlink blob; real targets
// are short, and a huge blob in symlink mode is an attack or corruption.
const maxSymlinkTarget = 4096

func readBlob(b *object.Blob) ([]byte, error) {
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxSymlinkTarget+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSymlinkTarget {
		return nil, errors.New("symlink target too long")
	}
	return data, nil
}

// validName refuses tree entry names git itself would never write and
// that could move a write elsewhere: separators, "..", ".git".
func validName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00") &&
		!strings.EqualFold(name, ".git")
}
