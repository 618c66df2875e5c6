package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/internal/gitserver"
)

// TestServiceAccountNameInPipeline: diff and apply deliver an app as the
// ServiceAccount deliver.yaml names for it. A change of
// the setting alone is a change of the app's inputs: the app is planned
// again (not skipped as unchanged), as the new ServiceAccount, which here
// may not read the namespace; the run fails for that app only, naming the
// ServiceAccount, while the other app, delivered as deliver, is unaffected.
func TestServiceAccountNameInPipeline(t *testing.T) {
	if env == nil {
		t.Skip("no control plane (-short)")
	}
	t.Parallel()
	ns, inv := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	env.ServiceAccount(t, ns, "deployer")
	env.Grant(t, ns, ns, "deployer", []string{"get", "list", "watch", "create", "patch", "update", "delete"}, "configmaps")
	nobody := env.ServiceAccount(t, ns, "nobody")

	config := func(sa string) string {
		return fmt.Sprintf("apiVersion: deliver.dev/v1alpha1\nkind: Config\napps:\n"+
			"- {name: tenant, namespace: %[1]s, manifests: {path: tenant}, serviceAccountName: %[2]s}\n"+
			"- {name: plain, namespace: %[1]s, manifests: {path: plain}}\n", ns, sa)
	}
	repo, opts := servedRepo(t, inv, map[string]string{
		"deliver.yaml":   config("deployer"),
		"tenant/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tenant}\ndata: {v: one}\n",
		"plain/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {v: one}\n",
	})

	res, err := Apply(ctx, opts)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		t.Fatalf("first apply: %v", err)
	}
	cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, "tenant", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels["deliver.dev/app"] != "tenant" {
		t.Errorf("ConfigMap tenant: labels %v", cm.Labels)
	}

	repo.WriteFile("deliver.yaml", config("nobody"))
	repo.CommitAll("tenant as nobody")
	for name, do := range map[string]func(context.Context, Options) (*Result, error){"diff": Diff, "apply": Apply} {
		res, err := do(ctx, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := rendered(res); !slices.Equal(got, []string{"tenant"}) {
			t.Errorf("%s: rendered %v, want only tenant, whose serviceAccountName changed", name, got)
		}
		err = res.Err()
		if err == nil || !strings.Contains(err.Error(), "as "+nobody) || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("%s: %v; want tenant to fail as %s", name, err, nobody)
		}
		for _, a := range res.Apps {
			if a.Name == "plain" && a.Error != "" {
				t.Errorf("%s: app plain: %s", name, a.Error)
			}
		}
	}
}

// TestNormalizeRepoURL: the repository an inventory records is one name
// for every URL that reaches it (scheme, credentials, port, ".git" and a
// trailing slash dropped, the host lower-cased), never holds a credential,
// and is "" for a path on this machine.
func TestNormalizeRepoURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"https://github.com/org/repo.git", "github.com/org/repo"},
		{"https://github.com/org/repo", "github.com/org/repo"},
		{"https://github.com/org/repo/", "github.com/org/repo"},
		{"https://GitHub.com/org/repo.git", "github.com/org/repo"},
		{"https://user:p%40ss@github.com:443/org/repo.git", "github.com/org/repo"},
		{"https://user:p@ss@github.com/org/repo.git", "github.com/org/repo"},
		{"http://git.example:8080/org/repo", "git.example/org/repo"},
		{"ssh://git@github.com:22/org/repo.git", "github.com/org/repo"},
		{"git@github.com:org/repo.git", "github.com/org/repo"},
		{"github.com:org/repo", "github.com/org/repo"},
		{"https://[::1]:8443/org/repo.git", "[::1]/org/repo"},
		{"https://git.example", "git.example"},
		{"file:///srv/git/repo.git", ""},
		{"/srv/git/repo", ""},
		{"./repo", ""},
		{`C:\repos\app`, ""},
		{"  ", ""},
	} {
		if got := normalizeRepoURL(tt.in); got != tt.want {
			t.Errorf("normalizeRepoURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOriginURL: a local checkout is recorded by its origin remote,
// normalised; without one, "".
func TestOriginURL(t *testing.T) {
	t.Parallel()
	repo := gitserver.NewRepo(t, t.TempDir())
	r, err := git.PlainOpen(repo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := originURL(r); got != "" {
		t.Errorf("no origin: %q, want \"\"", got)
	}
	if _, err := r.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{"https://token:secret@Git.Example/team/deploy.git"}}); err != nil {
		t.Fatal(err)
	}
	if got := originURL(r); got != "git.example/team/deploy" {
		t.Errorf("origin: %q, want git.example/team/deploy", got)
	}
}
