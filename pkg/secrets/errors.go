package secrets

import "errors"

// Sentinel errors, for errors.Is. Every error the package returns names the
// file or the ref it is about and wraps one of these when the cause is known;
// no error carries a secret value.
var (
	// ErrNoKey means no configured key could decrypt a SOPS file's data key:
	// the key is wrong or missing.
	ErrNoKey = errors.New("no key could decrypt the data key")
	// ErrMACMismatch means a SOPS file was modified after it was encrypted.
	ErrMACMismatch = errors.New("file was modified after encryption (MAC mismatch)")
	// ErrNotEncrypted means a file has no SOPS metadata.
	ErrNotEncrypted = errors.New("not a SOPS file: no sops metadata")
	// ErrUnknownFormat means a format name is not one of yaml, json,
	// dotenv, ini and binary.
	ErrUnknownFormat = errors.New("unknown format")
	// ErrNotFound means a Vault path, a key inside a secret or a path inside
	// a SOPS file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotVersioned means a Vault path is not in a KV v2 mount: its
	// secrets have no version numbers.
	ErrNotVersioned = errors.New("not a kv v2 secret: no versions")
	// ErrPermissionDenied means Vault refused the request with the current
	// token's policies.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrTokenExpired means the Vault token is expired or revoked and the
	// configured auth method cannot log in again.
	ErrTokenExpired = errors.New("vault token expired or revoked")
	// ErrSealed means the Vault server is sealed.
	ErrSealed = errors.New("vault is sealed")
	// ErrUnreachable means the Vault server could not be reached.
	ErrUnreachable = errors.New("vault unreachable")
	// ErrBadRef means a ref+ string is malformed or names an unknown backend.
	ErrBadRef = errors.New("malformed ref")
	// ErrSOPSMetadata means a manifest still carries SOPS metadata or
	// encrypted values where only plain ones may go, such as at apply time.
	ErrSOPSMetadata = errors.New("still encrypted: carries sops metadata")
)
