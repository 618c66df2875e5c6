package badinput

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/internal/testenv"
)

// badCase is one bad input: what the repository holds, how deliver is run,
// and what it must say. Strings may use the variables of caseEnv.expand.
type badCase struct {
	name string
	// cmd is render, diff or apply (default apply).
	cmd string
	// files are written to the repository (the working tree, or the git
	// repository for source "http" or "ssh").
	files map[string]string
	// chart copies testdata/chart to charts/app in the repository.
	chart bool
	// source is "" (--path, the working tree), "http" or "ssh": a git
	// repository on the shared servers, fetched with --repo.
	source string
	// setup runs after the files are written and before the state of the
	// namespace is recorded: it may apply a first version, or start a
	// server.
	setup func(t *testing.T, c *caseEnv)
	// flags are added to the command line; env to the environment.
	flags []string
	env   []string
	// wantCode is the exit code, default 1.
	wantCode int
	// want are substrings the output must contain: the culprit.
	want []string
	// notWant are substrings the output must not contain (besides the
	// secrets, always checked).
	notWant []string
	// mayChange lists objects ("Kind/name" in the case's namespace) that
	// may change; everything else must be as before the run.
	mayChange []string
	// check runs extra assertions on the cluster after the run.
	check func(t *testing.T, c *caseEnv)
	// knownBug skips the case with this reason: a real bug in deliver that
	// this case found, to be fixed outside this package. The environment
	// variable BADINPUT_KNOWN_BUGS=1 runs such cases anyway.
	knownBug string
}

// caseEnv is the world one case runs in.
type caseEnv struct {
	s    *shared
	ns   string
	dir  string // repository working tree
	out  string // folder deliver may write to: HOME, TMPDIR, cache
	vars map[string]string
	// url is the --repo URL for git sources.
	url string
	// secrets lists extra secret values of this case.
	secrets []string
	// environ is the environment deliver runs with.
	environ []string
}

// expand replaces $NS, $DIR, $OUT, $ROOT, $URL and the shared variables
// ($VAULT, $AGEKEY, ...), longest names first so that $VAULT_TOKEN is not
// read as $VAULT.
func (c *caseEnv) expand(s string) string {
	keys := make([]string, 0, len(c.vars))
	for k := range c.vars {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) > len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
	})
	for _, k := range keys {
		s = strings.ReplaceAll(s, "$"+k, c.vars[k])
	}
	return s
}

// write writes files into the repository, expanding variables.
func (c *caseEnv) write(t *testing.T, files map[string]string) {
	t.Helper()
	expanded := make(map[string]string, len(files))
	for name, content := range files {
		expanded[name] = c.expand(content)
	}
	testenv.WriteFiles(t, c.dir, expanded)
}

// deliver runs deliver with the case's environment and the usual flags
// (kubeconfig, inventory namespace, timeout) for diff and apply.
func (c *caseEnv) deliver(t *testing.T, cmd string, source []string, flags ...string) result {
	t.Helper()
	args := append([]string{cmd}, source...)
	hasFlag := func(name string) bool {
		for _, f := range flags {
			if f == name || strings.HasPrefix(f, name+"=") {
				return true
			}
		}
		return false
	}
	if cmd != "render" {
		if !hasFlag("--kubeconfig") {
			args = append(args, "--kubeconfig", env.Kubeconfig)
		}
		args = append(args, "--inventory-namespace", c.ns)
	}
	if cmd == "apply" && !hasFlag("--timeout") {
		args = append(args, "--timeout", "30s")
	}
	for _, f := range flags {
		args = append(args, c.expand(f))
	}
	r := runDeliver(t, c.environ, args...)
	t.Logf("deliver %s\nexit %d\n%s", strings.Join(args, " "), r.code, r.out)
	return r
}

