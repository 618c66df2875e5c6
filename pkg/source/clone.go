package source

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/gofrs/flock"
)

// ErrClosed is returned by Clone of a closed Snapshot.
var ErrClosed = errors.New("snapshot closed")

// Clone returns another handle on s's tree, closed on its own: the tree
// stays until s and every clone are closed. Consumers that each own
// their snapshot (one reconciler engine per cluster) share one fetch this
// way, and its memoised input hashes, instead of fetching and hashing the
// commit once each. s must be open.
func (s *Snapshot) Clone() (*Snapshot, error) {
	if s.root == nil {
		return nil, fmt.Errorf("clone %.12s: %w", s.Commit, ErrClosed)
	}
	c := *s
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("clone %.12s: %w", s.Commit, err)
	}
	c.root = root
	if s.lock != nil {
		// A shared lock of its own on the cached tree: s's is held, so
		// no collector holds it exclusively, and none can until both
		// are released.
		l := flock.New(s.lock.Path())
		ok, err := l.TryRLock()
		if err == nil && !ok {
			err = errors.New("tree lock held exclusively")
		}
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("clone %.12s: lock tree: %w", s.Commit, err)
		}
		c.lock = l
	}
	if s.owned {
		if s.owners == nil {
			s.owners = &atomic.Int32{}
			s.owners.Store(1)
		}
		s.owners.Add(1)
		c.owners = s.owners
	}
	return &c, nil
}
