package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BaseTime returns the author and committer time of the first commit a Repo
// makes; each later commit is one minute later. Fixed times make commit
// SHAs and author times predictable in assertions.
func BaseTime() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }

// RequireGit skips the test when the git CLI is not installed: the fixtures
// and servers need it, the code under test does not.
func RequireGit(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Skip("git CLI not installed")
	}
}

// Command returns a git command run in dir with an environment isolated
// from the user's and system's git configuration, so a developer's
// ~/.gitconfig (signing, hooks, default branch) cannot change test results.
func Command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.com",
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.com",
	)
	return cmd
}

// Repo is a non-bare repository on disk, created and changed with the git
// CLI. Servers in this package serve it directly from its directory.
type Repo struct {
	// Dir is the working tree of the repository.
	Dir     string
	tb      testing.TB
	commits int
}

// NewRepo creates an empty repository with default branch main at dir.
func NewRepo(tb testing.TB, dir string) *Repo {
	tb.Helper()
	RequireGit(tb)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	r := &Repo{Dir: dir, tb: tb}
	r.Git("init", "--quiet", "--initial-branch=main")
	return r
}

// Git runs git in the repository and returns its trimmed stdout; it fails
// the test on a non-zero exit.
func (r *Repo) Git(args ...string) string {
	r.tb.Helper()
	return r.GitEnv(nil, args...)
}

// GitEnv is Git with extra environment variables.
func (r *Repo) GitEnv(env []string, args ...string) string {
	r.tb.Helper()
	cmd := Command(context.Background(), r.Dir, args...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// WriteFile writes content to name (slash separated, relative to the
// working tree), creating parent directories.
func (r *Repo) WriteFile(name, content string) {
	r.tb.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// Symlink creates a symbolic link name pointing at target.
func (r *Repo) Symlink(target, name string) {
	r.tb.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.tb.Fatal(err)
	}
}

// NextTime returns the author time the next CommitAll will use.
func (r *Repo) NextTime() time.Time {
	return BaseTime().Add(time.Duration(r.commits) * time.Minute)
}

// CommitAll stages every change and commits it with message, returning the
// new commit's SHA.
func (r *Repo) CommitAll(message string) string {
	r.tb.Helper()
	when := r.NextTime().Format(time.RFC3339)
	r.commits++
	r.Git("add", "--all")
	r.GitEnv([]string{"GIT_AUTHOR_DATE=" + when, "GIT_COMMITTER_DATE=" + when},
		"commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", message)
	return r.Git("rev-parse", "HEAD")
}

// Head returns the SHA of HEAD.
func (r *Repo) Head() string {
	r.tb.Helper()
	return r.Git("rev-parse", "HEAD")
}

// String describes the repository for test failure messages.
func (r *Repo) String() string { return fmt.Sprintf("repo %s", r.Dir) }
