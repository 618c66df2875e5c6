package source

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gofrs/flock"
	"github.com/google/go-cmp/cmp"
)

// TestCacheTreePublish covers cache.tree directly: a failed write leaves
// nothing behind and releases the tree lock; a successful one is published
// once and then reused without calling write again.
func TestCacheTreePublish(t *testing.T) {
	c := &cache{dir: t.TempDir()}
	t.Cleanup(func() { _ = removeTree(c.dir) })
	lockPath := filepath.Join(c.treesDir(), "tree.lock")
	boom := errors.New("boom")

	writes := 0
	write := func(fail error) func(string) error {
		return func(dir string) error {
			writes++
			if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o444); err != nil {
				return err
			}
			if err := os.Chmod(dir, 0o555); err != nil {
				return err
			}
			return fail
		}
	}

	if _, _, err := c.tree("tree", write(boom)); !errors.Is(err, boom) {
		t.Fatalf("failing write: err = %v, want %v", err, boom)
	}
	if got := entries(t, c.treesDir()); !cmp.Equal(got, []string{"tree.lock"}) {
		t.Errorf("after failed write, trees holds %v, want only the lock file", got)
	}
	probe := flock.New(lockPath)
	if ok, err := probe.TryLock(); err != nil || !ok {
		t.Fatalf("tree lock not released after failed write: %v %v", ok, err)
	}
	_ = probe.Unlock()

	for i := range 2 {
		dir, lock, err := c.tree("tree", write(nil))
		if err != nil {
			t.Fatal(err)
		}
		if dir != filepath.Join(c.treesDir(), "tree") {
			t.Errorf("dir = %s", dir)
		}
		// Held: an exclusive lock (what the collector takes) must fail.
		if ok, _ := probe.TryLock(); ok {
			_ = probe.Unlock()
			t.Errorf("round %d: tree lock not held", i)
		}
		if err := lock.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 2 {
		t.Errorf("write called %d times, want 2 (one failed, one published)", writes)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
