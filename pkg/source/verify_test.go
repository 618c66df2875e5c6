package source_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/source"
)

// newPGPKey generates an ed25519 OpenPGP key, fast enough for every run.
func newPGPKey(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.String()
}

func TestFetchSignatureVerification(t *testing.T) {
	gitserver.RequireGit(t)
	keyA, pubA := newPGPKey(t, "alice")
	keyB, pubB := newPGPKey(t, "mallory")

	// The repository is written with go-git, which signs through
	// CommitOptions.SignKey, and served by git-http-backend.
	root := t.TempDir()
	dir := filepath.Join(root, "signed")
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	commits := map[string]plumbing.Hash{}
	for i, c := range []struct {
		branch string
		key    *openpgp.Entity
	}{{"unsigned", nil}, {"signed-a", keyA}, {"signed-b", keyB}} {
		if err := writeFile(filepath.Join(dir, "app.yaml"), c.branch); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add("app.yaml"); err != nil {
			t.Fatal(err)
		}
		sig := &object.Signature{Name: "T", Email: "t@example.com", When: time.Unix(1700000000+int64(i), 0)}
		h, err := wt.Commit(c.branch, &git.CommitOptions{Author: sig, Committer: sig, SignKey: c.key})
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(c.branch), h)); err != nil {
			t.Fatal(err)
		}
		commits[c.branch] = h
	}
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{}).RepoURL("signed")
	fpA := fmt.Sprintf("%X", keyA.PrimaryKey.Fingerprint)
	fpB := fmt.Sprintf("%X", keyB.PrimaryKey.Fingerprint)

	tests := []struct {
		name    string
		ref     string
		trusted []string
		want    string // SignedBy
		wantErr string
	}{
		{"no verification asked", "unsigned", nil, "", ""},
		{"signed by trusted key", "signed-a", []string{pubA}, fpA, ""},
		{"any of several keys", "signed-b", []string{pubA, pubB}, fpB, ""},
		{"unsigned", "unsigned", []string{pubA}, "", "verify signature: commit " + commits["unsigned"].String() + " is not signed"},
		{"signed by other key", "signed-b", []string{pubA}, "", "verify signature: commit " + commits["signed-b"].String() + " is signed by untrusted key " + fpB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snapDir := t.TempDir()
			s, err := fetch(t, source.Options{URL: url, Ref: tt.ref, TrustedKeys: tt.trusted, CacheDir: cacheDir(t), SnapshotDir: snapDir})
			if tt.wantErr != "" {
				if !errors.Is(err, source.ErrSignature) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrSignature containing %q", err, tt.wantErr)
				}
				if left, _ := filepath.Glob(filepath.Join(snapDir, "*")); len(left) != 0 {
					t.Errorf("refused commit left files behind: %v", left)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if s.SignedBy != tt.want || s.Commit != commits[tt.ref].String() {
				t.Errorf("SignedBy=%s Commit=%s, want %s %s", s.SignedBy, s.Commit, tt.want, commits[tt.ref])
			}
		})
	}

	t.Run("malformed trusted key", func(t *testing.T) {
		_, err := fetch(t, source.Options{URL: url, TrustedKeys: []string{"not a key"}, CacheDir: cacheDir(t)})
		if err == nil || !strings.HasPrefix(err.Error(), "source "+url+"@HEAD: read trusted keys: key 0:") {
			t.Errorf("err = %v", err)
		}
	})
}
