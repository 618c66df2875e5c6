package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/gofrs/flock"
)

// lockPollInterval is how often a waiting Fetch retries the cache lock;
// the wait as a whole is bounded by the context.
const lockPollInterval = 25 * time.Millisecond

// defaultKeepTrees is Options.KeepTrees when unset: the tree in use, the
// one before it (a rollback target) and one more.
const defaultKeepTrees = 3

// tmpPrefix marks a tree being written. Writers hold the cache lock, so
// whoever holds it and sees one knows it is left over from a crash.
const tmpPrefix = ".tmp-"

// cache is what is kept for one remote URL under the cache directory,
// held under an exclusive file lock.
//
// Layout, with key = sha256(url)[:32]:
//
//	<CacheDir>/<key>.lock              the cache lock (flock)
//	<CacheDir>/<key>/repo/             bare repository, remote "origin" = url
//	<CacheDir>/<key>/trees/<name>/     checked-out tree of one commit, read-only
//	<CacheDir>/<key>/trees/<name>.lock shared-locked by every open Snapshot of
//	                                   the tree; its mtime is the last use
//
// <name> is the commit SHA, with "-submodules" appended when submodules
// were checked out into it. The cache lock sits next to, not inside, the
// key directory so that removing anything in there never removes a lock
// another process is waiting on. Trees live outside repo/ so that wiping a
// corrupt repository leaves the trees that open Snapshots are reading.
//
// Lock discipline: everything in <key>/ is created, changed and removed
// only under the cache lock, with one exception: a Snapshot releases its
// shared tree lock in Close without it. A tree is removed only by a
// holder of the cache lock that also got the tree lock exclusively, so a
// tree in use by any process is never removed, and no one can start using
// a tree while it is being removed.
type cache struct {
	dir  string
	url  string
	lock *flock.Flock
	// existed reports whether dir was on disk when the lock was taken.
	existed bool
}

func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "deliver", "git"), nil
}

// lockCache takes the exclusive lock for url's cache, waiting as long as
// ctx allows. flock(2) locks also exclude other goroutines of this process
// because each lockCache opens its own file description.
func lockCache(ctx context.Context, base, url string) (*cache, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(url))
	key := hex.EncodeToString(sum[:])[:32]
	fl := flock.New(filepath.Join(base, key+".lock"))
	ok, err := fl.TryLockContext(ctx, lockPollInterval)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("lock %s: %w", fl.Path(), ctx.Err())
	}
	c := &cache{dir: filepath.Join(base, key), url: url, lock: fl}
	_, err = os.Stat(c.dir)
	c.existed = err == nil
	return c, nil
}

func (c *cache) unlock() { _ = c.lock.Unlock() }

func (c *cache) repoDir() string  { return filepath.Join(c.dir, "repo") }
func (c *cache) treesDir() string { return filepath.Join(c.dir, "trees") }

// open opens the cached repository, creating an empty one if there is
// none. existed reports whether anything was on disk before, which is what
// decides if a failure may be a corrupt cache worth wiping.
func (c *cache) open() (repo *git.Repository, existed bool, err error) {
	_, statErr := os.Lstat(c.repoDir())
	existed = statErr == nil
	if existed {
		repo, err = git.PlainOpen(c.repoDir())
		if err != nil {
			return nil, true, err
		}
		return repo, true, nil
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, false, err
	}
	repo, err = git.PlainInit(c.repoDir(), true)
	if err != nil {
		return nil, false, err
	}
	_, err = repo.CreateRemote(&config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{c.url}})
	if err != nil {
		return nil, false, err
	}
	return repo, false, nil
}

