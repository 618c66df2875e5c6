// Package source pins the desired state in git: given a repository URL and
// a ref it resolves one exact commit and returns a read-only Snapshot of
// its tree on disk, with the commit SHA, author time and subject. It uses
// go-git only; no git binary is needed at run time.
//
// # URLs
//
//   - https://host/org/repo.git and http://: smart HTTP
//   - ssh://git@host:22/org/repo.git and scp-like git@host:org/repo.git
//   - file:///path/to/repo: a repository on this machine, read in place
//   - /path or ./path: local mode, the working tree used as it is on disk,
//     with HEAD and whether the tree is dirty reported (Options.RequireClean
//     refuses a dirty tree)
//
// # Refs
//
// A branch, tag, full ref name, or full or abbreviated commit SHA; empty
// means the remote's HEAD. Names are looked up like git rev-parse does
// (refs/<ref>, refs/tags/<ref>, refs/heads/<ref>), then SHAs.
//
// # Cache
//
// Remote repositories are cloned shallow (depth 1) into a bare repository
// per URL under Options.CacheDir. Every Fetch lists the remote refs first
// (one request, like git ls-remote); when the commit is already cached
// nothing else is downloaded (Snapshot.Fetched is false). When the ref
// moved, only the new objects are fetched. A commit SHA that no ref points
// at is fetched with the full history, since servers only hand out
// arbitrary commits when configured to. A file lock (flock) serialises
// processes sharing a cache; a cache that cannot be read is wiped and
// cloned again, once. A first Fetch that fails leaves no cache behind.
//
// The checked-out tree of each commit is kept in the cache too, written
// once into a temporary directory and renamed into place when complete,
// and shared read-only by every Snapshot of that commit: a Fetch of an
// unchanged ref writes no files. Callers must never modify a snapshot's
// files. Each open Snapshot holds a shared lock on its tree; a Fetch keeps
// the Options.KeepTrees most recently used trees of its URL and removes
// older ones that no Snapshot, in any process, holds.
//
// # Credentials
//
// Options.Auth carries them; nothing is read from the environment unless
// the caller passes AuthFromEnv(os.LookupEnv), which reads:
//
//	DELIVER_GIT_USERNAME            HTTPS basic-auth user
//	DELIVER_GIT_PASSWORD            HTTPS basic-auth password
//	DELIVER_GIT_TOKEN               HTTPS token, sent as the basic-auth password
//	DELIVER_GIT_SSH_KEY_FILE        SSH private key (PEM/OpenSSH)
//	DELIVER_GIT_SSH_KEY_PASSPHRASE  passphrase of that key
//	DELIVER_GIT_KNOWN_HOSTS         known_hosts files, list-separated
//	                                (else SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts)
//	DELIVER_GIT_CA_FILE             extra PEM CA certificates for HTTPS
//
// SSH host keys are always checked against known_hosts; an unknown or
// changed key is an error and there is no option to skip the check.
// Credentials in an HTTPS URL are used but removed from the URL everywhere
// it is shown.
//
// # Errors
//
// Errors are *Error values reading "source <url>@<ref>: <step>: <cause>",
// with credentials removed from the URL and every known secret scrubbed
// from the message. Match causes with errors.Is: ErrRefNotFound,
// ErrRefMoved, ErrDirty, ErrSignature, ErrPathEscapes, and go-git's
// transport.ErrAuthenticationRequired for refused credentials.
//
// # Safety
//
// Files in a snapshot are reached through Snapshot.Resolve, Open or FS,
// which never leave the snapshot directory through "..", absolute paths or
// symlinks. Submodules are left empty unless Options.Submodules is set.
// With Options.TrustedKeys, the commit must carry a valid OpenPGP signature
// by one of those keys.
package source
