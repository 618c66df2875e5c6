package source_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestRefsResolveAsGitRevParse: every ref a user may write (branch, tag,
// annotated tag of an annotated tag, the short and full ref names, a tag
// and a branch of one name, a tag named like a branch, branches named
// like SHAs, full, short and upper-case SHAs of tips and of older
// commits) fetches the commit `git rev-parse REF^{commit}` names in the
// served repository, and a ref git cannot resolve is refused. Revision
// expressions (main~1) are not refs: deliver refuses them.
func TestRefsResolveAsGitRevParse(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "app"))
	var c []string
	for i := range 6 {
		repo.WriteFile("deploy/app.yaml", "version: "+string(rune('a'+i))+"\n")
		c = append(c, repo.CommitAll("commit "+string(rune('a'+i))))
	}
	repo.Git("branch", "release/1.0", c[1])
	repo.Git("branch", "v1", c[2])
	repo.Git("tag", "v1", c[3])                   // a tag and a branch of one name
	repo.Git("tag", "-a", "-m", "v2", "v2", c[4]) // annotated
	repo.Git("tag", "-a", "-m", "v3", "v3", "v2") // annotated tag of an annotated tag
	repo.Git("tag", "main", c[0])                 // a tag named like the default branch
	repo.Git("branch", c[5][:8], c[1])            // a branch named like a short SHA
	repo.Git("branch", c[0], c[2])                // a branch named like a full SHA
	repo.Git("branch", "heads/main", c[3])        // refs/heads/heads/main
	srv := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{})
	url := srv.RepoURL("app")
	cache := cacheDir(t)

	refs := []string{
		"", "HEAD", "main", "heads/main", "refs/heads/main", "refs/tags/main", "tags/main",
		"release/1.0", "refs/heads/release/1.0", "v1", "tags/v1", "heads/v1", "refs/heads/v1", "refs/tags/v1",
		"v2", "refs/tags/v2", "v3", "tags/v3", "refs/heads/heads/main",
		c[5], c[5][:7], c[5][:4], strings.ToUpper(c[5][:12]),
		c[2], c[2][:10], c[0], c[0][:9], c[5][:8],
		"nope", "refs/heads/nope", "refs/tags/nope", "0000000", strings.Repeat("0", 40),
	}
	for _, ref := range refs {
		want := ""
		name := ref
		if name == "" {
			name = "HEAD"
		}
		if out, err := gitserver.Command(t.Context(), repo.Dir, "rev-parse", "--verify", "--quiet", name+"^{commit}").Output(); err == nil {
			want = strings.TrimSpace(string(out))
		}
		s, err := source.Fetch(t.Context(), source.Options{URL: url, Ref: ref, CacheDir: cache})
		switch {
		case want == "" && err == nil:
			t.Errorf("ref %q: deliver fetched %s, git rev-parse resolves nothing", ref, s.Commit)
		case want != "" && err != nil:
			t.Errorf("ref %q: %v, git rev-parse resolves %s", ref, err, want)
		case want != "" && s.Commit != want:
			t.Errorf("ref %q: deliver fetched %s, git rev-parse resolves %s", ref, s.Commit, want)
		}
		if s != nil {
			s.Close()
		}
	}
	for _, expr := range []string{"main~1", "main^", "v2^{}", "HEAD@{0}"} {
		if s, err := source.Fetch(t.Context(), source.Options{URL: url, Ref: expr, CacheDir: cache}); err == nil {
			s.Close()
			t.Errorf("ref %q: deliver fetched %s, want a refusal (a revision expression, not a ref)", expr, s.Commit)
		}
	}
}
