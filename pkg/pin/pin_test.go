package pin_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/deliverhq/deliver/internal/gitserver"
	"github.com/deliverhq/deliver/pkg/pin"
	"github.com/deliverhq/deliver/pkg/pipeline"
	"github.com/deliverhq/deliver/pkg/source"
)

// noCluster fails the test if a verb reaches for the cluster: every case
// here must fail before.
func noCluster(t *testing.T) func(string) (*rest.Config, error) {
	return func(string) (*rest.Config, error) {
		t.Error("the cluster was reached")
		return nil, errors.New("no cluster in this test")
	}
}

// TestRefusedBeforeAnyFetch: an app, a reason (the audit trail's why, of
// bounded size) and, for pin, a revision are required.
func TestRefusedBeforeAnyFetch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		verb   func(context.Context, pin.Options) (*pin.Result, error)
		opts   pin.Options
		errHas string
	}{
		{name: "pin without app", verb: pin.Pin, opts: pin.Options{Revision: "main", Reason: "x"}, errHas: "an app is required"},
		{name: "pin without revision", verb: pin.Pin, opts: pin.Options{App: "web", Reason: "x"}, errHas: "pin app web: a revision is required"},
		{name: "pin without reason", verb: pin.Pin, opts: pin.Options{App: "web", Revision: "main"}, errHas: "app web: a reason is required"},
		{name: "pin with a blank reason", verb: pin.Pin, opts: pin.Options{App: "web", Revision: "main", Reason: " \n"}, errHas: "app web: a reason is required"},
		{name: "pin with a long reason", verb: pin.Pin, opts: pin.Options{App: "web", Revision: "main", Reason: strings.Repeat("x", 1025)}, errHas: "more than 1024"},
		{name: "rollback without reason", verb: pin.Rollback, opts: pin.Options{App: "web"}, errHas: "app web: a reason is required"},
		{name: "unpin without app", verb: pin.Unpin, opts: pin.Options{}, errHas: "an app is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Pipeline.Repo = "http://127.0.0.1:1/never-fetched"
			tc.opts.Pipeline.Kube = noCluster(t)
			_, err := tc.verb(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}

// TestPinUnknownRevision: against a real git server that wants a
// password, a revision that is not in the repository, or where the app is
// not, is refused naming the app and the revision, without the password
// and before the cluster is reached.
func TestPinUnknownRevision(t *testing.T) {
	gitserver.RequireGit(t)
	const password = "pw-canary-5d1e9b"
	root := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(root, "deploy"))
	repo.WriteFile("deliver.yaml", "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: web, manifests: {path: web}}\n")
	repo.WriteFile("web/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n")
	head := repo.CommitAll("first")
	url := gitserver.NewHTTP(t, root, gitserver.HTTPOptions{Username: "deliver", Password: password}).RepoURL("deploy")
	for _, tc := range []struct {
		name, app, revision string
		notFound            bool
		errHas              []string
	}{
		{name: "unknown branch", app: "web", revision: "release-9", notFound: true, errHas: []string{"app web", `revision "release-9" not found`}},
		{name: "unknown abbreviated sha", app: "web", revision: "deadbeef", notFound: true, errHas: []string{"app web", `revision "deadbeef" not found`}},
		{name: "unknown full sha", app: "web", revision: strings.Repeat("ab", 20), notFound: true, errHas: []string{"app web", strings.Repeat("ab", 20)}},
		{name: "app not at the revision", app: "api", revision: head[:10], errHas: []string{"app api", "revision " + head[:12], "api"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			po := pipeline.Options{Repo: url, CacheDir: t.TempDir(), Kube: noCluster(t),
				Auth: source.Auth{Username: "deliver", Password: password}}
			_, err := pin.Pin(context.Background(), pin.Options{Pipeline: po, App: tc.app, Revision: tc.revision, Reason: "hold"})
			if err == nil {
				t.Fatal("pinned")
			}
			for _, want := range tc.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			t.Logf("error: %v", err)
			if errors.Is(err, source.ErrRefNotFound) != tc.notFound {
				t.Errorf("error %q: errors.Is ErrRefNotFound = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q holds the git password", err)
			}
		})
	}
}
