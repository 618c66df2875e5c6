package source

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrRefNotFound: the ref names no branch, tag or commit of the remote.
	ErrRefNotFound = errors.New("ref not found")
	// ErrRefMoved: the ref changed between listing and fetching; retry.
	ErrRefMoved = errors.New("ref moved during fetch")
	// ErrDirty: RequireClean was set and the working tree has changes.
	ErrDirty = errors.New("working tree is dirty")
	// ErrSignature: the commit is unsigned or not signed by a trusted key.
	ErrSignature = errors.New("commit signature not trusted")
	// ErrPathEscapes: a path resolves outside the snapshot root.
	ErrPathEscapes = errors.New("path escapes snapshot root")
)

// Error is returned by Fetch. Its message names the URL (without
// credentials) and the ref, then the step that failed:
//
//	source https://host/repo.git@v1.2: resolve ref: ref not found
type Error struct {
	// URL is the repository URL with credentials removed.
	URL string
	// Ref is the requested ref ("HEAD" when none was given).
	Ref string
	// Op is the step that failed, e.g. "list refs" or "fetch".
	Op string
	// Err is the cause.
	Err error

	// secrets are scrubbed from the message as a second line of defence:
	// go-git or the server could echo a credential back in an error.
	secrets []string
}

// Error formats the error with every known secret replaced by "***".
func (e *Error) Error() string {
	msg := "source " + e.URL + "@" + e.Ref + ": " + e.Op + ": " + e.Err.Error()
	for _, s := range e.secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// GoString keeps %#v, which would otherwise print the unexported list of
// secrets, to the scrubbed message.
func (e *Error) GoString() string {
	return "&source.Error{" + strconv.Quote(e.Error()) + "}"
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
