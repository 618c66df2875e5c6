// Command example-secrets (re)creates the SOPS-encrypted files of
// examples/app with a fresh demo age key. The key is committed next to them
// on purpose: it protects example data only.
//
//	go run ./hack/example-secrets
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/deliverhq/deliver/internal/sopstest"
)

func main() {
	if err := run("examples/app"); err != nil {
		fmt.Fprintln(os.Stderr, "example-secrets:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	id, recipient, err := sopstest.Generate()
	if err != nil {
		return err
	}
	key := fmt.Sprintf("# DEMO KEY for examples/app only: never use it for real secrets.\n# public key: %s\n%s\n", recipient, id)
	if err := os.WriteFile(filepath.Join(dir, "demo.agekey"), []byte(key), 0o600); err != nil {
		return err
	}
	plain := []byte("# The web app's database password (demo value).\ndbPassword: demo-db-password-0b5e\n")
	enc, err := sopstest.Encrypt("web.enc.yaml", plain, recipient)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "secrets", "web.enc.yaml"), enc, 0o644)
}
