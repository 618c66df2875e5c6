package source_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

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
