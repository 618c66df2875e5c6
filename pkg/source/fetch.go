package source

import (
	"context"
	"errors"
	"fmt"
	"net"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// fullDepth is git's INFINITE_DEPTH: "deepen" by it turns a shallow cache
// into a full one, which is what fetching an arbitrary old commit needs.
const fullDepth = 0x7fffffff

// Options configures Fetch. Only URL is required.
type Options struct {
	// URL of the repository:
	//   https://host/org/repo.git (http:// works too)
	//   ssh://git@host:22/org/repo.git or scp-like git@host:org/repo.git
	//   file:///path/to/repo: a repository on this machine, read in place
	//   /path/to/tree or ./tree: local mode, the working tree as on disk
	// Credentials in an HTTPS URL are used when Auth has none, and never
	// printed.
	URL string
	// Ref is a branch, a tag, a full ref name (refs/...), or a full or
	// abbreviated (4+ hex digits) commit SHA. Names win over SHAs, tags
	// over branches, as in git rev-parse. Default: the remote's HEAD.
	// Local mode accepts no ref: it delivers what is on disk.
	Ref string
	// Auth holds credentials and trust anchors. Default: anonymous HTTPS
	// with system CAs; SSH via ssh-agent and ~/.ssh/known_hosts.
	Auth Auth
	// CacheDir holds, per URL, a bare repository, so that the next Fetch
	// is incremental or, when the ref has not moved, skipped, and the
	// checked-out trees of recent commits, so that a Fetch of a commit
	// fetched before writes no files. Several processes may share it.
	// Default: $XDG_CACHE_HOME/deliver/git (see os.UserCacheDir).
	CacheDir string
	// KeepTrees is how many checked-out trees per URL the cache keeps,
	// most recently used first; older ones are removed by the next Fetch
	// of that URL once no Snapshot holds them. Default (0 or less): 3,
	// which covers the tree in use and the ones a rollback needs next.
	KeepTrees int
	// SnapshotDir is the parent of the snapshot directories Fetch creates
	// for file:// URLs, which are not cached. Default: os.TempDir().
	SnapshotDir string
	// RequireClean makes local mode refuse a working tree with modified,
	// staged or untracked (not ignored) files, for CI where only
	// committed content may be delivered.
	RequireClean bool
	// TrustedKeys are ASCII-armored OpenPGP public keys. When any are
	// given, the commit must carry a valid signature by one of them (or by
	// one of their subkeys); unsigned commits are refused.
	TrustedKeys []string
	// Submodules checks out submodules, recursively, at the commits the
	// tree records, using the same Auth and cache. Default: submodule
	// directories are left empty and nothing is fetched for them.
	Submodules bool
}

// Fetch pins opts.Ref of the repository at opts.URL to one commit and
// returns a read-only snapshot of its tree. The caller must Close the
// snapshot, also so that the cache may collect its tree later. On error
// nothing is left behind but the (consistent) cache.
func Fetch(ctx context.Context, opts Options) (*Snapshot, error) {
	ref := opts.Ref
	if ref == "" {
		ref = "HEAD"
	}
	loc, err := parseLocation(opts.URL)
	secrets := append(opts.Auth.secrets(), loc.password)
	f := &fetcher{opts: opts, loc: loc, ref: ref}
	f.fail = func(op string, err error) error {
		return &Error{URL: loc.url, Ref: ref, Op: op, Err: err, secrets: secrets}
	}
	if err != nil {
		return nil, &Error{URL: redactRaw(opts.URL), Ref: ref, Op: "parse url", Err: err, secrets: secrets}
	}
	if f.keys, err = parseTrustedKeys(opts.TrustedKeys); err != nil {
		return nil, f.fail("read trusted keys", err)
	}
	switch loc.kind {
	case kindLocal:
		return f.local(ctx)
	case kindFile:
		return f.file(ctx)
	default:
		return f.remoteSnapshot(ctx)
	}
}

// fetcher carries one Fetch call's inputs between its steps.
type fetcher struct {
	opts Options
	loc  location
	ref  string
	keys trustedKeys
	fail func(op string, err error) error

	auth transport.AuthMethod
	ca   []byte
	// depth counts submodule nesting.
	depth int
}

// useFunc receives the pinned commit while the cache is locked, so that
// reading its objects cannot race with another process wiping the cache.
// c is that locked cache (nil for file:// URLs, which are not cached),
// name the ref the commit was reached through, fetched whether a pack was
// downloaded.
type useFunc func(c *cache, repo *git.Repository, commit *object.Commit, name plumbing.ReferenceName, fetched bool) error

// snapshotTo returns a useFunc that turns the commit into *out.
func (f *fetcher) snapshotTo(ctx context.Context, out **Snapshot) useFunc {
	return func(c *cache, repo *git.Repository, commit *object.Commit, name plumbing.ReferenceName, fetched bool) error {
		s, err := f.snapshot(ctx, c, repo, commit, name)
		if err != nil {
			return err
		}
		s.Fetched = fetched
		*out = s
		return nil
	}
}

func (f *fetcher) remoteSnapshot(ctx context.Context) (*Snapshot, error) {
	var s *Snapshot
	if err := f.remote(ctx, f.snapshotTo(ctx, &s)); err != nil {
		return nil, err
	}
	return s, nil
}

// remote pins the ref of a network remote in the cache and hands the
// commit to use.
func (f *fetcher) remote(ctx context.Context, use useFunc) error {
	var err error
	if f.auth, err = f.opts.Auth.method(f.loc); err != nil {
		return f.fail("auth", err)
	}
	if f.ca, err = f.opts.Auth.caBundle(); err != nil {
		return f.fail("auth", err)
	}
	// ls-remote first: it is one small request, and when the ref has not
	// moved it is the only one.
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{f.loc.url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: f.auth, CABundle: f.ca, PeelingOption: git.AppendPeeled})
	if err != nil {
		return f.fail("list refs", err)
	}
	w, err := resolveRef(f.opts.Ref, refs)
	if err != nil {
		return f.fail("resolve ref", err)
	}

	base := f.opts.CacheDir
	if base == "" {
		if base, err = defaultCacheDir(); err != nil {
			return f.fail("cache dir", err)
		}
	}
	c, err := lockCache(ctx, base, f.loc.url)
	if err != nil {
		return f.fail("lock cache", err)
	}
	defer c.unlock()

	existed, err := f.fromCache(ctx, c, w, use)
	if err != nil && existed && corruptible(err) {
		// Whatever broke may be the cache itself (a truncated pack, a
		// half-written ref after a crash): start over once from a clean
		// clone rather than fail forever.
		if werr := c.wipe(); werr != nil {
			return f.fail("wipe corrupt cache", werr)
		}
		_, err = f.fromCache(ctx, c, w, use)
	}
	if err != nil {
		// A first fetch that failed (server gone mid-clone, refused
		// pack) leaves no empty or half-filled cache behind. Should the
		// removal fail, the leftover is still safe: the next Fetch opens
		// it as an existing cache and wipes it if it is unreadable.
		_ = c.discard()
	}
	return err
}

