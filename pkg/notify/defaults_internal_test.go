package notify

import (
	"testing"
	"time"
)

// TestDefaults: the defaults docs/notify.md documents.
func TestDefaults(t *testing.T) {
	t.Parallel()
	var o Options
	o.defaults()
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Workers", o.Workers, 4},
		{"Timeout", o.Timeout, 10 * time.Second},
		{"RetryBase", o.RetryBase, time.Second},
		{"RetryMax", o.RetryMax, time.Minute},
		{"MaxAttempts", o.MaxAttempts, 5},
		{"QueueSize", o.QueueSize, 256},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestRepoPath: the GitHub or GitLab repository of a commit status is the
// path of the followed repository's URL, whichever form it has, without
// .git; a URL without one (a folder on this machine) asks for it to be set.
func TestRepoPath(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, want string }{
		{"https://github.com/acme/deploy.git", "acme/deploy"},
		{"https://github.com/acme/deploy", "acme/deploy"},
		{"https://user:token@github.com/acme/deploy/", "acme/deploy"},
		{"https://gitlab.example.com/group/sub/deploy.git", "group/sub/deploy"},
		{"ssh://git@github.com:22/acme/deploy.git", "acme/deploy"},
		{"git@github.com:acme/deploy.git", "acme/deploy"},
		{"git@gitlab.example.com:group/sub/deploy", "group/sub/deploy"},
		{"/srv/git/deploy", ""},
		{"file:///srv/git/deploy.git", ""},
		{"https://github.com/", ""},
	} {
		got, err := repoPath(tt.url)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("repoPath(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
}
