package source_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// pinned is the part of a Snapshot the ref tests compare.
type pinned struct {
	Commit     string
	RefName    string
	Subject    string
	AuthorTime time.Time
	Fetched    bool
	App        string
}

func pinnedOf(t *testing.T, s *source.Snapshot) pinned {
	return pinned{
		Commit:     s.Commit,
		RefName:    s.RefName,
		Subject:    s.Subject,
		AuthorTime: s.AuthorTime.UTC(),
		Fetched:    s.Fetched,
		App:        readFile(t, s, "deploy/app.yaml"),
	}
}

func TestFetchRefs(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	t1 := gitserver.BaseTime().Add(time.Minute)
	t2 := gitserver.BaseTime().Add(2 * time.Minute)
	v1 := func(ref string) pinned {
		return pinned{Commit: f.c1, RefName: ref, Subject: "add app v1", AuthorTime: t1, Fetched: true, App: "version: v1\n"}
	}
	v2 := func(ref string) pinned {
		return pinned{Commit: f.c2, RefName: ref, Subject: "bump app to v2", AuthorTime: t2, Fetched: true, App: "version: v2\n"}
	}
	tests := []struct {
		name string
		ref  string
		want pinned
	}{
		{"default is remote HEAD", "", v2("refs/heads/main")},
		{"branch", "main", v2("refs/heads/main")},
		{"full ref name", "refs/heads/release", v1("refs/heads/release")},
		{"annotated tag", "v1", v1("refs/tags/v1")},
		{"lightweight tag", "light", v1("refs/tags/light")},
		{"full sha of a tip", f.c2, v2("refs/heads/main")},
		{"short sha of a tip", f.c1[:7], v1("refs/heads/release")},
		{"upper-case short sha", strings.ToUpper(f.c2[:10]), v2("refs/heads/main")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustFetch(t, source.Options{URL: f.url, Ref: tt.ref, CacheDir: cacheDir(t)})
			if diff := cmp.Diff(tt.want, pinnedOf(t, s)); diff != "" {
				t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFetchNonTipSHA fetches a commit no ref points at, which a server only
// hands out through a deep fetch, both into an empty cache and into one
// that already holds a shallow clone.
func TestFetchNonTipSHA(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name    string
		ref     string
		shallow bool
	}{
		{"full sha, empty cache", f.c0, false},
		{"short sha, empty cache", f.c0[:8], false},
		{"full sha after shallow clone", f.c0, true},
		{"short sha after shallow clone", f.c0[:8], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := cacheDir(t)
			if tt.shallow {
				mustFetch(t, source.Options{URL: f.url, CacheDir: cache})
			}
			s := mustFetch(t, source.Options{URL: f.url, Ref: tt.ref, CacheDir: cache})
			want := pinned{Commit: f.c0, Subject: "initial", AuthorTime: gitserver.BaseTime(), Fetched: true}
			got := pinned{Commit: s.Commit, RefName: s.RefName, Subject: s.Subject, AuthorTime: s.AuthorTime.UTC(), Fetched: s.Fetched}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
			}
			if got := readFile(t, s, "README.md"); got != "app\n" {
				t.Errorf("README.md = %q", got)
			}
			// The SHA is now cached: asking again needs no fetch.
			again := mustFetch(t, source.Options{URL: f.url, Ref: tt.ref, CacheDir: cache})
			if again.Fetched || again.Commit != f.c0 {
				t.Errorf("second fetch: Fetched=%v Commit=%s, want no fetch of %s", again.Fetched, again.Commit, f.c0)
			}
		})
	}
}

// TestFetchIncremental checks the cache: an unchanged remote costs one ref
// listing and no pack; a moved branch downloads only what changed.
func TestFetchIncremental(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	cache := cacheDir(t)
	opts := source.Options{URL: f.url, Ref: "main", CacheDir: cache}

	first := mustFetch(t, opts)
	packs := f.srv.PackRequests()
	if !first.Fetched || len(packs) != 1 {
		t.Fatalf("cold fetch: Fetched=%v, %d pack requests; want true, 1", first.Fetched, len(packs))
	}
	coldBytes := packs[0].Bytes

	f.srv.ResetRequests()
	unchanged := mustFetch(t, opts)
	if unchanged.Fetched || unchanged.Commit != f.c2 {
		t.Errorf("unchanged remote: Fetched=%v Commit=%s, want false %s", unchanged.Fetched, unchanged.Commit, f.c2)
	}
	if reqs := f.srv.Requests(); len(reqs) != 1 || reqs[0].Method != http.MethodGet || reqs[0].Service != "git-upload-pack" {
		t.Errorf("unchanged remote: requests %+v, want one ref listing (GET info/refs?service=git-upload-pack) and no pack", reqs)
	}

	f.repo.WriteFile("deploy/app.yaml", "version: v3\n")
	c3 := f.repo.CommitAll("bump app to v3")
	f.srv.ResetRequests()
	moved := mustFetch(t, opts)
	if diff := cmp.Diff(pinned{Commit: c3, RefName: "refs/heads/main", Subject: "bump app to v3",
		AuthorTime: gitserver.BaseTime().Add(3 * time.Minute), Fetched: true, App: "version: v3\n"}, pinnedOf(t, moved)); diff != "" {
		t.Errorf("moved branch (-want +got):\n%s", diff)
	}
	packs = f.srv.PackRequests()
	if len(packs) != 1 {
		t.Fatalf("moved branch: %d pack requests, want 1", len(packs))
	}
	// The 64 KiB blob is unchanged; an incremental fetch must not resend it.
	if packs[0].Bytes*4 > coldBytes {
		t.Errorf("incremental fetch downloaded %d bytes, cold fetch %d: not incremental", packs[0].Bytes, coldBytes)
	}
	if got := readFile(t, moved, "deploy/blob.bin"); len(got) != 64<<10 {
		t.Errorf("deploy/blob.bin has %d bytes after incremental fetch, want %d", len(got), 64<<10)
	}

	// A branch reset to a commit older than the shallow cache reaches.
	f.repo.Git("reset", "--quiet", "--hard", f.c0)
	back := mustFetch(t, opts)
	if back.Commit != f.c0 || !back.Fetched {
		t.Errorf("reset branch: Commit=%s Fetched=%v, want %s true", back.Commit, back.Fetched, f.c0)
	}
}

func TestFetchUnknownRef(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	tests := []struct {
		name string
		ref  string
		want string
	}{
		{"branch", "nope", "source " + f.url + "@nope: resolve ref: ref not found"},
		{"sha", strings.Repeat("ab", 20), "source " + f.url + "@" + strings.Repeat("ab", 20) + ": resolve ref: commit " + strings.Repeat("ab", 20) + ": ref not found"},
		{"short sha", "abcdef12", "source " + f.url + "@abcdef12: resolve ref: ref not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, source.Options{URL: f.url, Ref: tt.ref, CacheDir: cacheDir(t)})
			if !errors.Is(err, source.ErrRefNotFound) {
				t.Fatalf("err = %v, want ErrRefNotFound", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFetchRefMovedDuringFetch commits between the ref listing and the
// fetch's own ref discovery; the snapshot must not silently be of another
// commit than the one resolved.
func TestFetchRefMovedDuringFetch(t *testing.T) {
	var f *fixture
	var infoRefs atomic.Int32
	f = newFixture(t, gitserver.HTTPOptions{OnRequest: func(r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") && infoRefs.Add(1) == 2 {
			f.repo.WriteFile("deploy/app.yaml", "version: moved\n")
			f.repo.CommitAll("moved")
		}
	}})
	cache := cacheDir(t)
	_, err := fetch(t, source.Options{URL: f.url, Ref: "main", CacheDir: cache})
	if !errors.Is(err, source.ErrRefMoved) {
		t.Fatalf("err = %v, want ErrRefMoved", err)
	}
	if !strings.HasPrefix(err.Error(), "source "+f.url+"@main: fetch: refs/heads/main was "+f.c2) {
		t.Errorf("message %q does not name the ref and the listed commit", err)
	}
	// The cache was new: the failed fetch must not leave it half made.
	if diff := cmp.Diff([]string{}, cacheEntries(t, cache)); diff != "" {
		t.Errorf("cache after failed first fetch (-want +got):\n%s", diff)
	}
}

// cacheEntries lists what is in a cache directory besides lock files,
// which stay by design (another process may be waiting on one).
func cacheEntries(t *testing.T, cache string) []string {
	t.Helper()
	entries, err := os.ReadDir(cache)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestFetchUnreachable: a host that refuses connections or does not exist
// fails fast, with the URL (no credentials) and ref in the message, and
// leaves no cache behind.
func TestFetchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name    string
		url     string
		wantURL string
	}{
		{"closed port http", "http://" + closed + "/app.git", "http://" + closed + "/app.git"},
		{"closed port https with token", "https://deployer:" + canary + "@" + closed + "/app.git", "https://" + closed + "/app.git"},
		{"closed port ssh", "ssh://git@" + closed + "/app.git", "ssh://git@" + closed + "/app.git"},
		{"host does not resolve", "https://deployer:" + canary + "@nonexistent.invalid/repo.git", "https://nonexistent.invalid/repo.git"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Bounds a resolver that hangs instead of answering NXDOMAIN;
			// a refused connection must fail well before.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cache := filepath.Join(t.TempDir(), "cache")
			// SSH needs a known_hosts file to get as far as dialing.
			knownHosts := filepath.Join(t.TempDir(), "known_hosts")
			if err := writeFile(knownHosts, ""); err != nil {
				t.Fatal(err)
			}
			key, _ := gitserver.NewClientKey(t, "")
			start := time.Now()
			s, err := source.Fetch(ctx, source.Options{URL: tt.url, Ref: "main", CacheDir: cache,
				Auth: source.Auth{KnownHostsFiles: []string{knownHosts}, SSHKey: key}})
			elapsed := time.Since(start)
			if err == nil {
				s.Close()
				t.Fatal("Fetch succeeded")
			}
			msg := err.Error()
			t.Logf("after %v: %s", elapsed.Round(time.Millisecond), msg)
			if want := "source " + tt.wantURL + "@main: list refs: "; !strings.HasPrefix(msg, want) {
				t.Errorf("message %q, want prefix %q", msg, want)
			}
			if strings.Contains(msg, canary) {
				t.Errorf("message leaks the token: %s", msg)
			}
			if strings.HasPrefix(tt.name, "closed port") && elapsed > 5*time.Second {
				t.Errorf("refused connection took %v", elapsed)
			}
			if diff := cmp.Diff([]string{}, cacheEntries(t, cache)); diff != "" {
				t.Errorf("cache after failure (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchFileURL(t *testing.T) {
	f := newFixture(t, gitserver.HTTPOptions{})
	url := "file://" + f.repo.Dir
	tests := []struct {
		name string
		ref  string
		want pinned
	}{
		{"head", "", pinned{Commit: f.c2, RefName: "refs/heads/main", Subject: "bump app to v2", AuthorTime: gitserver.BaseTime().Add(2 * time.Minute), App: "version: v2\n"}},
		{"annotated tag", "v1", pinned{Commit: f.c1, RefName: "refs/tags/v1", Subject: "add app v1", AuthorTime: gitserver.BaseTime().Add(time.Minute), App: "version: v1\n"}},
		{"short sha", f.c1[:7], pinned{Commit: f.c1, RefName: "refs/heads/release", Subject: "add app v1", AuthorTime: gitserver.BaseTime().Add(time.Minute), App: "version: v1\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustFetch(t, source.Options{URL: url, Ref: tt.ref})
			if diff := cmp.Diff(tt.want, pinnedOf(t, s)); diff != "" {
				t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