// fromCache brings the locked cache up to date for w and hands the commit
// to use. existed reports whether the cache had content before.
func (f *fetcher) fromCache(ctx context.Context, c *cache, w want, use useFunc) (existed bool, _ error) {
	repo, existed, err := c.open()
	if err != nil {
		return existed, f.fail("open cache", err)
	}
	commit, fetched, err := f.sync(ctx, repo, w)
	if err != nil {
		return existed, err
	}
	return existed, use(c, repo, commit, w.name, fetched)
}

// sync makes sure the commit w names is in repo, fetching only what is
// missing, and returns it. fetched reports whether the remote was asked
// for a pack.
func (f *fetcher) sync(ctx context.Context, repo *git.Repository, w want) (*object.Commit, bool, error) {
	fetched := false
	fetch := func(depth int, specs ...config.RefSpec) error {
		fetched = true
		err := repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: git.DefaultRemoteName,
			RefSpecs:   specs,
			Depth:      depth,
			Tags:       git.NoTags,
			Force:      true,
			Auth:       f.auth,
			CABundle:   f.ca,
		})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return err
	}
	// fetchAll is the fallback for a SHA that is no ref tip: servers only
	// hand out arbitrary commits when configured to, so take all history.
	fetchAll := func() error {
		return fetch(fullDepth, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	}
	dst := func(name plumbing.ReferenceName) plumbing.ReferenceName {
		if name == plumbing.HEAD {
			// A bare repository's own HEAD must stay symbolic.
			return "refs/deliver/HEAD"
		}
		return name
	}

	switch w.kind {
	case byName:
		if _, err := repo.Object(plumbing.AnyObject, w.hash); err != nil {
			if !isNotFound(err) {
				return nil, false, f.fail("read cache", err)
			}
			spec := config.RefSpec(fmt.Sprintf("+%s:%s", w.name, dst(w.name)))
			// When the cache has an older commit of this ref, fetch
			// without "deepen": the server then sends only what is new
			// since that commit. A depth-1 fetch would resend every
			// unchanged file, because git only trims a shallow pack
			// against the client's objects for thin packs, which go-git
			// cannot ask for. If the ref went back in history (to a
			// commit the server wrongly assumes we have), the object is
			// still missing and a depth-1 fetch follows.
			depth := 1
			if old, err := repo.Reference(dst(w.name), false); err == nil && hasCommit(repo, old.Hash()) {
				depth = 0
			}
			err := fetch(depth, spec)
			if err == nil && depth == 0 && !hasObject(repo, w.hash) {
				err = fetch(1, spec)
			}
			if err != nil {
				return nil, true, f.fail("fetch", err)
			}
			got, err := repo.Reference(dst(w.name), false)
			if err != nil {
				return nil, true, f.fail("fetch", err)
			}
			if got.Hash() != w.hash {
				return nil, true, f.fail("fetch", fmt.Errorf("%s was %s when listed, %s when fetched: %w",
					w.name, w.hash, got.Hash(), ErrRefMoved))
			}
		}
		commit, err := peelCommit(repo, w.hash)
		if err != nil {
			return nil, fetched, f.fail("resolve ref", err)
		}
		return commit, fetched, nil

	case bySHA:
		if !hasCommit(repo, w.hash) {
			var err error
			if w.name != "" {
				err = fetch(1, config.RefSpec(fmt.Sprintf("+%s:%s", w.name, dst(w.name))))
			} else if err = fetch(1, config.RefSpec(fmt.Sprintf("%s:refs/deliver/pinned/%s", w.hash, w.hash))); err != nil && !unrecoverable(err) {
				err = fetchAll()
			}
			if err != nil {
				return nil, true, f.fail("fetch", err)
			}
		}
		commit, err := repo.CommitObject(w.hash)
		if isNotFound(err) {
			err = fmt.Errorf("commit %s: %w", w.hash, ErrRefNotFound)
		}
		if err != nil {
			return nil, fetched, f.fail("resolve ref", err)
		}
		return commit, fetched, nil

	default: // byPrefix
		h, err := findPrefix(repo, w.prefix)
		if errors.Is(err, ErrRefNotFound) {
			if err := fetchAll(); err != nil {
				return nil, true, f.fail("fetch", err)
			}
			h, err = findPrefix(repo, w.prefix)
		}
		if err != nil {
			return nil, fetched, f.fail("resolve ref", err)
		}
		commit, err := repo.CommitObject(h)
		if err != nil {
			return nil, fetched, f.fail("resolve ref", err)
		}
		return commit, fetched, nil
	}
}

// unrecoverable reports errors that another attempt cannot fix: the
// caller gave up, the server refused the credentials, the network is down.
func unrecoverable(err error) bool {
	// Not net.Error: syscall.Errno implements it, so every failed file
	// operation on a corrupt cache would count as a network error.
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, transport.ErrAuthenticationRequired) ||
		errors.Is(err, transport.ErrAuthorizationFailed) ||
		errors.As(err, &opErr) ||
		errors.As(err, &dnsErr)
}

// corruptible reports whether err may come from a damaged cache, so that
// wiping the cache and trying again could help.
func corruptible(err error) bool {
	return !unrecoverable(err) &&
		!errors.Is(err, ErrRefNotFound) &&
		!errors.Is(err, ErrRefMoved) &&
		!errors.Is(err, ErrSignature)
}
