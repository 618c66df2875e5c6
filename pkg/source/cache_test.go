package source_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestCacheConcurrentGoroutines runs fetches of different refs of one
// repository into one cache at once; the lock must keep the cache sound.
func TestCacheConcurrentGoroutines(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := cacheDir(t)
	refs := []string{"main", "release", "v1", f.c0, "main", "light"}
	want := map[string]string{"main": f.c2, "release": f.c1, "v1": f.c1, f.c0: f.c0, "light": f.c1}
	var wg sync.WaitGroup
	errs := make([]error, len(refs))
	got := make([]string, len(refs))
	for i, ref := range refs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := source.Fetch(ctx, source.Options{URL: f.url, Ref: ref, CacheDir: cache, SnapshotDir: t.TempDir()})
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = s.Commit
			errs[i] = s.Close()
		})
	}
	wg.Wait()
	for i, ref := range refs {
		if errs[i] != nil {
			t.Errorf("fetch %s: %v", ref, errs[i])
		} else if got[i] != want[ref] {
			t.Errorf("fetch %s = %s, want %s", ref, got[i], want[ref])
		}
	}
	// Everything is cached now.
	s := mustFetch(t, source.Options{URL: f.url, Ref: "release", CacheDir: cache})
	if s.Fetched {
		t.Error("fetch after concurrent fetches downloaded again")
	}
}

