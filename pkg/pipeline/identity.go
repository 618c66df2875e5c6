package pipeline

import (
	"path"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/source"
)

// runIdentity is who delivers the apps of a run, recorded in each app's
// inventory (see apply.Identity): the environment, the repository and the
// path of deliver.yaml in it (of the manifests folder with -f). A remote
// repository is named by its URL; a local checkout, and a file:// URL, by
// the URL of their origin remote, since a path on one machine says
// nothing about which repository it is: CI's clone, a laptop's checkout
// and the reconciler's fetch of one repository are one source. Without
// an origin the repository is unknown, which is never a conflict.
func runIdentity(snap *source.Snapshot, opts Options, env string) *apply.Identity {
	id := &apply.Identity{Environment: env}
	file := opts.ConfigFile
	if opts.Manifests != "" {
		file = opts.Manifests
	}
	id.Config = path.Clean(filepath.ToSlash(file))
	switch {
	case snap.Local:
		repo, err := git.PlainOpenWithOptions(snap.Dir, &git.PlainOpenOptions{DetectDotGit: true})
		if err != nil {
			return id // a plain folder
		}
		id.Repository = originURL(repo)
		// The tree delivered may be a folder of the repository: the
		// path is the repository's.
		if wt, err := repo.Worktree(); err == nil {
			if rel, ok := relativePath(wt.Filesystem.Root(), filepath.Join(snap.Dir, file)); ok {
				id.Config = rel
			}
		}
	case strings.HasPrefix(snap.URL, "file://"):
		repo, err := git.PlainOpenWithOptions(strings.TrimPrefix(snap.URL, "file://"), &git.PlainOpenOptions{DetectDotGit: true})
		if err == nil {
			id.Repository = originURL(repo)
		}
	default:
		id.Repository = normalizeRepoURL(snap.URL)
	}
	return id
}

// originURL returns the normalised URL of the repository's origin remote,
// "" without one.
func originURL(repo *git.Repository) string {
	r, err := repo.Remote("origin")
	if err != nil || len(r.Config().URLs) == 0 {
		return ""
	}
	return normalizeRepoURL(r.Config().URLs[0])
}

// relativePath returns target relative to root with forward slashes,
// symbolic links resolved on both (a temporary folder is often reached
// through one); false when target is not under root.
func relativePath(root, target string) (string, bool) {
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	dir, base := filepath.Split(target)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		target = filepath.Join(d, base)
	}
	rel, err := filepath.Rel(root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// normalizeRepoURL names a repository the same way whichever URL reaches
// it: without scheme, user, password and port (HTTPS and SSH reach one
// repository on different ports), and without a trailing ".git" or
// slash; the host lower-cased. The scp-like form of SSH
// (git@github.com:org/repo.git) is understood. A path on this machine
// (file://, a folder) gives "": unknown. Credentials never stay in the
// result, which is recorded in the inventory and printed.
func normalizeRepoURL(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	var host, rest string
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if scheme == "file" {
			return ""
		}
		host, rest, _ = strings.Cut(after, "/")
		// The userinfo ends at the authority's last '@': a password may
		// hold one.
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			host = host[i+1:]
		}
		host = stripPort(host)
	} else if i := strings.IndexByte(s, ':'); i > 1 && !strings.Contains(s[:i], "/") {
		// scp-like: [user@]host:path (not a Windows drive, C:\...)
		host, rest = s[:i], s[i+1:]
		if j := strings.LastIndexByte(host, '@'); j >= 0 {
			host = host[j+1:]
		}
	}
	if host == "" {
		// A path on this machine (file://, a remote that is a folder):
		// it names no repository another machine would know.
		return ""
	}
	rest = strings.TrimRight(rest, "/")
	rest = strings.TrimSuffix(rest, ".git")
	rest = strings.Trim(rest, "/")
	host = strings.ToLower(host)
	if rest == "" {
		return host
	}
	return host + "/" + rest
}

// stripPort removes the port from a host[:port], IPv6 literals included.
func stripPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			return host[:i+1]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}
