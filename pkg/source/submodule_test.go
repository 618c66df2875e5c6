package source_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

func TestFetchSubmodules(t *testing.T) {
	root := t.TempDir()
	lib := gitserver.NewRepo(t, filepath.Join(root, "lib"))
	lib.WriteFile("lib.yaml", "lib\n")
	libHead := lib.CommitAll("lib")
	app := gitserver.NewRepo(t, filepath.Join(root, "app"))
	app.WriteFile("app.yaml", "app\n")
	// A gitlink plus .gitmodules with a relative URL, as "git submodule
	// add ../lib" would record, without needing protocol.file.allow.
	app.WriteFile(".gitmodules", "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib\n")
	app.Git("update-index", "--add", "--cacheinfo", "160000,"+libHead+",vendor/lib")
	// Not CommitAll: "add --all" would drop the gitlink, which has no
	// checkout on disk.
	app.Git("add", "app.yaml", ".gitmodules")
	app.Git("commit", "--quiet", "--no-gpg-sign", "-m", "app with submodule")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("app")

	tests := []struct {
		name       string
		submodules bool
		want       string // content of vendor/lib/lib.yaml, "" for absent
	}{
		{"not fetched unless asked", false, ""},
		{"fetched when asked", true, "lib\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustFetch(t, source.Options{URL: url, Submodules: tt.submodules, CacheDir: cacheDir(t)})
			got := ""
			if b, err := os.ReadFile(filepath.Join(s.Dir, "vendor", "lib", "lib.yaml")); err == nil {
				got = string(b)
			}
			if got != tt.want {
				t.Errorf("vendor/lib/lib.yaml = %q, want %q", got, tt.want)
			}
			// Read-only throughout, also where the submodule was written
			// into an already complete tree.
			for _, rel := range []string{".", "vendor", "vendor/lib"} {
				info, err := os.Lstat(filepath.Join(s.Dir, rel))
				if err != nil || info.Mode() != fs.ModeDir|0o555 {
					t.Errorf("%s: %v %v, want a directory with mode 0555", rel, info.Mode(), err)
				}
			}
		})
	}
}
