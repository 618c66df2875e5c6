package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
)

// anyFailure is a wanted exit code: any but 0.
const anyFailure = -1

// ciScriptCase is what the stub deliver does in a CI script, and what the
// script must do then.
type ciScriptCase struct {
	name     string
	mode     string // Cloud Build's _DELIVER_MODE
	exit     int    // the stub deliver's exit code
	empty    bool   // the stub deliver prints nothing
	wantExit int    // the script's exit code, or anyFailure
	wantPost bool   // ci/post-plan.sh ran on what deliver printed
	postFail bool   // the stub post-plan.sh fails (a refused token)
}

// readCIFile parses examples/app/ci/NAME.
func readCIFile(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../examples/app/ci", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}

// ciStep is the step of steps whose key is value.
func ciStep(t *testing.T, steps any, key, value string) map[string]any {
	t.Helper()
	list, _ := steps.([]any)
	for _, s := range list {
		if m, ok := s.(map[string]any); ok && m[key] == value {
			return m
		}
	}
	t.Fatalf("no step with %s %q in %v", key, value, steps)
	return nil
}

// cloudBuildVar is what Cloud Build substitutes in a step: $$ (a $), and
// $NAME or ${NAME}.
var cloudBuildVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// cloudBuildSubstitute substitutes s as Cloud Build does, in one pass;
// with substitutionOption ALLOW_LOOSE, an unknown one is empty.
func cloudBuildSubstitute(s string, subst map[string]string) string {
	return cloudBuildVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		return subst[strings.Trim(m, "${}")]
	})
}

// ciStubs is a CI job's machine: a log, the checkout with a stub
// ci/post-plan.sh, a bin directory with a stub apk, and a stub deliver.
type ciStubs struct {
	checkout, bin, log string
}

const (
	ciStubDeliver = `#!/bin/sh
printf 'deliver: %s\n' "$*" >> "$CI_STUB_LOG"
[ -n "$CI_STUB_EMPTY" ] || printf '%s\n' "$CI_STUB_BODY"
exit "$CI_STUB_EXIT"
`
	ciStubPost = `#!/bin/sh
printf 'posted:%s\n' "$(cat "$1")" >> "$CI_STUB_LOG"
[ -z "$CI_STUB_POST_FAILS" ] || exit 3
`
	ciStubApk = `#!/bin/sh
printf 'apk: %s\n' "$*" >> "$CI_STUB_LOG"
`
)

