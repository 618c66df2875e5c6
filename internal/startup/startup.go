// Package startup keeps the garbage collector off while the packages of a
// command initialize. deliver links Helm, kustomize, SOPS, Vault and the
// Kubernetes clients; their package initializers allocate about 10 MB
// (schemes, JSON schemas, validators), and with the default GOGC=100 the
// collector runs several times over that heap before main starts: 10 ms
// of a 35 ms start-up, paid by every command.
//
// Go initializes a package once its imports are, the one first in import
// path order among those ready: this package, which imports only the
// standard library, is initialized before the command's large
// dependencies. The command calls Done from its own init, which runs after
// every package's, to restore the collector. A GOGC set in the environment
// is left alone.
package startup

import (
	"os"
	"runtime/debug"
)

var (
	restore = -1
	off     bool
)

func init() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	restore, off = debug.SetGCPercent(-1), true
}

// Done turns the collector back on as it was. Call it once, from the init
// of package main.
func Done() {
	if off {
		debug.SetGCPercent(restore)
		off = false
	}
}
