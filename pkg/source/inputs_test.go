package source_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
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

// TestInputHashFromTree: a snapshot of a commit takes its files' hashes
// from the git tree instead of reading the files, whether it wrote the
// tree or found it cached by an earlier fetch. Both must equal what git
// hash-object says of the files, and what a snapshot of the working tree
// (which reads them) says; what the tree does not hold as a regular file
// (a symlink, a folder) is still read from the snapshot.
func TestInputHashFromTree(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gitserver.HTTPOptions{})
	f.repo.WriteFile("apps/a/run.sh", "#!/bin/sh\necho a\n")
	f.repo.Git("update-index", "--add", "--chmod=+x", "apps/a/run.sh")
	f.repo.WriteFile("apps/b/values.yaml", "replicas: 2\n")
	if err := os.Symlink("../b/values.yaml", filepath.Join(f.root, "app", "apps", "a", "values.yaml")); err != nil {
		t.Fatal(err)
	}
	f.repo.CommitAll("apps")
	reads := []string{"f:README.md", "f:deploy/app.yaml", "f:deploy/blob.bin", "f:apps/a/run.sh", "f:apps/b/values.yaml",
		"f:apps/a/values.yaml", "f:apps/a", "d:apps", "s:apps/b", "f:missing"}
	want := map[string]string{}
	for _, p := range []string{"README.md", "deploy/app.yaml", "deploy/blob.bin", "apps/a/run.sh", "apps/b/values.yaml"} {
		want["f:"+p] = strings.TrimSpace(f.repo.Git("hash-object", p))
	}
	want["f:apps/a/values.yaml"] = want["f:apps/b/values.yaml"] // through the symlink

	worktree := mustFetch(t, source.Options{URL: filepath.Join(f.root, "app")})
	cache := cacheDir(t)
	wrote := mustFetch(t, source.Options{URL: f.url, Ref: "main", CacheDir: cache})
	cached := mustFetch(t, source.Options{URL: f.url, Ref: "main", CacheDir: cache})
	for _, read := range reads {
		fromDisk, err := worktree.InputHash(read)
		if err != nil {
			t.Fatalf("working tree: InputHash(%s): %v", read, err)
		}
		if w, ok := want[read]; ok && fromDisk != w {
			t.Errorf("working tree: InputHash(%s) = %s, git hash-object says %s", read, fromDisk, w)
		}
		for name, s := range map[string]*source.Snapshot{"written": wrote, "cached": cached} {
			got, err := s.InputHash(read)
			if err != nil {
				t.Errorf("%s: InputHash(%s): %v", name, read, err)
				continue
			}
			if got != fromDisk {
				t.Errorf("%s: InputHash(%s) = %s, reading the working tree %s", name, read, got, fromDisk)
			}
		}
	}
}
