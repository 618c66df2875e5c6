package source

import (
	"errors"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestResolveRef: a ref resolves as git rev-parse expands it (the name
// itself, refs/, refs/tags/, refs/heads/, in that order; a tag wins over a
// branch of the same name), HEAD through its target, and a hex string
// that names no ref as a commit (a tip when it is one).
func TestResolveRef(t *testing.T) {
	t.Parallel()
	h := func(c byte) plumbing.Hash {
		var b [20]byte
		for i := range b {
			b[i] = c
		}
		return plumbing.Hash(b)
	}
	refs := []*plumbing.Reference{
		plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main"),
		plumbing.NewHashReference("refs/heads/main", h(0xaa)),
		plumbing.NewHashReference("refs/heads/v1", h(0xbb)),
		plumbing.NewHashReference("refs/tags/v1", h(0xcc)),
		plumbing.NewHashReference("refs/heads/release/2", h(0xdd)),
	}
	for _, tt := range []struct {
		ref  string
		name plumbing.ReferenceName
		hash plumbing.Hash
		kind wantKind
	}{
		{"", "refs/heads/main", h(0xaa), byName},
		{"HEAD", "refs/heads/main", h(0xaa), byName},
		{"main", "refs/heads/main", h(0xaa), byName},
		{"heads/main", "refs/heads/main", h(0xaa), byName},
		{"refs/heads/main", "refs/heads/main", h(0xaa), byName},
		{"v1", "refs/tags/v1", h(0xcc), byName},
		{"heads/v1", "refs/heads/v1", h(0xbb), byName},
		{"release/2", "refs/heads/release/2", h(0xdd), byName},
		{"dddd", "refs/heads/release/2", h(0xdd), bySHA},
	} {
		w, err := resolveRef(tt.ref, refs)
		if err != nil || w.name != tt.name || w.hash != tt.hash || w.kind != tt.kind {
			t.Errorf("resolveRef(%q) = %+v, %v; want %s at %s", tt.ref, w, err, tt.name, tt.hash)
		}
	}
	if _, err := resolveRef("nope", refs); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("an unknown ref: %v, want ErrRefNotFound", err)
	}
}
