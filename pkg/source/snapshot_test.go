package source_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

func writeFile(p, content string) error { return os.WriteFile(p, []byte(content), 0o644) }

func TestSnapshotConfinement(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "app"))
	repo.WriteFile("deploy/app.yaml", "app\n")
	repo.WriteFile("deploy/run.sh", "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(repo.Dir, "deploy/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo.Symlink("/etc/passwd", "escape-abs")
	repo.Symlink("../../../../../../etc/passwd", "escape-rel")
	repo.Symlink("/etc", "escape-dir")
	repo.Symlink("deploy/app.yaml", "inside")
	repo.Symlink("deploy", "inside-dir")
	repo.CommitAll("links")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("app")
	s := mustFetch(t, source.Options{URL: url, CacheDir: cacheDir(t)})

	tests := []struct {
		rel     string
		want    string // path relative to Dir after resolution
		wantErr error
	}{
		{"deploy/app.yaml", "deploy/app.yaml", nil},
		{"./deploy/../deploy/app.yaml", "deploy/app.yaml", nil},
		{"inside", "deploy/app.yaml", nil},
		{"inside-dir/app.yaml", "deploy/app.yaml", nil},
		{".", ".", nil},
		{"escape-abs", "", source.ErrPathEscapes},
		{"escape-rel", "", source.ErrPathEscapes},
		{"escape-dir/passwd", "", source.ErrPathEscapes},
		{"../etc/passwd", "", source.ErrPathEscapes},
		{"deploy/../../x", "", source.ErrPathEscapes},
		{"/etc/passwd", "", source.ErrPathEscapes},
		{"missing", "", fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			got, err := s.Resolve(tt.rel)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%q) = %q, %v; want %v", tt.rel, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.rel, err)
			}
			dir, _ := filepath.EvalSymlinks(s.Dir)
			if want := filepath.Join(dir, tt.want); got != want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.rel, got, want)
			}
		})
	}

	// The symlinks are in the snapshot, as in the commit, but the
	// confined readers do not follow them out.
	if target, err := os.Readlink(filepath.Join(s.Dir, "escape-abs")); err != nil || target != "/etc/passwd" {
		t.Errorf("escape-abs: Readlink = %q, %v", target, err)
	}
	if f, err := s.Open("escape-abs"); err == nil {
		f.Close()
		t.Error("Open(escape-abs) succeeded")
	}
	if _, err := fs.ReadFile(s.FS(), "escape-dir/passwd"); err == nil {
		t.Error("FS read through escape-dir succeeded")
	}
	if b, err := fs.ReadFile(s.FS(), "inside"); err != nil || string(b) != "app\n" {
		t.Errorf("FS read inside = %q, %v", b, err)
	}

	// Read-only, executable bit kept.
	for rel, want := range map[string]fs.FileMode{".": fs.ModeDir | 0o555, "deploy/app.yaml": 0o444, "deploy/run.sh": 0o555, "deploy": fs.ModeDir | 0o555} {
		info, err := os.Lstat(filepath.Join(s.Dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", rel, info.Mode(), want)
		}
	}

}

// TestSnapshotClose checks what Close does to Dir: a cached tree is shared
// and stays for the next Fetch, an uncached file:// snapshot is removed.
func TestSnapshotClose(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name     string
		opts     source.Options
		wantKept bool
	}{
		{"cached tree is kept", source.Options{URL: f.url, CacheDir: cacheDir(t)}, true},
		{"file url snapshot is removed", source.Options{URL: "file://" + f.repo.Dir}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := source.Fetch(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			dir := s.Dir
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			_, err = os.Stat(filepath.Join(dir, "deploy", "app.yaml"))
			if kept := err == nil; kept != tt.wantKept {
				t.Errorf("after Close, %s kept = %v (%v), want %v", dir, kept, err, tt.wantKept)
			}
		})
	}
}

// TestCachedTreeLinksUnchangedFiles: the tree of a new commit links the
// files it shares with the newest cached tree (same path, blob and mode)
// instead of writing them again, writes the others, and holds exactly
// what git holds at that commit.
func TestCachedTreeLinksUnchangedFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gitserver.HTTPOptions{})
	for i := range 20 {
		f.repo.WriteFile(fmt.Sprintf("apps/app-%02d/deploy.yaml", i), fmt.Sprintf("app: %d\nrevision: 0\n", i))
	}
	f.repo.WriteFile("bin/hook.sh", "#!/bin/sh\n")
	hook := filepath.Join(f.repo.Dir, "bin", "hook.sh")
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	f.repo.CommitAll("apps")
	cache := cacheDir(t)
	before := mustFetch(t, source.Options{URL: f.url, Ref: "main", CacheDir: cache})

	f.repo.WriteFile("apps/app-07/deploy.yaml", "app: 7\nrevision: 1\n")
	f.repo.WriteFile("apps/app-21/deploy.yaml", "app: 21\n")
	if err := os.Chmod(hook, 0o644); err != nil { // same blob, another mode
		t.Fatal(err)
	}
	f.repo.Git("rm", "-q", "README.md")
	commit := f.repo.CommitAll("change one app, add one")
	after := mustFetch(t, source.Options{URL: f.url, Ref: "main", CacheDir: cache})
	if after.Commit != commit {
		t.Fatalf("fetched %s, want %s", after.Commit, commit)
	}

	// What git holds at the commit, path by path.
	want := map[string]string{}
	for _, p := range strings.Fields(f.repo.Git("ls-tree", "-r", "--name-only", commit)) {
		want[p] = f.repo.Git("show", commit+":"+p) // trimmed, as got is
	}
	got := map[string]string{}
	linked := map[string]bool{}
	err := filepath.WalkDir(after.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(after.Dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got[filepath.ToSlash(rel)] = strings.TrimSpace(string(b))
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if old, err := os.Stat(filepath.Join(before.Dir, rel)); err == nil && os.SameFile(fi, old) {
			linked[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tree of the new commit (-git +snapshot):\n%s", diff)
	}
	for p := range want {
		changed := p == "apps/app-07/deploy.yaml" || p == "apps/app-21/deploy.yaml" || p == "bin/hook.sh"
		if linked[p] == changed {
			t.Errorf("%s: linked from the previous tree = %v, want %v", p, linked[p], !changed)
		}
	}
	if fi, err := os.Stat(filepath.Join(after.Dir, "bin", "hook.sh")); err != nil || fi.Mode().Perm()&0o111 != 0 {
		t.Errorf("bin/hook.sh lost its executable bit in git but not in the snapshot: %v %v", fi.Mode(), err)
	}
}
