package source

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		raw  string
		want location
	}{
		{"https://u:p4ss@host/org/repo.git", location{kind: kindRemote, scheme: "https", url: "https://host/org/repo.git", user: "u", password: "p4ss", host: "host", port: 0}},
		{"ssh://git@host:2222/org/repo.git", location{kind: kindRemote, scheme: "ssh", url: "ssh://git@host:2222/org/repo.git", user: "git", host: "host", port: 2222}},
		{"git@host:org/repo.git", location{kind: kindRemote, scheme: "ssh", url: "ssh://git@host/org/repo.git", user: "git", host: "host", port: 22}},
		{"file:///srv/repo.git", location{kind: kindFile, scheme: "file", url: "file:///srv/repo.git", path: "/srv/repo.git"}},
		{"/work/tree", location{kind: kindLocal, scheme: "file", url: "/work/tree", path: "/work/tree"}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := parseLocation(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(location{})); diff != "" {
				t.Errorf("parseLocation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedactRaw(t *testing.T) {
	for raw, want := range map[string]string{
		"https://user:secret@host/x": "https://host/x",
		"https://secret@host":        "https://host",
		"https://host/a@b":           "https://host/a@b",
		"git@host:repo":              "git@host:repo",
		"ht tps://u:secret@h%zz/":    "ht tps://h%zz/",
	} {
		if got := redactRaw(raw); got != want {
			t.Errorf("redactRaw(%q) = %q, want %q", raw, got, want)
		}
	}
}