// wipe removes the cached repository so the next open starts empty. The
// trees stay: they were complete when published and may be in use.
func (c *cache) wipe() error {
	if err := os.RemoveAll(c.repoDir()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// discard removes everything a failed first Fetch created, so that a
// failure leaves no half-made cache behind. Only valid when the cache did
// not exist before this lock was taken: then nothing in it can be in use.
func (c *cache) discard() error {
	if c.existed {
		return nil
	}
	return removeTree(c.dir)
}

// tree returns the checked-out tree called name, calling write to fill a
// new directory when there is none yet, and a shared lock on it that the
// caller must release when done. The tree is written into a temporary
// directory and renamed into place when complete, so a crash never leaves
// a partial tree under its final name. The caller holds the cache lock.
func (c *cache) tree(name string, write func(dir string) error) (string, *flock.Flock, error) {
	trees := c.treesDir()
	if err := os.MkdirAll(trees, 0o700); err != nil {
		return "", nil, err
	}
	// Shared-lock first: from here on no collector may remove the tree.
	lock := flock.New(filepath.Join(trees, name+".lock"))
	ok, err := lock.TryRLock()
	if err == nil && !ok {
		// Only a collector holding the cache lock takes it exclusively,
		// and the cache lock is ours.
		err = errors.New("tree lock held exclusively without the cache lock")
	}
	if err != nil {
		return "", nil, fmt.Errorf("lock tree %s: %w", name, err)
	}
	dir, err := c.publish(trees, name, write)
	if err == nil {
		// The lock file's mtime is the tree's last use, which is what
		// the collector orders by. Touching the tree itself would need
		// write permission on a directory that is read-only on purpose.
		now := time.Now()
		err = os.Chtimes(lock.Path(), now, now)
	}
	if err != nil {
		_ = lock.Unlock()
		return "", nil, err
	}
	return dir, lock, nil
}

// publish returns the directory of tree name, writing it first if there
// is none.
func (c *cache) publish(trees, name string, write func(dir string) error) (string, error) {
	dir := filepath.Join(trees, name)
	info, statErr := os.Lstat(dir)
	switch {
	case statErr == nil && info.IsDir():
		// Published earlier: complete, since only a rename publishes.
	case statErr == nil || !errors.Is(statErr, fs.ErrNotExist):
		// Not a directory, or unreadable: not something we published.
		if err := removeTree(dir); err != nil {
			return "", err
		}
		fallthrough
	default:
		tmp, err := os.MkdirTemp(trees, tmpPrefix+name+"-")
		if err != nil {
			return "", err
		}
		if err := write(tmp); err != nil {
			_ = removeTree(tmp)
			return "", err
		}
		if err := os.Rename(tmp, dir); err != nil {
			_ = removeTree(tmp)
			return "", err
		}
	}
	return dir, nil
}

// collect keeps the keep most recently used trees and removes the others
// that no Snapshot holds, plus leftovers of interrupted writes. A tree in
// use stays until it is released and a later Fetch collects it. The caller
// holds the cache lock.
//
// It is best effort: a tree that cannot be removed now is tried again on
// the next Fetch, and failing a Fetch whose snapshot is ready would trade
// availability for disk space.
func (c *cache) collect(keep int) {
	trees := c.treesDir()
	entries, err := os.ReadDir(trees)
	if err != nil {
		return
	}
	dirs := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			_ = removeTree(filepath.Join(trees, name))
		case e.IsDir():
			dirs[name] = true
		}
	}
	for i, t := range c.published(entries) {
		if i < keep {
			continue
		}
		c.remove(t.name)
	}
	// Lock files whose tree is gone (removed by hand, or a crash between
	// the two removals below).
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".lock"); ok && !dirs[name] {
			c.remove(name)
		}
	}
}

// cachedTree is a published tree and its last use (the mtime of its lock
// file; zero without one).
type cachedTree struct {
	name string
	used time.Time
}

// published returns the published trees among entries of the trees
// folder, most recently used first. A tree without a lock file (a crash
// right after the rename) sorts as the oldest.
func (c *cache) published(entries []os.DirEntry) []cachedTree {
	var found []cachedTree
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		t := cachedTree{name: name}
		if info, err := os.Stat(filepath.Join(c.treesDir(), name+".lock")); err == nil {
			t.used = info.ModTime()
		}
		found = append(found, t)
	}
	sort.Slice(found, func(i, j int) bool {
		if !found[i].used.Equal(found[j].used) {
			return found[i].used.After(found[j].used)
		}
		return found[i].name > found[j].name
	})
	return found
}

// newestTree returns the name of the most recently used tree other than
// except; "" when there is none. The caller holds the cache lock, so no
// collector removes it meanwhile.
func (c *cache) newestTree(except string) string {
	entries, err := os.ReadDir(c.treesDir())
	if err != nil {
		return ""
	}
	for _, t := range c.published(entries) {
		if t.name != except && !t.used.IsZero() {
			return t.name
		}
	}
	return ""
}

// remove deletes the tree name and its lock file unless a Snapshot holds
// it. The caller holds the cache lock.
func (c *cache) remove(name string) {
	lockPath := filepath.Join(c.treesDir(), name+".lock")
	fl := flock.New(lockPath)
	ok, err := fl.TryLock()
	if err != nil || !ok {
		return
	}
	defer fl.Unlock()
	if err := removeTree(filepath.Join(c.treesDir(), name)); err != nil {
		return
	}
	// Removing a lock file is safe here: new holders take it only under
	// the cache lock, which is ours.
	_ = os.Remove(lockPath)
}

// removeTree removes dir, a tree whose directories are read-only: they
// are made writable first so that RemoveAll works for a non-root user.
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
