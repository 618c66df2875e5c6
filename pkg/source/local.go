package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// local serves local mode: the working tree at f.loc.path is the
// snapshot, as it is on disk, with HEAD and dirtiness reported.
func (f *fetcher) local(_ context.Context) (*Snapshot, error) {
	dir := f.loc.path
	if f.opts.Ref != "" {
		return nil, f.fail("open working tree", fmt.Errorf(
			"a ref cannot be used with a working tree, which is delivered as it is on disk; use file://%s to deliver a committed ref",
			filepath.ToSlash(dir)))
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, f.fail("open working tree", err)
	}
	if !info.IsDir() {
		return nil, f.fail("open working tree", fmt.Errorf("%s is not a directory", dir))
	}
	// DetectDotGit: the tree to deliver may be a subdirectory of the
	// repository (deploy/ in a monorepo).
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		// A plain folder (a laptop experiment, a CI artifact): delivered
		// as it is, with no commit, and never clean.
		if f.opts.RequireClean || len(f.keys) > 0 {
			return nil, f.fail("open repository", fmt.Errorf("%s is not in a git repository: %w", dir, ErrDirty))
		}
		s := &Snapshot{Dir: dir, URL: f.loc.url, Ref: f.ref, Local: true, dirty: alwaysDirty, hashes: &hashMemo{}}
		if s.root, err = os.OpenRoot(dir); err != nil {
			return nil, f.fail("open working tree", err)
		}
		return s, nil
	}
	if err != nil {
		return nil, f.fail("open repository", err)
	}
	head, err := repo.Head()
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			err = fmt.Errorf("repository has no commits: %w", ErrRefNotFound)
		}
		return nil, f.fail("resolve ref", err)
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, f.fail("resolve ref", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, f.fail("status", err)
	}
	s := &Snapshot{
		hashes:     &hashMemo{},
		Dir:        dir,
		URL:        f.loc.url,
		Ref:        f.ref,
		Commit:     commit.Hash.String(),
		AuthorTime: commit.Author.When,
		Subject:    subject(commit.Message),
		Local:      true,
	}
	if head.Name().IsBranch() {
		s.RefName = head.Name().String()
	}
	if !f.opts.RequireClean && len(f.keys) == 0 {
		// Nothing here depends on the answer, so the walk of the working
		// tree (10 ms for 1,000 files) runs while the caller renders.
		s.dirty = checkDirty(wt)
	} else {
		status, err := wt.Status()
		if err != nil {
			return nil, f.fail("status", err)
		}
		dirty := !status.IsClean()
		if dirty && f.opts.RequireClean {
			return nil, f.fail("check clean", fmt.Errorf("%w: %s", ErrDirty, summarize(status)))
		}
		s.dirty = func() bool { return dirty }
		// A signature vouches for the commit, not for edits on disk.
		if dirty {
			return nil, f.fail("verify signature", fmt.Errorf("tree differs from signed commit: %w", ErrDirty))
		}
	}
	if len(f.keys) > 0 {
		if s.SignedBy, err = f.keys.verify(commit); err != nil {
			return nil, f.fail("verify signature", err)
		}
	}
	if s.root, err = os.OpenRoot(dir); err != nil {
		return nil, f.fail("open working tree", err)
	}
	return s, nil
}

func alwaysDirty() bool { return true }

// checkDirty starts the working tree's status and returns its answer, which
// waits for it. A tree whose status fails (an unreadable index) counts as
// dirty: it cannot be shown to be the commit.
func checkDirty(wt *git.Worktree) func() bool {
	var (
		dirty bool
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		status, err := wt.Status()
		dirty = err != nil || !status.IsClean()
	}()
	return func() bool {
		<-done
		return dirty
	}
}

// summarize lists a few changed paths for the dirty-tree error.
func summarize(status git.Status) string {
	paths := make([]string, 0, len(status))
	for p := range status {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	const show = 5
	more := ""
	if len(paths) > show {
		more = fmt.Sprintf(" and %d more", len(paths)-show)
		paths = paths[:show]
	}
	return strings.Join(paths, ", ") + more
}

// file serves file:// URLs: a repository on this machine whose objects
// are read in place, with no cache and no lock (nothing is written to it).
func (f *fetcher) file(ctx context.Context) (*Snapshot, error) {
	var s *Snapshot
	if err := f.fileRepo(ctx, f.snapshotTo(ctx, &s)); err != nil {
		return nil, err
	}
	return s, nil
}

func (f *fetcher) fileRepo(_ context.Context, use useFunc) error {
	repo, err := git.PlainOpen(f.loc.path)
	if err != nil {
		return f.fail("open repository", err)
	}
	iter, err := repo.References()
	if err != nil {
		return f.fail("list refs", err)
	}
	var refs []*plumbing.Reference
	_ = iter.ForEach(func(r *plumbing.Reference) error {
		refs = append(refs, r)
		return nil
	})
	if head, err := repo.Storer.Reference(plumbing.HEAD); err == nil {
		refs = append(refs, head)
	}
	w, err := resolveRef(f.opts.Ref, refs)
	if err != nil {
		return f.fail("resolve ref", err)
	}
	var commit *object.Commit
	switch w.kind {
	case byName:
		commit, err = peelCommit(repo, w.hash)
	case bySHA:
		commit, err = repo.CommitObject(w.hash)
	default:
		var h plumbing.Hash
		if h, err = findPrefix(repo, w.prefix); err == nil {
			commit, err = repo.CommitObject(h)
		}
	}
	if isNotFound(err) {
		err = fmt.Errorf("%w: %w", ErrRefNotFound, err)
	}
	if err != nil {
		return f.fail("resolve ref", err)
	}
	return use(nil, repo, commit, w.name, false)
}
