package pipeline

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/source"
)

// TestNormalizeRepoURL: every URL of one repository names it the same way,
// and no credential survives.
func TestNormalizeRepoURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, want string }{
		{"https://github.com/org/repo", "github.com/org/repo"},
		{"https://github.com/org/repo.git", "github.com/org/repo"},
		{"https://github.com/org/repo.git/", "github.com/org/repo"},
		{"https://github.com/org/repo/", "github.com/org/repo"},
		{"http://GitHub.com/org/Repo", "github.com/org/Repo"},
		{"https://x-access-token:ghp_s3cret@github.com/org/repo.git", "github.com/org/repo"},
		{"https://user:p@ss@gitlab.example.com:8443/group/sub/repo.git", "gitlab.example.com/group/sub/repo"},
		{"https://oauth2@gitlab.example.com/group/repo", "gitlab.example.com/group/repo"},
		{"ssh://git@github.com/org/repo.git", "github.com/org/repo"},
		{"ssh://git@gitlab.example.com:2222/group/repo.git", "gitlab.example.com/group/repo"},
		{"git@github.com:org/repo.git", "github.com/org/repo"},
		{"git@github.com:org/repo", "github.com/org/repo"},
		{"github.com:org/repo.git/", "github.com/org/repo"},
		{"git://git.example.com/repo.git", "git.example.com/repo"},
		{"https://[::1]:3000/org/repo.git", "[::1]/org/repo"},
		{"file:///srv/git/repo.git", ""},
		{"/srv/git/repo.git", ""},
		{"../repo", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := normalizeRepoURL(tt.url); got != tt.want {
			t.Errorf("normalizeRepoURL(%q) = %q, want %q", tt.url, got, tt.want)
		}
		for _, secret := range []string{"ghp_s3cret", "p@ss", "oauth2"} {
			if strings.Contains(normalizeRepoURL(tt.url), secret) {
				t.Errorf("normalizeRepoURL(%q) keeps %q", tt.url, secret)
			}
		}
	}
}

