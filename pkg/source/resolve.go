package source

import (
	"errors"
	"fmt"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

type wantKind int

const (
	// byName fetches a branch, tag or other advertised ref.
	byName wantKind = iota
	// bySHA wants one full commit SHA; name is set when it is a ref tip.
	bySHA
	// byPrefix wants the only commit whose SHA starts with prefix.
	byPrefix
)

// want is a requested ref resolved against the remote's advertisement.
type want struct {
	kind wantKind
	// name is the remote ref to fetch, if any.
	name plumbing.ReferenceName
	// hash is the advertised object of name (an annotated tag's is the tag
	// object, not the commit), or the commit for bySHA.
	hash plumbing.Hash
	// prefix is the lower-case abbreviated SHA for byPrefix.
	prefix string
}

// resolveRef resolves ref against advertised refs the way git rev-parse
// does: a full SHA as itself; else <ref>, refs/<ref>, then
// refs/tags/<ref>, then refs/heads/<ref> (plumbing.RefRevParseRules), and
// only then an abbreviated commit SHA. Empty ref means HEAD.
func resolveRef(ref string, refs []*plumbing.Reference) (want, error) {
	named := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	peeled := make(map[plumbing.ReferenceName]plumbing.Hash)
	for _, r := range refs {
		if n, ok := strings.CutSuffix(r.Name().String(), "^{}"); ok {
			peeled[plumbing.ReferenceName(n)] = r.Hash()
			continue
		}
		named[r.Name()] = r
	}

	if ref == "" || ref == "HEAD" {
		head := named[plumbing.HEAD]
		if head == nil {
			return want{}, fmt.Errorf("remote advertises no HEAD: %w", ErrRefNotFound)
		}
		if head.Type() == plumbing.SymbolicReference {
			t := named[head.Target()]
			if t == nil || t.Type() != plumbing.HashReference {
				return want{}, fmt.Errorf("HEAD points to missing %s: %w", head.Target(), ErrRefNotFound)
			}
			return want{kind: byName, name: t.Name(), hash: t.Hash()}, nil
		}
		return want{kind: byName, name: plumbing.HEAD, hash: head.Hash()}, nil
	}

	// A full SHA names its object before any ref of that name, as in
	// git rev-parse (which only warns that the ref name is ambiguous).
	// Shorter hex strings are refs first.
	full := len(ref) == 40 && isHex(ref)
	// git's expansion rules, as go-git keeps them (and the webhook
	// matches pushes with).
	for _, rule := range plumbing.RefRevParseRules {
		if full {
			break
		}
		if r := named[plumbing.ReferenceName(fmt.Sprintf(rule, ref))]; r != nil && r.Type() == plumbing.HashReference {
			return want{kind: byName, name: r.Name(), hash: r.Hash()}, nil
		}
	}

	if !isHex(ref) || len(ref) < 4 || len(ref) > 40 {
		return want{}, ErrRefNotFound
	}
	prefix := strings.ToLower(ref)
	// A commit that is a ref tip can be fetched by that name, which every
	// server allows; an arbitrary SHA needs server support or a deep fetch.
	tips := map[plumbing.Hash]plumbing.ReferenceName{}
	for name, r := range named {
		if r.Type() != plumbing.HashReference || name == plumbing.HEAD {
			continue
		}
		h := r.Hash()
		if p, ok := peeled[name]; ok {
			h = p
		}
		if strings.HasPrefix(h.String(), prefix) {
			if prev, ok := tips[h]; !ok || name < prev {
				tips[h] = name
			}
		}
	}
	switch {
	case len(tips) > 1:
		return want{}, fmt.Errorf("abbreviated sha %s is ambiguous", ref)
	case len(tips) == 1:
		for h, name := range tips {
			return want{kind: bySHA, name: name, hash: h}, nil
		}
	}
	if len(prefix) == 40 {
		return want{kind: bySHA, hash: plumbing.NewHash(prefix)}, nil
	}
	return want{kind: byPrefix, prefix: prefix}, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// peelCommit follows annotated tags from h down to a commit.
func peelCommit(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%s: tag chain too long", h)
}

// findPrefix returns the only commit in repo whose SHA starts with prefix.
func findPrefix(repo *git.Repository, prefix string) (plumbing.Hash, error) {
	iter, err := repo.CommitObjects()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer iter.Close()
	var found []plumbing.Hash
	err = iter.ForEach(func(c *object.Commit) error {
		if strings.HasPrefix(c.Hash.String(), prefix) {
			found = append(found, c.Hash)
		}
		return nil
	})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	switch len(found) {
	case 0:
		return plumbing.ZeroHash, ErrRefNotFound
	case 1:
		return found[0], nil
	default:
		return plumbing.ZeroHash, fmt.Errorf("abbreviated sha %s is ambiguous", prefix)
	}
}

// hasCommit reports whether the commit h is in repo's object store.
func hasCommit(repo *git.Repository, h plumbing.Hash) bool {
	_, err := repo.CommitObject(h)
	return err == nil
}

// hasObject reports whether any object h is in repo's object store.
func hasObject(repo *git.Repository, h plumbing.Hash) bool {
	_, err := repo.Storer.EncodedObject(plumbing.AnyObject, h)
	return err == nil
}

// isNotFound reports whether err means a missing object, as opposed to an
// unreadable (corrupt) store.
func isNotFound(err error) bool {
	return errors.Is(err, plumbing.ErrObjectNotFound)
}
