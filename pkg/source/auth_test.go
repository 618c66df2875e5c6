package source_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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
			s, err := fetch(t, source.Options{URL: tt.url, Ref: "main", Auth: tt.auth, CacheDir: cacheDir(t)})
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
			s, err := fetch(t, source.Options{URL: f.url, Auth: tt.auth, CacheDir: cacheDir(t)})
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
			s, err := fetch(t, source.Options{URL: url, Auth: tt.auth, CacheDir: cacheDir(t)})
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

// TestFetchHTTPSTokenNeverLeaks puts the canary as a token in an HTTPS URL
// (https://user:TOKEN@host/...) and fails the fetch in each way that
// involves the server; no rendering of the error, no log line and no file
// in the cache may contain it.
func TestFetchHTTPSTokenNeverLeaks(t *testing.T) {
	// The server's real token is the canary too, so that the successful
	// case checks the cache for a stored credential.
	f := newFixture(t, gitserver.HTTPOptions{TLS: true, Username: "deployer", Password: canary})
	withToken := func(token string) string {
		return strings.Replace(f.url, "://", "://deployer:"+token+"@", 1)
	}
	tests := []struct {
		name    string
		url     string
		ref     string
		auth    source.Auth
		wantErr string // "" for success
	}{
		{"wrong token", withToken("wrong-" + canary), "main", source.Auth{CABundle: f.srv.CAPEM()}, "list refs: authentication required"},
		{"untrusted certificate", withToken(canary), "main", source.Auth{}, "list refs: "},
		{"token in Auth and URL", withToken(canary), "main", source.Auth{Token: "wrong-" + canary, CABundle: f.srv.CAPEM()}, "list refs: authentication required"},
		{"unknown ref", withToken(canary), "nope", source.Auth{CABundle: f.srv.CAPEM()}, "resolve ref: ref not found"},
		{"success", withToken(canary), "main", source.Auth{CABundle: f.srv.CAPEM()}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := cacheDir(t)
			s, err := fetch(t, source.Options{URL: tt.url, Ref: tt.ref, Auth: tt.auth, CacheDir: cache})
			var shown []string
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				shown = append(shown, s.URL, fmt.Sprintf("%+v", *s))
			} else {
				if err == nil {
					t.Fatal("Fetch succeeded")
				}
				if want := "source " + f.url + "@" + tt.ref + ": " + tt.wantErr; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("message %q, want prefix %q", err, want)
				}
				shown = append(shown, renderings(err)...)
			}
			for _, text := range shown {
				if strings.Contains(text, canary) {
					t.Errorf("token leaked: %s", text)
				}
			}
			_ = filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(canary)) {
					t.Errorf("token stored in cache file %s", p)
				}
				return nil
			})
		})
	}
}

// renderings returns the ways an error ends up in front of people: fmt
// verbs, structured logs, and the message of every error it wraps.
func renderings(err error) []string {
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		out = append(out, fmt.Sprintf(verb, err))
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Error("fetch failed", "err", err)
	slog.New(slog.NewJSONHandler(&buf, nil)).Error("fetch failed", "err", err)
	out = append(out, buf.String())
	queue := []error{err}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		out = append(out, e.Error())
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				queue = append(queue, next)
			}
		case interface{ Unwrap() []error }:
			queue = append(queue, u.Unwrap()...)
		}
	}
	return out
}
