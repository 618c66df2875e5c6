//go:build unix

package source

import (
	"os"

	"golang.org/x/sys/unix"
)

// linkAt makes name in the directory to a hard link to name in the
// directory from: one linkat, where writing the file from its blob is a
// decompression, an open, a write and a close. Names are single
// components, so neither side can resolve out of its directory, and
// flags 0 do not follow a symlink.
func linkAt(from *os.File, name string, to *os.File) error {
	return unix.Linkat(int(from.Fd()), name, int(to.Fd()), name, 0)
}