// initRepo makes dir a git repository with one commit of its files and,
// when origin is set, an origin remote.
func initRepo(t *testing.T, dir, origin string) {
	t.Helper()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddGlob("."); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: time.Now()}
	if _, err := wt.Commit("first", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		if _, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{origin}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunIdentity: a local checkout is named by its origin remote, without
// credentials, and deliver.yaml by its path in the repository even when a
// folder of it is delivered; a checkout without origin, a plain folder and
// a file:// URL of a repository without origin have no known repository.
func TestRunIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	files := map[string]string{"deploy/deliver.yaml": "x", "deploy/m/cm.yaml": "y"}
	withOrigin, noOrigin, plain := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{withOrigin, noOrigin, plain} {
		testenv.WriteFiles(t, d, files)
	}
	initRepo(t, withOrigin, "https://deliver-bot:tok3n@GitHub.com/org/shop.git/")
	initRepo(t, noOrigin, "")
	tests := []struct {
		name string
		url  string
		opts Options
		want apply.Identity
	}{
		{"folder of a checkout", filepath.Join(withOrigin, "deploy"), Options{ConfigFile: "deliver.yaml"},
			apply.Identity{Environment: "prod", Repository: "github.com/org/shop", Config: "deploy/deliver.yaml"}},
		{"manifests of a checkout", withOrigin, Options{ConfigFile: "deliver.yaml", Manifests: "deploy/m/"},
			apply.Identity{Environment: "prod", Repository: "github.com/org/shop", Config: "deploy/m"}},
		{"file URL", "file://" + withOrigin, Options{ConfigFile: "deploy/deliver.yaml"},
			apply.Identity{Environment: "prod", Repository: "github.com/org/shop", Config: "deploy/deliver.yaml"}},
		{"checkout without origin", filepath.Join(noOrigin, "deploy"), Options{ConfigFile: "deliver.yaml"},
			apply.Identity{Environment: "prod", Config: "deploy/deliver.yaml"}},
		{"file URL without origin", "file://" + noOrigin, Options{ConfigFile: "deploy/deliver.yaml"},
			apply.Identity{Environment: "prod", Config: "deploy/deliver.yaml"}},
		{"plain folder", filepath.Join(plain, "deploy"), Options{ConfigFile: "deliver.yaml"},
			apply.Identity{Environment: "prod", Config: "deliver.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := source.Fetch(ctx, source.Options{URL: tt.url})
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			got := runIdentity(snap, tt.opts, "prod")
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTwoEnvironmentsOneAppName: two environments of one deliver.yaml
// deliver an app of the same name into two namespaces of one cluster.
// After staging, a diff of prod shows the conflict and fails, and an
// apply of prod fails before any write, naming the app, both identities
// (the repository without its token) and the inventory Secret: staging's
// ConfigMap is neither changed nor pruned, prod's is not created, the
// inventory not written. Once the inventory is annotated
// deliver.dev/adopt=true, prod takes the app over, says from whom, records
// itself and drops the annotation; staging is then the one refused.
func TestTwoEnvironmentsOneAppName(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	inv, staging, prod := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	dir := t.TempDir()
	testenv.WriteFiles(t, dir, map[string]string{
		"deliver.yaml": "apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n- {name: web, namespace: " + staging + ", manifests: {path: m}}\n" +
			"environments:\n  staging: {}\n  prod:\n    apps:\n      web: {namespace: " + prod + "}\n",
		"m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n",
	})
	const token = "tok3n-9f2d"
	initRepo(t, dir, "https://deliver-bot:"+token+"@github.com/org/shop.git")
	run := func(f func(context.Context, Options) (*Result, error), environment string) (*Result, error) {
		t.Helper()
		o := clusterOptions(dir, inv)
		o.Env = environment
		res, err := f(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", environment, err)
		}
		return res, res.Err()
	}
	if _, err := run(Apply, "staging"); err != nil {
		t.Fatal(err)
	}
	cms, secrets := env.Client().CoreV1().ConfigMaps, env.Client().CoreV1().Secrets(inv)
	stagingCM, err := cms(staging).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	invBefore, err := secrets.Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stagingID := `environment "staging" of github.com/org/shop//deliver.yaml`
	prodID := `environment "prod" of github.com/org/shop//deliver.yaml`
	wantErr := []string{`app "web"`, stagingID, prodID, inv + "/" + apply.InventoryName("web"), apply.AnnotationAdopt + "=true"}

	res, err := run(Diff, "prod")
	if err == nil {
		t.Fatal("diff of prod: no error")
	}
	var diff bytes.Buffer
	if p := res.Apps[0].Plan; p == nil || p.WriteDiff(&diff, apply.DiffOptions{}) != nil || !strings.Contains(diff.String(), "conflict: app \"web\" is delivered by "+stagingID) {
		t.Errorf("diff of prod does not show the conflict:\n%s", diff.String())
	}
	_, err = run(Apply, "prod")
	if err == nil {
		t.Fatal("apply of prod: no error")
	}
	for _, want := range wantErr {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("apply of prod: error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error()+diff.String(), token) {
		t.Errorf("the origin's token shows:\n%v\n%s", err, diff.String())
	}
	stagingAfter, err := cms(staging).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || stagingAfter.ResourceVersion != stagingCM.ResourceVersion {
		t.Errorf("staging's ConfigMap changed or pruned by the refused run: %v", err)
	}
	if _, err := cms(prod).Get(ctx, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused run created prod's ConfigMap: get = %v", err)
	}
	if s, err := secrets.Get(ctx, apply.InventoryName("web"), metav1.GetOptions{}); err != nil || s.ResourceVersion != invBefore.ResourceVersion {
		t.Errorf("refused run wrote the inventory: %v", err)
	}

	patch := []byte(`{"metadata":{"annotations":{"` + apply.AnnotationAdopt + `":"true"}}}`)
	if _, err := secrets.Patch(ctx, apply.InventoryName("web"), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = run(Apply, "prod")
	if err != nil {
		t.Fatalf("apply of prod after the annotation: %v", err)
	}
	if rep := res.Apps[0].Report; rep == nil || rep.AdoptedFrom == nil || rep.AdoptedFrom.String() != stagingID {
		t.Errorf("report does not say the app was adopted from %s: %+v", stagingID, rep)
	}
	if _, err := cms(prod).Get(ctx, "settings", metav1.GetOptions{}); err != nil {
		t.Errorf("prod's ConfigMap after the adoption: %v", err)
	}
	s, err := secrets.Get(ctx, apply.InventoryName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Annotations[apply.AnnotationAdopt]; ok {
		t.Errorf("annotation %s left on the inventory", apply.AnnotationAdopt)
	}
	m, err := apply.New(env.Config, apply.Options{InventoryNamespace: inv})
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := m.ReadInventory(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if recorded.Identity == nil || recorded.Identity.String() != prodID {
		t.Errorf("recorded identity = %v, want %s", recorded.Identity, prodID)
	}
	if _, err := run(Apply, "staging"); err == nil || !strings.Contains(err.Error(), "not by this run's "+stagingID) {
		t.Errorf("staging after prod took the app over: err = %v, want refused", err)
	}
}
