package source_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// fixture is a repository "app" served over HTTP, with this history:
//
//	c0 "initial"          (no ref points here)
//	c1 "add app v1"       release, v1 (annotated), light (lightweight)
//	c2 "bump app to v2"   main (HEAD)
type fixture struct {
	root string
	repo *gitserver.Repo
	srv  *gitserver.HTTPServer
	c0   string
	c1   string
	c2   string
	url  string
}

func newFixture(t *testing.T, opts gitserver.HTTPOptions) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{root: root}
	f.repo = gitserver.NewRepo(t, filepath.Join(root, "app"))
	f.repo.WriteFile("README.md", "app\n")
	f.c0 = f.repo.CommitAll("initial")
	f.repo.WriteFile("deploy/app.yaml", "version: v1\n")
	// Incompressible bulk that a second, incremental fetch must not
	// download again.
	f.repo.WriteFile("deploy/blob.bin", randomHex(t, 64<<10))
	f.c1 = f.repo.CommitAll("add app v1\n\nlonger description")
	f.repo.Git("branch", "release")
	f.repo.Git("tag", "-a", "-m", "release v1", "v1")
	f.repo.Git("tag", "light")
	f.repo.WriteFile("deploy/app.yaml", "version: v2\n")
	f.c2 = f.repo.CommitAll("bump app to v2")
	f.srv = gitserver.NewHTTP(t, root, opts)
	f.url = f.srv.RepoURL("app")
	return f
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// fetch runs source.Fetch with a short timeout and closes the snapshot at
// the end of the test.
func fetch(t testing.TB, opts source.Options) (*source.Snapshot, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if opts.SnapshotDir == "" {
		opts.SnapshotDir = t.TempDir()
	}
	if opts.CacheDir == "" {
		// Never the user's real cache.
		opts.CacheDir = cacheDir(t)
	}
	s, err := source.Fetch(ctx, opts)
	if s != nil {
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close snapshot: %v", err)
			}
		})
	}
	return s, err
}

func mustFetch(t testing.TB, opts source.Options) *source.Snapshot {
	t.Helper()
	s, err := fetch(t, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return s
}

// readFile reads rel from the snapshot through its confined API.
func readFile(t testing.TB, s *source.Snapshot, rel string) string {
	t.Helper()
	p, err := s.Resolve(rel)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", rel, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cacheDir returns a new cache directory for the test. Cached trees are
// read-only, which would make the TempDir cleanup fail for a non-root
// user; a cleanup registered after TempDir's runs before it and makes
// them writable again.
func cacheDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	tb.Cleanup(func() { makeWritable(dir) })
	return dir
}

// makeWritable gives the owner write permission on every directory under
// dir, so that it can be removed.
func makeWritable(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}
