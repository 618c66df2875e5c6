package secrets

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempDir is a private folder for decrypted files that a tool must read
// from disk, such as the files and env files of a kustomize
// secretGenerator. It is created outside the repository snapshot and the
// cache, readable by the owner only; Remove deletes it.
type TempDir struct {
	// Path is the folder's absolute path.
	Path string
	root *os.Root
}

// NewTempDir creates a private folder under parent, or under the system's
// temporary folder when parent is empty.
func NewTempDir(parent string) (*TempDir, error) {
	dir, err := os.MkdirTemp(parent, "deliver-secrets-")
	if err != nil {
		return nil, fmt.Errorf("secrets: temporary folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("secrets: temporary folder: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("secrets: temporary folder: %w", err)
	}
	return &TempDir{Path: dir, root: root}, nil
}

// WriteFile writes a file readable by the owner only and returns its path.
// name is relative to the folder and cannot leave it; missing parent
// folders are created.
func (d *TempDir) WriteFile(name string, data []byte) (string, error) {
	if dir := filepath.Dir(name); dir != "." {
		if err := d.root.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := d.root.WriteFile(name, data, 0o600); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return filepath.Join(d.Path, name), nil
}

// Remove deletes the folder and everything in it.
func (d *TempDir) Remove() error {
	if d == nil {
		return nil
	}
	_ = d.root.Close()
	if err := os.RemoveAll(d.Path); err != nil {
		return fmt.Errorf("secrets: remove temporary folder: %w", err)
	}
	return nil
}
