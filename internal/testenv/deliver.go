package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildDeliver compiles cmd/deliver into dir and returns the binary's
// path, for tests that run deliver the way users do.
func BuildDeliver(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "deliver")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/deliver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: build deliver: %v\n%s", err, out)
	}
	return bin, nil
}

// ExitCode runs cmd to the end and returns its exit code. The error is
// only for a command that could not run at all.
func ExitCode(cmd *exec.Cmd) (int, error) {
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}
