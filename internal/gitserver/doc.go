// Package gitserver runs real git servers on loopback for tests: smart HTTP
// through git's own git-http-backend behind net/http/cgi, and SSH through an
// in-process golang.org/x/crypto/ssh server that execs git-upload-pack and
// git-receive-pack. It also creates repositories with the git CLI, so tests
// exercise the same wire protocol and on-disk format a real forge serves.
//
// The helpers need the git CLI on PATH; tests that use them skip when it is
// missing rather than fail, since the code under test never runs git itself.
package gitserver
