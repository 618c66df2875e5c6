package source_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestSnapshotClone: a clone keeps the tree after the original is
// closed, for a cached tree even when later fetches trim the cache
// (KeepTrees 1) and for a file:// tree until the last handle closes; a
// closed snapshot cannot be cloned.
func TestSnapshotClone(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name string
		opts source.Options
	}{
		{"cached tree", source.Options{URL: f.url, Ref: "release", CacheDir: cacheDir(t), KeepTrees: 1}},
		{"file url", source.Options{URL: "file://" + f.repo.Dir, Ref: "release", SnapshotDir: t.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := fetch(t, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Clone()
			if err != nil {
				t.Fatal(err)
			}
			if c.Commit != s.Commit || c.Dir != s.Dir {
				t.Errorf("clone at %s in %s, want %s in %s", c.Commit, c.Dir, s.Commit, s.Dir)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Other commits fetched: the cache keeps one tree, and would
			// remove this one were it not held.
			for _, ref := range []string{"main", f.c0} {
				o := tt.opts
				o.Ref = ref
				if _, err := fetch(t, o); err != nil {
					t.Fatal(err)
				}
			}
			if got := readFile(t, c, "deploy/app.yaml"); got != "version: v1\n" {
				t.Errorf("clone reads %q after the original closed", got)
			}
			if _, err := s.Clone(); !errors.Is(err, source.ErrClosed) {
				t.Errorf("Clone of a closed snapshot: %v, want ErrClosed", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.opts.CacheDir == "" {
				if _, err := os.Stat(filepath.Join(c.Dir, "deploy", "app.yaml")); !os.IsNotExist(err) {
					t.Errorf("file:// tree still there after the last handle closed: %v", err)
				}
			}
		})
	}
}
