package source_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestCacheConcurrentGoroutines runs fetches of different refs of one
// repository into one cache at once; the lock must keep the cache sound.
func TestCacheConcurrentGoroutines(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := t.TempDir()
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
	cache := t.TempDir()
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

// TestHelperFetchProcess is the child of TestCacheConcurrentProcesses.
func TestHelperFetchProcess(t *testing.T) {
	if os.Getenv("DELIVER_SOURCE_HELPER") != "1" {
		t.Skip("helper process only")
	}
	s, err := source.Fetch(context.Background(), source.Options{
		URL: os.Getenv("HELPER_URL"), Ref: os.Getenv("HELPER_REF"),
		CacheDir: os.Getenv("HELPER_CACHE"), SnapshotDir: os.Getenv("HELPER_SNAPSHOTS"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Printf("commit=%s\n", s.Commit)
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
			cache := t.TempDir()
			opts := source.Options{URL: f.url, Ref: "main", CacheDir: cache}
			mustFetch(t, opts)
			dirs, _ := filepath.Glob(filepath.Join(cache, "*"))
			var repoDir string
			for _, d := range dirs {
				if !strings.HasSuffix(d, ".lock") {
					repoDir = d
				}
			}
			tt.corrupt(t, repoDir)
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
