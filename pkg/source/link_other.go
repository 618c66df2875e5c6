//go:build !unix

package source

import (
	"errors"
	"os"
)

// linkAt is not available here: every file is written.
func linkAt(_ *os.File, _ string, _ *os.File) error { return errors.ErrUnsupported }