// newCIStubs makes the stubs, checkout being the working directory (a
// temporary one if empty), and the stub deliver at deliver.
func newCIStubs(t *testing.T, checkout, deliver string) *ciStubs {
	t.Helper()
	if checkout == "" {
		checkout = t.TempDir()
	}
	s := &ciStubs{checkout: checkout, bin: t.TempDir(), log: filepath.Join(t.TempDir(), "log")}
	for file, text := range map[string]string{
		filepath.Join(checkout, "ci", "post-plan.sh"): ciStubPost,
		filepath.Join(s.bin, "apk"):                   ciStubApk,
		deliver:                                       ciStubDeliver,
	} {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// run runs the shell command line in the checkout with env, the stub
// deliver doing as c says; it returns the exit code, the output and the
// log's lines.
func (s *ciStubs) run(t *testing.T, c ciScriptCase, body string, argv, env []string) (int, string, []string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.checkout
	cmd.Env = append([]string{
		"PATH=" + s.bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"CI_STUB_LOG=" + s.log,
		"CI_STUB_BODY=" + body,
		"CI_STUB_EXIT=" + strconv.Itoa(c.exit),
	}, env...)
	if c.empty {
		cmd.Env = append(cmd.Env, "CI_STUB_EMPTY=1")
	}
	if c.postFail {
		cmd.Env = append(cmd.Env, "CI_STUB_POST_FAILS=1")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := testenv.ExitCode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return code, out.String(), strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// check checks the script's exit code and log: deliver ran once with
// want in its arguments; the body was posted after it, once, if c says so,
// else nothing was.
func (c ciScriptCase) check(t *testing.T, code int, out string, log []string, body string, want ...string) {
	t.Helper()
	if c.wantExit == anyFailure && code == 0 || c.wantExit != anyFailure && code != c.wantExit {
		t.Errorf("the script exited %d, want %s", code, map[bool]string{true: "non-zero", false: strconv.Itoa(c.wantExit)}[c.wantExit == anyFailure])
	}
	deliverAt, posts := -1, []int{}
	for i, l := range log {
		switch {
		case strings.HasPrefix(l, "deliver: "):
			if deliverAt >= 0 {
				t.Errorf("deliver ran twice: %q", log)
			}
			deliverAt = i
			for _, w := range want {
				if !strings.Contains(l, w) {
					t.Errorf("deliver ran as %q, without %q", l, w)
				}
			}
		case strings.HasPrefix(l, "posted:"):
			posts = append(posts, i)
			if got := strings.TrimPrefix(l, "posted:"); got != body {
				t.Errorf("post-plan.sh posted %q, want what deliver printed, %q", got, body)
			}
		}
	}
	if deliverAt < 0 {
		t.Errorf("deliver did not run: %q", log)
	}
	switch {
	case c.wantPost && len(posts) != 1:
		t.Errorf("posted %d times, want once: %q", len(posts), log)
	case c.wantPost && posts[0] < deliverAt:
		t.Errorf("posted before deliver ran: %q", log)
	case !c.wantPost && len(posts) != 0:
		t.Errorf("posted, want nothing posted: %q", log)
	}
	if t.Failed() {
		t.Logf("log:\n%s\noutput:\n%s", strings.Join(log, "\n"), out)
	}
}

// TestPlanCIScripts runs the plan scripts of the GitHub Actions workflow
// and of the Cloud Build file of examples/app, as the CI would, with a
// stub deliver and a stub post-plan.sh: the check fails when diff exits 1
// or the plan cannot be posted, not for changes (exit 2); what diff
// printed is posted, also after an error, before the script ends; nothing
// is posted when diff printed nothing. Cloud Build's apply
// mode runs apply, exits with its code, and posts nothing.
func TestPlanCIScripts(t *testing.T) {
	t.Parallel()
	diffCases := []ciScriptCase{
		{name: "no changes", mode: "diff", exit: 0, wantExit: 0, wantPost: true},
		{name: "changes", mode: "diff", exit: 2, wantExit: 0, wantPost: true},
		{name: "error after printing", mode: "diff", exit: 1, wantExit: anyFailure, wantPost: true},
		{name: "error printing nothing", mode: "diff", exit: 1, empty: true, wantExit: anyFailure},
		{name: "nothing printed", mode: "diff", exit: 0, empty: true, wantExit: 0},
		{name: "changes, posting fails", mode: "diff", exit: 2, wantExit: anyFailure, wantPost: true, postFail: true},
	}
	applyCases := []ciScriptCase{
		{name: "apply", mode: "apply", exit: 0, wantExit: 0},
		{name: "apply fails", mode: "apply", exit: 1, wantExit: 1},
	}
	body := func(c ciScriptCase) string {
		return "<!-- deliver-plan --> **deliver diff** (" + c.name + ") `x` \\ $HOME"
	}

	// GitHub Actions: the plan step's run, with the default shell of
	// Linux runners, bash -e {0}.
	gha := readCIFile(t, "github-actions.yaml")
	jobs, _ := gha["jobs"].(map[string]any)
	job, _ := jobs["plan"].(map[string]any)
	step := ciStep(t, job["steps"], "name", "plan")
	ghaScript, _ := step["run"].(string)
	if ghaScript == "" || step["shell"] != nil || strings.Contains(ghaScript, "${{") {
		t.Fatalf("github-actions.yaml: want the plan step to run a script, with the default shell and no expressions: %v", step)
	}
	for _, c := range diffCases {
		t.Run("github-actions/"+c.name, func(t *testing.T) {
			t.Parallel()
			runner := t.TempDir()
			s := newCIStubs(t, "", filepath.Join(runner, "deliver"))
			code, out, log := s.run(t, c, body(c), []string{"bash", "-e", "-c", ghaScript}, []string{
				"RUNNER_TEMP=" + runner, "DELIVER_ENVS=staging,prod", "GITHUB_TOKEN=" + ciToken, "PR_NUMBER=7",
			})
			c.check(t, code, out, log, body(c), "diff ", "--env staging,prod ", "-o markdown",
				"--kubeconfig "+filepath.Join(runner, "kubeconfig"))
		})
	}

	// Cloud Build: the deliver step's sh -c script, substituted, /workspace
	// being a temporary directory; with bash and with the machine's sh.
	cb := readCIFile(t, "cloudbuild.yaml")
	step = ciStep(t, cb["steps"], "id", "deliver")
	args, _ := step["args"].([]any)
	if step["entrypoint"] != "sh" || len(args) != 2 || args[0] != "-c" {
		t.Fatalf("cloudbuild.yaml: want the deliver step to run sh -c SCRIPT: %v", step)
	}
	cbScript, _ := args[1].(string)
	defaults := map[string]string{}
	substitutions, _ := cb["substitutions"].(map[string]any)
	for k, v := range substitutions {
		defaults[k], _ = v.(string)
	}
	if defaults["_DELIVER_MODE"] != "diff" || defaults["_DELIVER_ENVS"] == "" {
		t.Fatalf("cloudbuild.yaml: substitutions %v, want _DELIVER_MODE diff and _DELIVER_ENVS", substitutions)
	}
	var stepEnv []string
	list, _ := step["env"].([]any)
	for _, e := range list {
		s, _ := e.(string)
		stepEnv = append(stepEnv, s)
	}
	for _, shell := range []string{"bash", "sh"} {
		for _, c := range slices.Concat(diffCases, applyCases) {
			t.Run("cloudbuild/"+shell+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				workspace := t.TempDir()
				s := newCIStubs(t, workspace, filepath.Join(workspace, "deliver"))
				subst := map[string]string{"_DELIVER_MODE": c.mode, "_PR_NUMBER": "7", "REPO_FULL_NAME": "shop/web"}
				for k, v := range defaults {
					if _, set := subst[k]; !set {
						subst[k] = v
					}
				}
				script := strings.ReplaceAll(cloudBuildSubstitute(cbScript, subst), "/workspace", workspace)
				env := []string{"GITHUB_TOKEN=" + ciToken, "KUBECONFIG_DATA=kubeconfig of the cluster", "SOPS_AGE_KEY=AGE-SECRET-KEY-1STUB"}
				for _, e := range stepEnv {
					env = append(env, cloudBuildSubstitute(e, subst))
				}
				code, out, log := s.run(t, c, body(c), []string{shell, "-c", script}, env)
				want := []string{c.mode + " ", "--env " + defaults["_DELIVER_ENVS"] + " ", "--kubeconfig " + filepath.Join(workspace, "kubeconfig")}
				if c.mode == "diff" {
					want = append(want, "-o markdown")
				}
				c.check(t, code, out, log, body(c), want...)
				if !slices.Contains(log, "apk: add --no-cache bash curl jq") {
					t.Errorf("apk did not add bash, curl and jq: %q", log)
				}
				if kc, err := os.ReadFile(filepath.Join(workspace, "kubeconfig")); err != nil || string(kc) != "kubeconfig of the cluster" {
					t.Errorf("kubeconfig %q (%v), want KUBECONFIG_DATA", kc, err)
				}
			})
		}
	}
}
