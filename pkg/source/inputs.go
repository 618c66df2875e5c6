package source

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Hashes of InputHash for what is not a file's content.
const (
	hashAbsent = "absent"
	hashDir    = "dir"
	hashFile   = "file"
)

// InputHash returns a hash of what a render read of the snapshot (see
// render.Reads): read is a kind and a slash path relative to Dir,
//
//	f:PATH  the content: the git blob id of the file (as git hash-object
//	        computes it, so a clean working tree and its commit agree), or,
//	        for a folder opened for listing, its listing as with d:
//	d:PATH  the listing: the names and types (folder, symlink, file) of
//	        the folder's entries
//	s:PATH  the existence: "absent", "dir" or "file"
//
// A path through a symlink is hashed as what it points to, as the render
// read it. Hashes are computed once per snapshot and shared by every app
// that read the same path, so that checking a thousand apps for changes
// reads each file once. An error (a path that leaves the snapshot, an
// unreadable file) means the caller cannot tell, and should render.
func (s *Snapshot) InputHash(read string) (string, error) {
	m := s.hashes
	if m == nil {
		m = &hashMemo{} // a Snapshot not made by Fetch: no sharing
	}
	m.mu.Lock()
	h, ok := m.m[read]
	m.mu.Unlock()
	if ok {
		return h, nil
	}
	h, err := s.inputHash(read)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", read, err)
	}
	m.mu.Lock()
	if m.m == nil {
		m.m = map[string]string{}
	}
	m.m[read] = h
	m.mu.Unlock()
	return h, nil
}

// hashMemo holds the InputHash results of one snapshot.
type hashMemo struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *Snapshot) inputHash(read string) (string, error) {
	kind, p, ok := strings.Cut(read, ":")
	if !ok || len(kind) != 1 {
		return "", errors.New("not a recorded read")
	}
	p = path.Clean("/" + p)[1:]
	if p == "" {
		p = "."
	}
	if s.root == nil {
		return "", errors.New("snapshot closed")
	}
	fsys := s.root.FS()
	fi, err := fs.Stat(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return hashAbsent, nil
	}
	if err != nil {
		return "", err
	}
	switch kind {
	case "s":
		if fi.IsDir() {
			return hashDir, nil
		}
		return hashFile, nil
	case "d", "f":
		if fi.IsDir() {
			return listingHash(fsys, p)
		}
		if kind == "d" {
			return hashFile, nil // listing a file fails; so would the render
		}
		return blobHash(fsys, p)
	default:
		return "", fmt.Errorf("unknown kind %q", kind)
	}
}

// blobHash returns the git blob id of the file p.
func blobHash(fsys fs.FS, p string) (string, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := plumbing.NewHasher(plumbing.BlobObject, fi.Size())
	// A buffer the size of the file (most are a few KiB), and f behind a
	// plain io.Reader: io.Copy would take os.File's WriteTo, which
	// allocates 32 KiB per file, 32 MiB to allocate and clear for 1,000
	// small files.
	buf := make([]byte, min(max(fi.Size(), 512), 32<<10))
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
	if err != nil {
		return "", err
	}
	if n != fi.Size() {
		return "", fmt.Errorf("%s changed while read", p)
	}
	return h.Sum().String(), nil
}

// listingHash hashes the names and types of the entries of folder p.
func listingHash(fsys fs.FS, p string) (string, error) {
	entries, err := fs.ReadDir(fsys, p)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries { // sorted by name
		t := "f"
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			t = "l"
		case e.IsDir():
			t = "d"
		}
		fmt.Fprintf(h, "%s %s\x00", t, e.Name())
	}
	return "tree:" + hex.EncodeToString(h.Sum(nil)), nil
}
