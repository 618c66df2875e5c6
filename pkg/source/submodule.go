package source

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxSubmoduleDepth bounds recursion: a submodule that (indirectly)
// contains its superproject would otherwise never end.
const maxSubmoduleDepth = 8

// submodules checks out each gitlink of commit (written into root under
// dir) at the commit the tree records, from the URL .gitmodules gives.
func (f *fetcher) submodules(ctx context.Context, commit *object.Commit, root *os.Root, dir string, links []gitlink) error {
	if f.depth >= maxSubmoduleDepth {
		return f.fail("submodules", fmt.Errorf("nested more than %d deep", maxSubmoduleDepth))
	}
	file, err := commit.File(".gitmodules")
	if err != nil {
		return f.fail("submodules", fmt.Errorf(".gitmodules: %w", err))
	}
	content, err := file.Contents()
	if err != nil {
		return f.fail("submodules", fmt.Errorf(".gitmodules: %w", err))
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(content)); err != nil {
		return f.fail("submodules", fmt.Errorf(".gitmodules: %w", err))
	}
	byPath := map[string]*config.Submodule{}
	for _, m := range mods.Submodules {
		byPath[path.Clean(m.Path)] = m
	}
	for _, l := range links {
		rel := l.path
		if dir != "." {
			rel = strings.TrimPrefix(rel, dir+"/")
		}
		m := byPath[rel]
		if m == nil {
			return f.fail("submodules", fmt.Errorf("%s: not in .gitmodules", rel))
		}
		sub, err := f.submodule(m.URL, l.hash)
		if err != nil {
			return f.fail("submodules", fmt.Errorf("%s: %w", rel, err))
		}
		use := func(_ *cache, repo *git.Repository, c *object.Commit, _ plumbing.ReferenceName, _ bool) error {
			// Start from an empty directory: use may run a second time
			// after a corrupt cache was wiped.
			if err := root.RemoveAll(l.path); err != nil {
				return sub.fail("checkout", err)
			}
			if err := root.Mkdir(l.path, 0o755); err != nil {
				return sub.fail("checkout", err)
			}
			return sub.writeCommit(ctx, c, root, sub.newTreeWriter(ctx, repo, l.path, nil))
		}
		if sub.loc.kind == kindFile {
			err = sub.fileRepo(ctx, use)
		} else {
			err = sub.remote(ctx, use)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// submodule returns the fetcher for a submodule at commit hash.
func (f *fetcher) submodule(rawURL string, hash plumbing.Hash) (*fetcher, error) {
	relative := strings.HasPrefix(rawURL, "./") || strings.HasPrefix(rawURL, "../")
	if relative {
		// Relative to the superproject's URL taken as a directory, as git
		// does: ../lib next to https://host/org/app.git is
		// https://host/org/lib.
		u, err := url.Parse(f.loc.url)
		if err != nil {
			return nil, err
		}
		u.Path = path.Join(u.Path, rawURL)
		rawURL = u.String()
	}
	loc, err := parseLocation(rawURL)
	if err != nil {
		return nil, err
	}
	// A hostile repository must not pull files of this machine into the
	// snapshot through a file:// or path submodule, unless the superproject
	// is itself local.
	if loc.kind == kindLocal || (loc.kind == kindFile && f.loc.kind != kindFile) {
		return nil, fmt.Errorf("local submodule url %s refused for a remote superproject", loc.url)
	}
	if loc.kind == kindLocal {
		return nil, fmt.Errorf("submodule url %s is a local path", loc.url)
	}
	if relative && loc.user == "" && loc.password == "" {
		loc.user, loc.password = f.loc.user, f.loc.password
	}
	opts := f.opts
	opts.URL, opts.Ref = loc.url, hash.String()
	// Signatures are checked on the superproject commit, which pins the
	// submodule commits by hash.
	opts.TrustedKeys = nil
	ref := opts.Ref
	secrets := append(opts.Auth.secrets(), loc.password)
	sub := &fetcher{opts: opts, loc: loc, ref: ref, depth: f.depth + 1}
	sub.fail = func(op string, err error) error {
		return &Error{URL: loc.url, Ref: ref, Op: op, Err: err, secrets: secrets}
	}
	return sub, nil
}
