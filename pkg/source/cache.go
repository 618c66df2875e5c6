package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/gofrs/flock"
)

// lockPollInterval is how often a waiting Fetch retries the cache lock;
// the wait as a whole is bounded by the context.
const lockPollInterval = 25 * time.Millisecond

// cache is the bare repository kept for one remote URL under the cache
// directory, held under an exclusive file lock.
//
// Layout: <CacheDir>/<sha256(url)[:32]>/ is a bare repository whose
// "origin" remote records the URL, and <CacheDir>/<key>.lock is its lock.
// The lock file sits next to, not inside, the repository so that wiping a
// corrupt repository never removes a lock another process is waiting on.
type cache struct {
	dir  string
	url  string
	lock *flock.Flock
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
	return &cache{dir: filepath.Join(base, key), url: url, lock: fl}, nil
}

func (c *cache) unlock() { _ = c.lock.Unlock() }

// open opens the cached repository, creating an empty one if there is
// none. existed reports whether anything was on disk before, which is what
// decides if a failure may be a corrupt cache worth wiping.
func (c *cache) open() (repo *git.Repository, existed bool, err error) {
	_, statErr := os.Stat(c.dir)
	existed = statErr == nil
	if existed {
		repo, err = git.PlainOpen(c.dir)
		if err != nil {
			return nil, true, err
		}
		return repo, true, nil
	}
	repo, err = git.PlainInit(c.dir, true)
	if err != nil {
		return nil, false, err
	}
	_, err = repo.CreateRemote(&config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{c.url}})
	if err != nil {
		return nil, false, err
	}
	return repo, false, nil
}

// wipe removes the cached repository so the next open starts empty.
func (c *cache) wipe() error {
	if err := os.RemoveAll(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
