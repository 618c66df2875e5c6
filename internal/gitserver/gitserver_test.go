package gitserver_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/gitserver"
)

// newServedRepo creates root/app with one commit and returns its SHA.
func newServedRepo(t *testing.T) (root, head string) {
	t.Helper()
	root = t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "app"))
	repo.WriteFile("deploy/app.yaml", "served\n")
	return root, repo.CommitAll("initial")
}

// cloneWithCLI clones url with the git CLI and returns the cloned HEAD,
// or the CLI's output on failure.
func cloneWithCLI(t *testing.T, url string, env ...string) (head string, out string, err error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	cmd := gitserver.Command(context.Background(), "/", "clone", "--quiet", url, dir)
	cmd.Env = append(cmd.Env, env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", string(b), err
	}
	content, err := os.ReadFile(filepath.Join(dir, "deploy", "app.yaml"))
	if err != nil || string(content) != "served\n" {
		t.Errorf("cloned deploy/app.yaml = %q, %v", content, err)
	}
	b, err = gitserver.Command(context.Background(), dir, "rev-parse", "HEAD").Output()
	return strings.TrimSpace(string(b)), "", err
}

func TestHTTP(t *testing.T) {
	root, head := newServedRepo(t)
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{Username: "deployer", Password: "s3cret"})
	withUser := func(userinfo string) string {
		return strings.Replace(srv.RepoURL("app"), "://", "://"+userinfo+"@", 1)
	}
	// git sends credentials only after a 401 challenge, so every clone
	// starts with one; what differs is what follows.
	challenge := gitserver.Request{Method: http.MethodGet, Service: "git-upload-pack", Status: http.StatusUnauthorized}
	tests := []struct {
		name   string
		url    string
		wantOK bool
		// wantLast is the last request answered, Bytes ignored.
		wantLast gitserver.Request
	}{
		{"right password", withUser("deployer:s3cret"), true,
			gitserver.Request{Method: http.MethodPost, Service: "git-upload-pack", Status: http.StatusOK}},
		{"wrong password", withUser("deployer:wrong"), false, challenge},
		{"no credentials", srv.RepoURL("app"), false, challenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.ResetRequests()
			got, out, err := cloneWithCLI(t, tt.url)
			if tt.wantOK && (err != nil || got != head) {
				t.Fatalf("clone: HEAD %q, %v\n%s", got, err, out)
			}
			if !tt.wantOK && err == nil {
				t.Fatal("clone succeeded")
			}
			reqs := srv.Requests()
			if len(reqs) == 0 {
				t.Fatal("no request recorded")
			}
			first, last := reqs[0], reqs[len(reqs)-1]
			first.Bytes, last.Bytes = 0, 0
			if diff := cmp.Diff(challenge, first); diff != "" {
				t.Errorf("first request (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLast, last); diff != "" {
				t.Errorf("last request (-want +got):\n%s", diff)
			}
			if !tt.wantOK && len(srv.PackRequests()) != 0 {
				t.Errorf("refused clone reached upload-pack: %+v", reqs)
			}
		})
	}
}

func TestSSH(t *testing.T) {
	root, head := newServedRepo(t)
	key, pub := gitserver.NewClientKey(t, "")
	stranger, _ := gitserver.NewClientKey(t, "")
	srv := gitserver.NewSSH(t, root, pub)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	knownHosts := write("known_hosts", srv.KnownHosts())
	sshCommand := func(keyFile string) string {
		// -F /dev/null: no user ssh_config; BatchMode: never prompt.
		return "GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes" +
			" -o UserKnownHostsFile=" + knownHosts + " -i " + keyFile
	}
	tests := []struct {
		name         string
		key          []byte
		wantOK       bool
		wantServices []string
	}{
		{"authorized key", key, true, []string{"git-upload-pack"}},
		{"unknown key", stranger, false, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Services())
			keyFile := write(strings.ReplaceAll(tt.name, " ", "-"), tt.key)
			got, out, err := cloneWithCLI(t, srv.RepoURL("app"), sshCommand(keyFile))
			if tt.wantOK && (err != nil || got != head) {
				t.Fatalf("clone: HEAD %q, %v\n%s", got, err, out)
			}
			if !tt.wantOK && err == nil {
				t.Fatal("clone succeeded")
			}
			if diff := cmp.Diff(tt.wantServices, srv.Services()[before:]); diff != "" {
				t.Errorf("services run (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateRepo(t *testing.T) {
	r := gitserver.GenerateRepo(t, filepath.Join(t.TempDir(), "big"), 20, 5)
	if got := r.Git("rev-list", "--count", "main"); got != "5" {
		t.Errorf("commits = %s, want 5", got)
	}
	if got := r.Git("ls-tree", "-r", "--name-only", "main"); len(strings.Fields(got)) != 20 {
		t.Errorf("files = %d, want 20", len(strings.Fields(got)))
	}
}
