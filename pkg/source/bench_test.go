package source_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// BenchmarkClone compares Fetch with the git CLI on a generated repository
// of 5,000 files and 500 commits served over smart HTTP on loopback:
//
//	cold/deliver           Fetch + Close into an empty cache: clone, tree
//	                       written to the cache
//	cold/git               git clone --depth 1 (also checks the tree out)
//	warm-nochange/deliver  Fetch + Close with the commit and its tree
//	                       cached: ls-remote, then the cached tree is
//	                       reused; no pack, no file written
//	warm-nochange/git      git fetch --depth 1 of an unchanged branch
//
// Run: go test -run '^$' -bench BenchmarkClone -benchtime 5x ./pkg/source/
func BenchmarkClone(b *testing.B) {
	root := b.TempDir()
	gitserver.GenerateRepo(b, filepath.Join(root, "big"), 5000, 500)
	url := gitserver.NewHTTP(b, root, gitserver.HTTPOptions{}).RepoURL("big")
	ctx := context.Background()
	git := func(b *testing.B, dir string, args ...string) {
		if out, err := gitserver.Command(ctx, dir, args...).CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	fetch := func(b *testing.B, cache string) *source.Snapshot {
		s, err := source.Fetch(ctx, source.Options{URL: url, Ref: "main", CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}

	b.Run("cold/deliver", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			cache := cacheDir(b)
			b.StartTimer()
			if err := fetch(b, cache).Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			makeWritable(cache)
			os.RemoveAll(cache)
			b.StartTimer()
		}
	})
	b.Run("cold/git", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir := filepath.Join(b.TempDir(), "clone")
			b.StartTimer()
			git(b, "/", "clone", "--quiet", "--depth", "1", "--branch", "main", url, dir)
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	b.Run("warm-nochange/deliver", func(b *testing.B) {
		cache := cacheDir(b)
		first := fetch(b, cache)
		first.Close()
		for b.Loop() {
			s := fetch(b, cache)
			if s.Fetched || s.Dir != first.Dir {
				b.Fatalf("unchanged remote: Fetched=%v Dir=%s, want false %s", s.Fetched, s.Dir, first.Dir)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm-nochange/git", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "clone")
		git(b, "/", "clone", "--quiet", "--depth", "1", "--branch", "main", url, dir)
		for b.Loop() {
			git(b, dir, "fetch", "--quiet", "--depth", "1", "origin", "main")
		}
	})
}
