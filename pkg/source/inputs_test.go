package source_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/deliverhq/deliver/pkg/source"
)

// TestInputHash: a file hashes to its git blob id, whether reached by its
// path or through a symlink in the tree; a folder's listing and a path's
// existence hash as such; a symlink out of the snapshot is an error, not
// a read outside it.
func TestInputHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/hello.txt", "hello\n")
	write("a/b/other.yaml", "x: 1\n")
	if err := os.Symlink("a/hello.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	snap, err := source.Fetch(context.Background(), source.Options{URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	hash := func(read string) string {
		t.Helper()
		h, err := snap.InputHash(read)
		if err != nil {
			t.Fatalf("InputHash(%s): %v", read, err)
		}
		return h
	}
	// git hash-object of "hello\n".
	const helloBlob = "ce013625030ba8dba906f756967f9e9ca394464a"
	for read, want := range map[string]string{
		"f:a/hello.txt":   helloBlob,
		"f:./a/hello.txt": helloBlob,
		"f:link":          helloBlob,
		"s:a":             "dir",
		"s:a/hello.txt":   "file",
		"s:missing":       "absent",
		"f:missing":       "absent",
		"d:missing":       "absent",
	} {
		if got := hash(read); got != want {
			t.Errorf("InputHash(%s) = %s, want %s", read, got, want)
		}
	}
	if a, f := hash("d:a"), hash("f:a"); a != f || a == "" || a == "dir" {
		t.Errorf("listing of a: d: %s, f: %s, want one listing hash", a, f)
	}
	if hash("d:a") == hash("d:a/b") {
		t.Error("two different folders have the same listing hash")
	}
	if _, err := snap.InputHash("f:out"); err == nil {
		t.Error("a symlink out of the snapshot was hashed")
	}

	// A file added to a folder changes its listing, not that of others.
	write("a/new.txt", "new\n")
	snap2, err := source.Fetch(context.Background(), source.Options{URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer snap2.Close()
	for read, changed := range map[string]bool{"d:a": true, "d:a/b": false, "f:a/hello.txt": false} {
		h2, err := snap2.InputHash(read)
		if err != nil {
			t.Fatal(err)
		}
		if (h2 != hash(read)) != changed {
			t.Errorf("%s after a file was added to a: changed = %v, want %v", read, h2 != hash(read), changed)
		}
	}
}
