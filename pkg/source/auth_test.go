package source_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// canary is a password that must never show up in an error message.
const canary = "canary-Pa55w0rd-7f3e"

func TestFetchHTTPAuth(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{Username: "deployer", Password: "s3cret-token"})
	withUserinfo := func(user, pass string) string {
		return strings.Replace(f.url, "://", "://"+user+":"+pass+"@", 1)
	}
	tests := []struct {
		name    string
		url     string
		auth    source.Auth
		wantErr error
	}{
		{"password", f.url, source.Auth{Username: "deployer", Password: "s3cret-token"}, nil},
		{"token", f.url, source.Auth{Username: "deployer", Token: "s3cret-token"}, nil},
		{"credentials in url", withUserinfo("deployer", "s3cret-token"), source.Auth{}, nil},
		{"no credentials", f.url, source.Auth{}, transport.ErrAuthenticationRequired},
		{"wrong password", f.url, source.Auth{Username: "deployer", Password: canary}, transport.ErrAuthenticationRequired},
		{"wrong token", f.url, source.Auth{Token: canary}, transport.ErrAuthenticationRequired},
		{"wrong password in url", withUserinfo("deployer", canary), source.Auth{}, transport.ErrAuthenticationRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := fetch(t, source.Options{URL: tt.url, Ref: "main", Auth: tt.auth, CacheDir: t.TempDir()})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if s.Commit != f.c2 {
					t.Errorf("Commit = %s, want %s", s.Commit, f.c2)
				}
				if strings.Contains(s.URL, "s3cret") {
					t.Errorf("Snapshot.URL %q contains the password", s.URL)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			msg := err.Error()
			if strings.Contains(msg, canary) {
				t.Errorf("error leaks the password: %s", msg)
			}
			wantPrefix := "source " + f.url + "@main: list refs: "
			if !strings.HasPrefix(msg, wantPrefix) {
				t.Errorf("error %q, want prefix %q", msg, wantPrefix)
			}
		})
	}
}

func TestFetchHTTPSCABundle(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{TLS: true})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		auth    source.Auth
		wantErr string
	}{
		{"system roots only", source.Auth{}, "certificate"},
		{"ca bundle", source.Auth{CABundle: f.srv.CAPEM()}, ""},
		{"ca file", source.Auth{CAFile: caFile}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := fetch(t, source.Options{URL: f.url, Auth: tt.auth, CacheDir: t.TempDir()})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if s.Commit != f.c2 {
				t.Errorf("Commit = %s, want %s", s.Commit, f.c2)
			}
		})
	}
}

func TestFetchSSH(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "app"))
	repo.WriteFile("app.yaml", "over ssh\n")
	head := repo.CommitAll("ssh commit")

	clientKey, clientPub := gitserver.NewClientKey(t, "")
	lockedKey, lockedPub := gitserver.NewClientKey(t, canary)
	strangerKey, _ := gitserver.NewClientKey(t, "")
	srv := gitserver.NewSSH(t, root, clientPub, lockedPub)
	other := gitserver.NewSSH(t, t.TempDir()) // same address form, different host key

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", srv.KnownHosts())
	unknown := write("unknown", other.KnownHosts())
	// The server's address with another server's key: a changed host key.
	mismatch := write("mismatch", []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, other.HostKey)+"\n"))
	keyFile := write("id_ed25519", clientKey)

	url := srv.RepoURL("app")
	tests := []struct {
		name    string
		auth    source.Auth
		wantErr string
	}{
		{"key", source.Auth{SSHKey: clientKey, KnownHostsFiles: []string{good}}, ""},
		{"key file", source.Auth{SSHKeyFile: keyFile, KnownHostsFiles: []string{good}}, ""},
		{"passphrase", source.Auth{SSHKey: lockedKey, SSHKeyPassphrase: canary, KnownHostsFiles: []string{good}}, ""},
		{"wrong passphrase", source.Auth{SSHKey: lockedKey, SSHKeyPassphrase: canary + "x", KnownHostsFiles: []string{good}}, "source " + url + "@HEAD: auth: parse ssh key"},
		{"unknown host key", source.Auth{SSHKey: clientKey, KnownHostsFiles: []string{unknown}}, "key is unknown"},
		{"wrong host key", source.Auth{SSHKey: clientKey, KnownHostsFiles: []string{mismatch}}, "key mismatch"},
		{"no known_hosts file", source.Auth{SSHKey: clientKey, KnownHostsFiles: []string{filepath.Join(dir, "missing")}}, "source " + url + "@HEAD: auth: known_hosts: none of"},
		{"unauthorized client key", source.Auth{SSHKey: strangerKey, KnownHostsFiles: []string{good}}, "unable to authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := fetch(t, source.Options{URL: url, Auth: tt.auth, CacheDir: t.TempDir()})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				got := pinned{Commit: s.Commit, RefName: s.RefName, Fetched: s.Fetched, App: readFile(t, s, "app.yaml")}
				want := pinned{Commit: head, RefName: "refs/heads/main", Fetched: true, App: "over ssh\n"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("snapshot (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("error leaks the passphrase: %v", err)
			}
		})
	}
}

func TestAuthFromEnv(t *testing.T) {
	env := map[string]string{
		source.EnvUsername:      "u",
		source.EnvPassword:      "p",
		source.EnvToken:         "t",
		source.EnvSSHKeyFile:    "/keys/id",
		source.EnvSSHKnownHosts: "/a/known_hosts" + string(filepath.ListSeparator) + "/b/known_hosts",
		source.EnvCAFile:        "/ca.pem",
	}
	got := source.AuthFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := source.Auth{
		Username: "u", Password: "p", Token: "t", SSHKeyFile: "/keys/id",
		KnownHostsFiles: []string{"/a/known_hosts", "/b/known_hosts"}, CAFile: "/ca.pem",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AuthFromEnv (-want +got):\n%s", diff)
	}
}
