package source_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

func TestFetchLocal(t *testing.T) {
	type result struct {
		Commit  string
		RefName string
		Dirty   bool
		Local   bool
		App     string
	}
	tests := []struct {
		name         string
		change       func(r *gitserver.Repo)
		requireClean bool
		want         result
		wantErr      error
	}{
		{"clean", func(*gitserver.Repo) {}, true, result{Dirty: false, App: "committed\n"}, nil},
		// Without RequireClean the status is checked while the caller
		// goes on; Dirty waits for it.
		{"clean, checked meanwhile", func(*gitserver.Repo) {}, false, result{Dirty: false, App: "committed\n"}, nil},
		{"unreadable index counts as dirty", func(r *gitserver.Repo) {
			if err := os.WriteFile(filepath.Join(r.Dir, ".git", "index"), []byte("DIRCgarbage"), 0o644); err != nil {
				panic(err)
			}
		}, false, result{Dirty: true, App: "committed\n"}, nil},
		{"modified file is used as on disk", func(r *gitserver.Repo) { r.WriteFile("app.yaml", "edited\n") }, false, result{Dirty: true, App: "edited\n"}, nil},
		{"untracked file", func(r *gitserver.Repo) { r.WriteFile("new.yaml", "x\n") }, false, result{Dirty: true, App: "committed\n"}, nil},
		{"ignored file is not dirt", func(r *gitserver.Repo) { r.WriteFile("tmp.log", "x\n") }, true, result{Dirty: false, App: "committed\n"}, nil},
		{"require clean refuses modified", func(r *gitserver.Repo) { r.WriteFile("app.yaml", "edited\n") }, true, result{}, source.ErrDirty},
		{"require clean refuses staged", func(r *gitserver.Repo) { r.WriteFile("app.yaml", "staged\n"); r.Git("add", "app.yaml") }, true, result{}, source.ErrDirty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gitserver.NewRepo(t, t.TempDir())
			r.WriteFile("app.yaml", "committed\n")
			r.WriteFile(".gitignore", "*.log\n")
			head := r.CommitAll("local commit")
			tt.change(r)
			s, err := fetch(t, source.Options{URL: r.Dir, RequireClean: tt.requireClean})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "app.yaml") {
					t.Errorf("error %q does not name the changed file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			tt.want.Commit, tt.want.RefName, tt.want.Local = head, "refs/heads/main", true
			got := result{Commit: s.Commit, RefName: s.RefName, Dirty: s.Dirty(), Local: s.Local, App: readFile(t, s, "app.yaml")}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			dir := s.Dir
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, "app.yaml")); err != nil {
				t.Errorf("Close touched the working tree: %v", err)
			}
		})
	}

	t.Run("ref refused", func(t *testing.T) {
		r := gitserver.NewRepo(t, t.TempDir())
		r.CommitAll("c")
		_, err := fetch(t, source.Options{URL: r.Dir, Ref: "main"})
		if err == nil || !strings.Contains(err.Error(), "use file://") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not a repository, clean required", func(t *testing.T) {
		// A plain folder is delivered as dirty (TestLocalPlainFolder), so
		// CI's --require-clean refuses it.
		_, err := fetch(t, source.Options{URL: t.TempDir(), RequireClean: true})
		if err == nil || !strings.Contains(err.Error(), "open repository") || !strings.Contains(err.Error(), "not in a git repository") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestLocalPlainFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte("kind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := source.Fetch(context.Background(), source.Options{URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if !snap.Local || !snap.Dirty() || snap.Commit != "" {
		t.Errorf("snapshot of a plain folder = %+v, want local, dirty, no commit", snap)
	}
	if _, err := snap.Open("cm.yaml"); err != nil {
		t.Error(err)
	}
	if _, err := source.Fetch(context.Background(), source.Options{URL: dir, RequireClean: true}); !errors.Is(err, source.ErrDirty) {
		t.Errorf("RequireClean on a plain folder: %v, want source.ErrDirty", err)
	}
}
