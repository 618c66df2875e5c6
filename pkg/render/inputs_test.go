package render

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadsCoverRender: what Reads records is all a render depends on.
// In a copy of the test repository, every file whose content no read
// recorded is overwritten (when its name matters: in a listed folder, or
// checked for existence) or removed (otherwise); the render of the copy
// must then be the render of the original, object for object. A Helm
// chart with values and secret values files, a kustomize overlay with a
// base and a component in other folders and a SOPS secretGenerator, and a
// folder of plain manifests are checked.
func TestReadsCoverRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		render func(root string, reads *Reads) ([]byte, error)
	}{
		{"helm", func(root string, reads *Reads) ([]byte, error) {
			o := appChart()
			o.Root, o.Reads = root, reads
			set, err := Helm(context.Background(), o)
			if err != nil {
				return nil, err
			}
			return dumpSet(t, set), nil
		}},
		{"kustomize", func(root string, reads *Reads) ([]byte, error) {
			var r Renderer
			o := prodOverlay()
			o.Root, o.Reads = root, reads
			set, err := r.Kustomize(context.Background(), o)
			if err != nil {
				return nil, err
			}
			return dumpSet(t, set), nil
		}},
		{"plain", func(root string, reads *Reads) ([]byte, error) {
			set, err := Plain(PlainOptions{Root: root, App: "shop", Path: "charts/app/crds", Reads: reads})
			if err != nil {
				return nil, err
			}
			return dumpSet(t, set), nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.CopyFS(root, os.DirFS("testdata/repo")); err != nil {
				t.Fatal(err)
			}
			reads := &Reads{}
			want, err := tt.render(root, reads)
			if err != nil {
				t.Fatal(err)
			}
			if why := reads.UncertainReason(); why != "" {
				t.Errorf("uncertain: %s", why)
			}
			kinds := map[string]map[string]bool{ReadFile: {}, ReadDir: {}, ReadStat: {}}
			for _, p := range reads.Paths() {
				kinds[p[:2]][p[2:]] = true
			}
			if len(kinds[ReadFile]) == 0 {
				t.Fatalf("no file read recorded: %v", reads.Paths())
			}
			var changed, removed int
			err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel := filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
				switch {
				case kinds[ReadFile][rel]:
					return nil
				case kinds[ReadDir][path.Dir(rel)] || kinds[ReadStat][rel]:
					changed++
					return os.WriteFile(p, []byte("not read: \x00\x01 {{ fail }}\n"), 0o644)
				default:
					removed++
					return os.Remove(p)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if removed == 0 {
				t.Fatalf("every file of the repository counts as read: %v", reads.Paths())
			}
			got, err := tt.render(root, nil)
			if err != nil {
				t.Fatalf("render without the %d files not read (%d more overwritten): %v\nreads: %v", removed, changed, err, reads.Paths())
			}
			if !bytes.Equal(got, want) {
				t.Errorf("render without the %d files not read (%d more overwritten) differs:\n%s\nwant:\n%s", removed, changed, got, want)
			}
		})
	}
}

// TestExactVersion: a chart from a repository at a version that is not
// exact may change without a commit, so its app is always rendered.
func TestExactVersion(t *testing.T) {
	t.Parallel()
	for v, exact := range map[string]bool{
		"1.2.3": true, "v1.2.3": true, "0.1.0-rc.1": true, "1.0.0+build.5": true,
		"": false, "1.2": false, "^1.2.3": false, "~1.2": false, "1.x": false, "*": false,
		">=1.0.0": false, "1.2.3 - 1.4.0": false, "01.2.3": false, "latest": false,
	} {
		if got := exactVersion.MatchString(v); got != exact {
			t.Errorf("exactVersion(%q) = %v, want %v", v, got, exact)
		}
	}
}