// TestCacheConcurrentProcesses runs Fetch in two processes (this test
// binary re-executed) against one cache directory.
func TestCacheConcurrentProcesses(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := cacheDir(t)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i, ref := range []string{"main", f.c0} {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFetchProcess$")
			cmd.Env = append(os.Environ(),
				"DELIVER_SOURCE_HELPER=1",
				"HELPER_URL="+f.url, "HELPER_REF="+ref, "HELPER_CACHE="+cache, "HELPER_SNAPSHOTS="+t.TempDir())
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	wg.Wait()
	for i, want := range []string{f.c2, f.c0} {
		if errs[i] != nil || !strings.Contains(outs[i], "commit="+want) {
			t.Errorf("process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
}

// TestHelperFetchProcess is the child of the multi-process cache tests.
// With HELPER_HOLD=1 it keeps the snapshot open until its stdin is closed,
// then reads deploy/app.yaml from it, to show the tree survived whatever
// the parent did meanwhile.
func TestHelperFetchProcess(t *testing.T) {
	if os.Getenv("DELIVER_SOURCE_HELPER") != "1" {
		t.Skip("helper process only")
	}
	keep, _ := strconv.Atoi(os.Getenv("HELPER_KEEP"))
	s, err := source.Fetch(context.Background(), source.Options{
		URL: os.Getenv("HELPER_URL"), Ref: os.Getenv("HELPER_REF"),
		CacheDir: os.Getenv("HELPER_CACHE"), SnapshotDir: os.Getenv("HELPER_SNAPSHOTS"),
		KeepTrees: keep,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Printf("commit=%s\n", s.Commit)
	if os.Getenv("HELPER_HOLD") == "1" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		b, err := fs.ReadFile(s.FS(), "deploy/app.yaml")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("app=%q\n", b)
	}
}

// TestCacheTreeHeldByOtherProcess: a tree another process holds open must
// survive collection, and go once released.
func TestCacheTreeHeldByOtherProcess(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := cacheDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFetchProcess$")
	cmd.Env = append(os.Environ(),
		"DELIVER_SOURCE_HELPER=1", "HELPER_HOLD=1", "HELPER_KEEP=1",
		"HELPER_URL="+f.url, "HELPER_REF=release", "HELPER_CACHE="+cache, "HELPER_SNAPSHOTS="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "commit="+f.c1 {
		t.Fatalf("child: %q %v\n%s", out.Text(), out.Err(), stderr.String())
	}

	// The child holds c1; collecting down to one tree must spare it.
	opts := source.Options{URL: f.url, CacheDir: cache, KeepTrees: 1}
	mustFetch(t, opts)
	if diff := cmp.Diff(sorted(f.c1, f.c2), cachedTrees(t, cache)); diff != "" {
		t.Errorf("trees while the child holds c1 (-want +got):\n%s", diff)
	}

	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil || !strings.HasPrefix(string(rest), "app=\"version: v1\\n\"\n") {
		t.Fatalf("child after collection: %v %q\n%s", err, rest, stderr.String())
	}
	mustFetch(t, opts)
	if diff := cmp.Diff([]string{f.c2}, cachedTrees(t, cache)); diff != "" {
		t.Errorf("trees after the child released c1 (-want +got):\n%s", diff)
	}
}

// cachedTrees lists the names of the trees in cache, sorted.
func cachedTrees(t *testing.T, cache string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(cache, "*", "trees", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".lock") {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

// treesDir returns the trees directory of the only repository in cache.
func treesDir(t *testing.T, cache string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(cache, "*", "trees"))
	if len(dirs) != 1 {
		t.Fatalf("cache holds trees directories %v, want one", dirs)
	}
	return dirs[0]
}

// TestCacheReusesTree: fetching a cached commit again returns the same
// directory without writing a file, also after the first snapshot closed.
func TestCacheReusesTree(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	opts := source.Options{URL: f.url, Ref: "main", CacheDir: cacheDir(t)}
	first := mustFetch(t, opts)
	before, err := os.Stat(filepath.Join(first.Dir, "deploy", "app.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	open := mustFetch(t, opts) // while first is open
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	closed := mustFetch(t, opts) // after first was closed
	for name, s := range map[string]*source.Snapshot{"while open": open, "after close": closed} {
		if s.Dir != first.Dir || s.Fetched {
			t.Errorf("%s: Dir=%s Fetched=%v, want %s false", name, s.Dir, s.Fetched, first.Dir)
		}
		after, err := os.Stat(filepath.Join(s.Dir, "deploy", "app.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("%s: deploy/app.yaml was written again", name)
		}
	}
	if diff := cmp.Diff([]string{f.c2}, cachedTrees(t, opts.CacheDir)); diff != "" {
		t.Errorf("trees (-want +got):\n%s", diff)
	}
}

// TestCacheKeepTrees fetches four commits in turn, closing each snapshot;
// only the KeepTrees most recently used trees may remain. The last fetch
// reuses the oldest tree, which makes it the most recently used again.
func TestCacheKeepTrees(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	f.repo.WriteFile("deploy/app.yaml", "version: v3\n")
	c3 := f.repo.CommitAll("v3")
	tests := []struct {
		name string
		keep int
		want []string
	}{
		{"keep 1", 1, []string{f.c1}},
		{"keep 2", 2, sorted(f.c1, c3)},
		{"default keeps 3", 0, sorted(f.c1, c3, f.c2)},
		{"keep more than exist", 10, sorted(f.c0, f.c1, f.c2, c3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := cacheDir(t)
			for _, ref := range []string{f.c1, f.c0, f.c2, c3, f.c1} {
				s, err := fetch(t, source.Options{URL: f.url, Ref: ref, CacheDir: cache, KeepTrees: tt.keep})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tt.want, cachedTrees(t, cache)); diff != "" {
				t.Errorf("trees (-want +got):\n%s", diff)
			}
			// Every lock file belongs to a kept tree.
			locks, _ := filepath.Glob(filepath.Join(treesDir(t, cache), "*.lock"))
			if len(locks) != len(tt.want) {
				t.Errorf("lock files %v, want one per kept tree", locks)
			}
		})
	}
}

// TestCacheTreeHeldOpen: a snapshot still open in this process is not
// collected, however old; it goes after Close and the next Fetch.
func TestCacheTreeHeldOpen(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := cacheDir(t)
	opts := func(ref string) source.Options {
		return source.Options{URL: f.url, Ref: ref, CacheDir: cache, KeepTrees: 1}
	}
	held := mustFetch(t, opts("release"))
	mustFetch(t, opts(f.c0))
	mustFetch(t, opts("main"))
	if got := readFile(t, held, "deploy/app.yaml"); got != "version: v1\n" {
		t.Errorf("held snapshot reads %q after collection", got)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	mustFetch(t, opts("main"))
	// c0 was open too (mustFetch closes only at the end of the test).
	if diff := cmp.Diff(sorted(f.c0, f.c2), cachedTrees(t, cache)); diff != "" {
		t.Errorf("trees (-want +got):\n%s", diff)
	}
}

// TestCacheTreeLeftovers damages the tree store the way a crash or a
// person could; the next Fetch must still return a complete tree and
// clean up.
func TestCacheTreeLeftovers(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name   string
		damage func(t *testing.T, trees string)
	}{
		{"interrupted write", func(t *testing.T, trees string) {
			tmp := filepath.Join(trees, ".tmp-"+f.c1+"-123")
			if err := os.MkdirAll(filepath.Join(tmp, "deploy"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := writeFile(filepath.Join(tmp, "deploy", "half"), "x"); err != nil {
				t.Fatal(err)
			}
			// Read-only like a real tree, which removal must cope with.
			if err := os.Chmod(filepath.Join(tmp, "deploy"), 0o555); err != nil {
				t.Fatal(err)
			}
		}},
		{"tree replaced by a file", func(t *testing.T, trees string) {
			p := filepath.Join(trees, f.c2)
			if err := removeAll(p); err != nil {
				t.Fatal(err)
			}
			if err := writeFile(p, "junk"); err != nil {
				t.Fatal(err)
			}
		}},
		{"lock file without tree", func(t *testing.T, trees string) {
			if err := writeFile(filepath.Join(trees, f.c1+".lock"), ""); err != nil {
				t.Fatal(err)
			}
		}},
		{"tree without lock file", func(t *testing.T, trees string) {
			if err := os.Remove(filepath.Join(trees, f.c2+".lock")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := cacheDir(t)
			opts := source.Options{URL: f.url, Ref: "main", CacheDir: cache}
			s := mustFetch(t, opts)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			trees := treesDir(t, cache)
			tt.damage(t, trees)
			s = mustFetch(t, opts)
			if got := readFile(t, s, "deploy/app.yaml"); got != "version: v2\n" {
				t.Errorf("deploy/app.yaml = %q", got)
			}
			entries, err := os.ReadDir(trees)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if diff := cmp.Diff([]string{f.c2, f.c2 + ".lock"}, names); diff != "" {
				t.Errorf("trees directory (-want +got):\n%s", diff)
			}
		})
	}
}

// removeAll removes a read-only tree.
func removeAll(dir string) error {
	makeWritable(dir)
	return os.RemoveAll(dir)
}

// TestCacheCorruptRecovers damages the cache in several ways; the next
// Fetch must notice, re-clone and succeed.
func TestCacheCorruptRecovers(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name    string
		corrupt func(t *testing.T, repoDir string)
	}{
		{"truncated packs", func(t *testing.T, repoDir string) {
			packs, _ := filepath.Glob(filepath.Join(repoDir, "objects", "pack", "*.pack"))
			if len(packs) == 0 {
				t.Fatal("no pack in cache")
			}
			for _, p := range packs {
				// Packs are read-only; without this only root could
				// damage them.
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, 40); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"garbage config", func(t *testing.T, repoDir string) {
			if err := os.WriteFile(filepath.Join(repoDir, "config"), []byte("[[[not git config"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"objects removed", func(t *testing.T, repoDir string) {
			if err := os.RemoveAll(filepath.Join(repoDir, "objects")); err != nil {
				t.Fatal(err)
			}
		}},
		{"not a repository", func(t *testing.T, repoDir string) {
			if err := os.RemoveAll(repoDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(repoDir, []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := cacheDir(t)
			opts := source.Options{URL: f.url, Ref: "main", CacheDir: cache}
			mustFetch(t, opts)
			repos, _ := filepath.Glob(filepath.Join(cache, "*", "repo"))
			if len(repos) != 1 {
				t.Fatalf("cache holds repositories %v, want one", repos)
			}
			tt.corrupt(t, repos[0])
			s := mustFetch(t, opts)
			if s.Commit != f.c2 || !s.Fetched {
				t.Errorf("after corruption: Commit=%s Fetched=%v, want %s true", s.Commit, s.Fetched, f.c2)
			}
			if got := readFile(t, s, "deploy/app.yaml"); got != "version: v2\n" {
				t.Errorf("deploy/app.yaml = %q", got)
			}
			if again := mustFetch(t, opts); again.Fetched {
				t.Error("recovered cache is not reused")
			}
		})
	}
}
