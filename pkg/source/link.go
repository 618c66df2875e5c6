package source

import (
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// linkBase is a tree the cache holds already (the newest one), from which
// a new tree links the files it shares instead of writing them: a commit
// that changes ten apps of a thousand shares all but a few files with the
// one before. A file is linked only where both commits' trees hold the
// same blob id with the same mode at the same path, and the base holds a
// regular file there; anything else is written from its blob. Both trees
// are read-only once published, so a shared inode never changes.
type linkBase struct {
	s    storer.EncodedObjectStorer
	root *os.Root
	tree *object.Tree
}

// openLinkBase opens the cached tree name, of a commit of repo, as a base
// to link from; nil when there is none or it cannot be used (a name that
// is not a commit, a commit no longer in the repository).
func openLinkBase(repo *git.Repository, trees, name string) *linkBase {
	if !plumbing.IsHash(name) {
		return nil // none, or a tree with submodules
	}
	commit, err := repo.CommitObject(plumbing.NewHash(name))
	if err != nil {
		return nil
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil
	}
	root, err := os.OpenRoot(filepath.Join(trees, name))
	if err != nil {
		return nil
	}
	return &linkBase{s: repo.Storer, root: root, tree: tree}
}

func (l *linkBase) close() {
	if l != nil {
		l.root.Close()
	}
}

// top returns the base's top directory; nil without a base.
func (l *linkBase) top() *baseDir {
	if l == nil {
		return nil
	}
	return newBaseDir(l.root, l.tree, false)
}

// baseDir is one directory of a linkBase, open for linking from.
type baseDir struct {
	root    *os.Root
	f       *os.File // root, for linkat
	entries map[string]object.TreeEntry
	owned   bool // root is closed with the baseDir
}

func newBaseDir(root *os.Root, tree *object.Tree, owned bool) *baseDir {
	f, err := root.Open(".")
	if err != nil {
		if owned {
			root.Close()
		}
		return nil
	}
	b := &baseDir{root: root, f: f, entries: make(map[string]object.TreeEntry, len(tree.Entries)), owned: owned}
	for _, e := range tree.Entries {
		b.entries[e.Name] = e
	}
	return b
}

func (b *baseDir) close() {
	if b == nil {
		return
	}
	b.f.Close()
	if b.owned {
		b.root.Close()
	}
}

// child returns the subdirectory name of b; nil when b has none of that
// name.
func (b *baseDir) child(l *linkBase, name string) *baseDir {
	if b == nil {
		return nil
	}
	e, ok := b.entries[name]
	if !ok || e.Mode != filemode.Dir {
		return nil
	}
	tree, err := object.GetTree(l.s, e.Hash)
	if err != nil {
		return nil
	}
	root, err := b.root.OpenRoot(name)
	if err != nil {
		return nil
	}
	return newBaseDir(root, tree, true)
}

// linked links e from b into the directory dir, and reports whether it
// did; false means e is to be written.
func (b *baseDir) linked(e object.TreeEntry, dir *os.File) bool {
	if b == nil {
		return false
	}
	be, ok := b.entries[e.Name]
	if !ok || be.Hash != e.Hash || be.Mode != e.Mode {
		return false
	}
	// The base's tree says a regular file; its directory must agree.
	if fi, err := b.root.Lstat(e.Name); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return linkAt(b.f, e.Name, dir) == nil
}
