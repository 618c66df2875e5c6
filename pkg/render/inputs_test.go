package render

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
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
			checkSums(t, root, reads, tt.name == "plain")
			kinds := map[string]map[string]bool{ReadFile: {}, ReadDir: {}, ReadStat: {}, ReadCluster: {}}
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

// checkSums checks the blob ids reads recorded for the files of root
// against git's own (git hash-object, the oracle), and that there are
// some; with all, every file read must have one.
func checkSums(t *testing.T, root string, reads *Reads, all bool) {
	t.Helper()
	var files, sums []string
	for _, p := range reads.Paths() {
		if !strings.HasPrefix(p, ReadFile) {
			continue
		}
		sum, ok := reads.Sum(p)
		if !ok {
			if fi, err := os.Stat(filepath.Join(root, p[2:])); all && err == nil && fi.Mode().IsRegular() {
				t.Errorf("%s: read, but no blob id recorded", p)
			}
			continue
		}
		files, sums = append(files, filepath.Join(root, p[2:])), append(sums, sum)
	}
	if len(sums) == 0 {
		t.Fatalf("no blob id recorded: %v", reads.Paths())
	}
	out, err := exec.Command("git", append([]string{"hash-object", "--"}, files...)...).Output()
	if err != nil {
		t.Fatalf("git hash-object: %v", err)
	}
	want := strings.Fields(string(out))
	for i := range files {
		if i >= len(want) || sums[i] != want[i] {
			t.Errorf("%s: blob id %s, git hash-object says %v", files[i], sums[i], want[i:min(i+1, len(want))])
		}
	}
}

// TestSums: a file read through to its end through a recording FS has its
// git blob id recorded, as git hash-object computes it; a file read in
// part, a folder, and a file whose size differs from what was read have
// none, and listing a folder through Open still works.
func TestSums(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"a.yaml":     {Data: []byte("kind: ConfigMap\n")},
		"empty.yaml": {Data: nil},
		"big.yaml":   {Data: bytes.Repeat([]byte("x: y\n"), 20000)},
		"d/b.yaml":   {Data: []byte("b\n")},
	}
	tests := []struct {
		name string
		read func(fs.FS) error
		file string
		sum  bool
	}{
		{"whole, by Open", func(f fs.FS) error { return readAll(f, "a.yaml", -1) }, "a.yaml", true},
		{"whole, by ReadFile", func(f fs.FS) error { _, err := fs.ReadFile(f, "big.yaml"); return err }, "big.yaml", true},
		{"large, by Open", func(f fs.FS) error { return readAll(f, "big.yaml", -1) }, "big.yaml", true},
		{"empty", func(f fs.FS) error { return readAll(f, "empty.yaml", -1) }, "empty.yaml", true},
		{"in part", func(f fs.FS) error { return readAll(f, "big.yaml", 100) }, "big.yaml", false},
		{"a folder listed", func(f fs.FS) error {
			es, err := fs.ReadDir(struct{ fs.FS }{f}, "d") // through Open, not ReadDirFS
			if err == nil && len(es) != 1 {
				t.Errorf("listing through Open: %v", es)
			}
			return err
		}, "d", false},
		{"size differs", func(f fs.FS) error { return readAll(f, "a.yaml", -1) }, "a.yaml", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := fs.FS(fsys)
			if tt.name == "size differs" {
				src = sizeFS{fstest.MapFS{"a.yaml": {Data: []byte("kind: ConfigMap\nmore\n")}}, int64(len(fsys["a.yaml"].Data))}
			}
			reads := &Reads{}
			if err := tt.read(recording(src, reads)); err != nil {
				t.Fatal(err)
			}
			sum, ok := reads.Sum(ReadFile + tt.file)
			if ok != tt.sum {
				t.Fatalf("recorded %v (%s), want %v", ok, sum, tt.sum)
			}
			if !ok {
				return
			}
			cmd := exec.Command("git", "hash-object", "--stdin")
			cmd.Stdin = bytes.NewReader(fsys[tt.file].Data)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSpace(string(out)); sum != want {
				t.Errorf("blob id %s, git hash-object says %s", sum, want)
			}
		})
	}
}

// readAll reads name through Open, n bytes (all when n < 0).
func readAll(fsys fs.FS, name string, n int64) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	_, err = io.ReadAll(r)
	return err
}

// sizeFS reports every file's size as size: a file that changed between
// the Stat and the read.
type sizeFS struct {
	fs.FS
	size int64
}

func (s sizeFS) Open(name string) (fs.File, error) {
	f, err := s.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return sizeFile{f, s.size}, nil
}

type sizeFile struct {
	fs.File
	size int64
}

func (f sizeFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return sizeInfo{fi, f.size}, nil
}

type sizeInfo struct {
	fs.FileInfo
	size int64
}

func (i sizeInfo) Size() int64 { return i.size }

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