// sourceFlags returns --path or --repo for the case.
func (c *caseEnv) sourceFlags() []string {
	if c.url != "" {
		return []string{"--repo", c.url, "--ref", "main", "--cache-dir", filepath.Join(c.out, "cache")}
	}
	return []string{"--path", c.dir}
}

// copyDir copies a fixture folder into the repository.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", from, err, out)
	}
}

// runCase runs one case end to end.
func runCase(t *testing.T, s *shared, tc badCase) {
	// BADINPUT_KNOWN_BUGS=1 runs the known-bug cases too, to check a fix.
	if tc.knownBug != "" && os.Getenv("BADINPUT_KNOWN_BUGS") == "" {
		t.Skip("known bug: " + tc.knownBug)
	}
	ns := env.Namespace(t)
	base := t.TempDir()
	c := &caseEnv{s: s, ns: ns, dir: filepath.Join(base, "repo"), out: filepath.Join(base, "out")}
	for _, d := range []string{c.dir, c.out, filepath.Join(c.out, "home"), filepath.Join(c.out, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.vars = map[string]string{"NS": ns, "DIR": c.dir, "OUT": c.out, "ROOT": base}
	for k, v := range s.vars {
		c.vars[k] = v
	}
	c.environ = []string{
		"HOME=" + filepath.Join(c.out, "home"),
		"TMPDIR=" + filepath.Join(c.out, "tmp"),
		"XDG_CACHE_HOME=" + filepath.Join(c.out, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(c.out, "config"),
	}
	if tc.chart {
		copyDir(t, "testdata/chart", filepath.Join(c.dir, "charts", "app"))
	}
	c.write(t, tc.files)
	switch tc.source {
	case "http", "ssh":
		// The working tree becomes a git repository on the shared
		// servers; the case's namespace names it uniquely.
		repoDir := filepath.Join(s.gitRoot, ns)
		if err := os.Rename(c.dir, repoDir); err != nil {
			t.Fatal(err)
		}
		c.dir = repoDir
		c.vars["DIR"] = repoDir
		repo := gitserver.NewRepo(t, repoDir)
		repo.CommitAll("bad input")
		if tc.source == "http" {
			c.url = s.http.RepoURL(ns)
		} else {
			c.url = s.ssh.RepoURL(ns)
		}
		c.vars["URL"] = c.url
	}
	for _, e := range tc.env {
		c.environ = append(c.environ, c.expand(e))
	}
	if tc.setup != nil {
		tc.setup(t, c)
	}
	before := snapshot(t, ns)
	cmd := tc.cmd
	if cmd == "" {
		cmd = "apply"
	}
	start := time.Now()
	r := c.deliver(t, cmd, c.sourceFlags(), tc.flags...)
	elapsed := time.Since(start)

	// (1) The exit code.
	wantCode := tc.wantCode
	if wantCode == 0 {
		wantCode = 1
	}
	if r.code != wantCode {
		t.Errorf("exit code %d, want %d", r.code, wantCode)
	}
	// (2) The message names the culprit.
	for _, w := range tc.want {
		if w = c.expand(w); !strings.Contains(r.out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, w := range tc.notWant {
		if w = c.expand(w); strings.Contains(r.out, w) {
			t.Errorf("output contains %q", w)
		}
	}
	if strings.Contains(r.out, "panic") || strings.Contains(r.out, "goroutine ") {
		t.Errorf("deliver panicked")
	}
	// (3) Nothing applied, or the previous state intact.
	mayChange := make([]string, len(tc.mayChange))
	for i, m := range tc.mayChange {
		mayChange[i] = c.expand(m)
	}
	compareSnapshots(t, before, snapshot(t, ns), mayChange)
	if tc.check != nil {
		tc.check(t, c)
	}
	// (4) No secret anywhere: output, and every file deliver wrote.
	checkNoLeak(t, r.out, append(s.secretValues(), c.secrets...), c.out)
	if elapsed > 60*time.Second {
		t.Errorf("deliver took %s on bad input", elapsed.Round(time.Second))
	}
}
