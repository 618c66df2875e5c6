package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/resource"

	"github.com/deliverhq/deliver/internal/gitserver"
)

// prodOverlay is the overlay of the golden and oracle tests: a base, a
// component, patches, generators and a secretGenerator from SOPS files.
func prodOverlay() KustomizeOptions {
	return KustomizeOptions{Root: "testdata/repo", App: "shop", Path: "kustomize/overlays/prod", Decrypt: fakeDecrypt}
}

func TestKustomizeGolden(t *testing.T) {
	var r Renderer
	set, err := r.Kustomize(context.Background(), prodOverlay())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kustomize-prod.yaml", dumpSet(t, set))
	if diff := cmp.Diff([]string{"Job/shop-prod/prod-migrate"}, ids(set.Hooks)); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
}

func TestKustomizeDecryptsInMemory(t *testing.T) {
	var r Renderer
	opts := prodOverlay()
	var decrypted []string
	opts.Decrypt = func(ctx context.Context, p string, data []byte) ([]byte, error) {
		decrypted = append(decrypted, p)
		return fakeDecrypt(ctx, p, data)
	}
	before, err := os.ReadFile("testdata/repo/kustomize/overlays/prod/db.enc.env")
	if err != nil {
		t.Fatal(err)
	}
	set, err := r.Kustomize(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// ca.crt is in the generator but not encrypted: passed through as is.
	want := []string{"kustomize/overlays/prod/password.enc.json", "kustomize/overlays/prod/db.enc.env"}
	if diff := cmp.Diff(want, decrypted); diff != "" {
		t.Errorf("decrypted files (-want +got):\n%s", diff)
	}
	after, err := os.ReadFile("testdata/repo/kustomize/overlays/prod/db.enc.env")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("the encrypted file on disk changed")
	}
	for _, o := range set.Objects {
		if o.GetKind() == "Secret" {
			data, _, _ := unstructuredMap(o.Object, "data")
			if _, ok := data["sops_mac"]; ok {
				t.Errorf("secret still has SOPS metadata: %v", data)
			}
			if data["DB_USER"] != "YXBw" { // base64("app")
				t.Errorf("DB_USER = %v, want the decrypted value", data["DB_USER"])
			}
		}
	}
}

func TestKustomizeErrors(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "kustomization.yaml"), []byte("resources: [cm.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"
	tests := []struct {
		name        string
		files       map[string]string
		links       map[string]string
		path        string
		allowRemote bool
		decrypt     DecryptFunc
		wantErr     string
	}{
		{
			name:    "resource climbs out",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- ../../../../../../../../etc\n"},
			wantErr: "o/kustomization.yaml: ../../../../../../../../etc: path escapes the repository root",
		},
		{
			name:    "symlinked resource file out of the repo",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- cm.yaml\n"},
			links:   map[string]string{"o/cm.yaml": filepath.Join(outside, "cm.yaml")},
			wantErr: "path escapes from parent",
		},
		{
			name:    "symlinked base out of the repo",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- base\n"},
			links:   map[string]string{"o/base": outside},
			wantErr: "path escapes from parent",
		},
		{
			name:    "patch file symlinked out of the repo",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: p.yaml\n", "o/cm.yaml": cm},
			links:   map[string]string{"o/p.yaml": filepath.Join(outside, "cm.yaml")},
			wantErr: "path escapes from parent",
		},
		{
			name:    "overlay path climbs out",
			path:    "../x",
			wantErr: "kustomize: overlay ../x: path escapes the repository root",
		},
		{
			name:    "remote base",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.8.1\n"},
			wantErr: "remote bases are disabled",
		},
		{
			name:    "remote base without scheme",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- github.com/kubernetes-sigs/kustomize/examples/helloWorld?ref=v5.8.1\n"},
			wantErr: "not found in the repository (remote bases are disabled)",
		},
		{
			name:    "remote component",
			files:   map[string]string{"o/kustomization.yaml": "components:\n- git@github.com:org/repo.git//c\n"},
			wantErr: "remote bases are disabled",
		},
		{
			name:    "remote patch",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: https://example.com/p.yaml\n", "o/cm.yaml": cm},
			wantErr: "https://example.com/p.yaml: remote files are disabled",
		},
		{
			// kustomize's loader reads the scheme in any case.
			name:    "remote patch, scheme in capitals",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: HTTPS://example.invalid/p.yaml\n", "o/cm.yaml": cm},
			wantErr: "HTTPS://example.invalid/p.yaml: remote files are disabled",
		},
		{
			name:    "remote CRD file, scheme in mixed case",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\ncrds: [Http://example.invalid/crd.yaml]\n", "o/cm.yaml": cm},
			wantErr: "Http://example.invalid/crd.yaml: remote files are disabled",
		},
		{
			name:    "remote configMapGenerator file, scheme in capitals",
			files:   map[string]string{"o/kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [HTTP://example.invalid/f.txt]\n"},
			wantErr: "HTTP://example.invalid/f.txt: remote files are disabled",
		},
		{
			name:        "local git URL in capitals, remote allowed",
			files:       map[string]string{"o/kustomization.yaml": "resources:\n- FILE:///tmp/repo\n"},
			allowRemote: true,
			wantErr:     "FILE:///tmp/repo: local git URLs are not allowed",
		},
		{
			name:        "git::file URL, remote allowed",
			files:       map[string]string{"o/kustomization.yaml": "resources:\n- git::file:///tmp/repo//base\n"},
			allowRemote: true,
			wantErr:     "git::file:///tmp/repo//base: local git URLs are not allowed",
		},
		{
			name:    "git:: remote base",
			files:   map[string]string{"o/kustomization.yaml": "resources:\n- git::example.invalid/org/repo//base\n"},
			wantErr: "remote bases are disabled",
		},
		{
			name:    "remote in a nested base",
			files:   map[string]string{"o/kustomization.yaml": "resources: [../b]\n", "b/kustomization.yaml": "resources:\n- https://example.com/x.yaml\n"},
			wantErr: "b/kustomization.yaml: https://example.com/x.yaml: remote bases are disabled",
		},
		{
			name:    "encrypted secret without decrypter",
			files:   map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  envs: [s.env]\n", "o/s.env": "A=ENC[b]\nsops_mac=x\n"},
			wantErr: "secretGenerator file o/s.env is SOPS-encrypted and no decrypter is configured",
		},
		{
			name:    "decrypter fails",
			files:   map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  envs: [s.env]\n", "o/s.env": "A=b\nsops_mac=x\n"},
			decrypt: func(context.Context, string, []byte) ([]byte, error) { return nil, os.ErrPermission },
			wantErr: "kustomize: o: decrypt o/s.env: permission denied",
		},
		{
			name:    "exec function",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [fn.yaml]\n", "o/cm.yaml": cm, "o/fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: fn\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"},
			wantErr: "kustomize: build o: ",
		},
		{
			name:    "object without name",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\n", "o/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n"},
			wantErr: "kustomize: build o: ",
		},
		{
			name:    "hook named by generateName",
			files:   map[string]string{"o/kustomization.yaml": "resources: [job.yaml]\n", "o/job.yaml": generateNameHook},
			wantErr: "accumulating resources from 'job.yaml': missing metadata.name",
		},
		{
			name:    "yaml does not parse",
			files:   map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\n", "o/cm.yaml": "apiVersion: v1\nkind: [\n"},
			wantErr: "kustomize: build o: ",
		},
		{
			name:    "not a kustomization",
			files:   map[string]string{"o/cm.yaml": cm},
			wantErr: "unable to find one of 'kustomization.yaml'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, tt.files)
			for link, target := range tt.links {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
			var r Renderer
			p := tt.path
			if p == "" {
				p = "o"
			}
			_, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: p, AllowRemote: tt.allowRemote, Decrypt: tt.decrypt})
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestKustomizeFilesAnywhereInRepo shows the difference with kustomize's
// default restriction: a patch in a sibling folder of the overlay is fine,
// as long as it is inside the repository.
// generateNameHook is a hook Job named by metadata.generateName, as Argo CD's
// examples name theirs.
const generateNameHook = `apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations: {argocd.argoproj.io/hook: PreSync}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: busybox}]
`

// TestKustomizeGenerateNameLikeCLI: kustomize refuses a resource without
// metadata.name, hooks named by generateName included; deliver, which
// renders what kustomize builds, refuses it with the same cause and says
// where generateName hooks work instead.
func TestKustomizeGenerateNameLikeCLI(t *testing.T) {
	kustomize := testbin(t, "kustomize")
	root := t.TempDir()
	for name, data := range map[string]string{"o/kustomization.yaml": "resources: [cm.yaml, job.yaml]\n", "o/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n", "o/job.yaml": generateNameHook} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(kustomize, "build", "o")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing metadata.name") {
		t.Fatalf("kustomize build: err %v, output:\n%s", err, out)
	}
	var r Renderer
	_, err = r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "o", App: "a"})
	if err == nil {
		t.Fatal("deliver built what kustomize refuses")
	}
	for _, want := range []string{"kustomize: build o", "job.yaml", "missing metadata.name", "generateName"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestKustomizeFilesAnywhereInRepo(t *testing.T) {
	root := writeTree(t, map[string]string{
		"o/kustomization.yaml": "resources: [../shared/cm.yaml]\npatches:\n- path: ../shared/patch.yaml\n",
		"shared/cm.yaml":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata: {a: b}\n",
		"shared/patch.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata: {a: c}\n",
	})
	if err := os.Symlink("../shared", filepath.Join(root, "o", "linked")); err != nil {
		t.Fatal(err)
	}
	var r Renderer
	set, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "o"})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Objects) != 1 || set.Objects[0].Object["data"].(map[string]any)["a"] != "c" {
		t.Fatalf("objects = %v", set.Objects)
	}
}

// TestKustomizeConcurrent runs builds from many goroutines on one Renderer
// (run with -race to check the serialisation).
func TestKustomizeConcurrent(t *testing.T) {
	var r Renderer
	want, err := r.kustomizeBuild(context.Background(), prodOverlay())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			got, err := r.kustomizeBuild(context.Background(), prodOverlay())
			if err == nil && !slices.EqualFunc(got, want, func(a, b *resource.Resource) bool { return a.MustYaml() == b.MustYaml() }) {
				err = os.ErrInvalid
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// remoteBase serves a git repository base.git over smart HTTP on loopback
// whose main branch has a kustomization in path/, and returns its URL as a
// kustomize remote base.
func remoteBase(t *testing.T) (*gitserver.HTTPServer, string) {
	t.Helper()
	served := t.TempDir()
	repo := gitserver.NewRepo(t, filepath.Join(served, "base.git"))
	repo.WriteFile("path/kustomization.yaml", "resources: [cm.yaml]\nlabels:\n- pairs: {from: remote}\n")
	repo.WriteFile("path/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote\ndata: {a: b}\n")
	repo.WriteFile("other/kustomization.yaml", "resources: [../path]\n")
	repo.CommitAll("base")
	srv := gitserver.NewHTTP(t, served, gitserver.HTTPOptions{})
	return srv, srv.RepoURL("base.git") + "//path?ref=main"
}

// TestKustomizeRemoteBase builds an overlay on a remote base served by a
// real git server: refused (without a request) unless AllowRemote, built
// by kustomize's git clone when allowed, and no clone left in TMPDIR.
func TestKustomizeRemoteBase(t *testing.T) {
	srv, base := remoteBase(t)
	// A TMPDIR reached through a symlink, as on macOS (/var -> /private/var):
	// kustomize clones into its resolved path.
	tmp := filepath.Join(t.TempDir(), "tmp")
	if err := os.Symlink(t.TempDir(), tmp); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	root := writeTree(t, map[string]string{
		"o/kustomization.yaml":    "resources:\n- " + base + "\n- cm.yaml\nnamePrefix: x-\n",
		"o/cm.yaml":               "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n",
		"bad/kustomization.yaml":  "resources:\n- " + strings.Replace(base, "ref=main", "ref=nope", 1) + "\n",
		"file/kustomization.yaml": "resources:\n- file://" + filepath.Join(srv.Root, "base.git") + "//path\n",
	})
	leftovers := func(t *testing.T) {
		t.Helper()
		entries, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("left in TMPDIR: %s", e.Name())
		}
	}
	var r Renderer

	t.Run("refused by default", func(t *testing.T) {
		srv.ResetRequests()
		_, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "o"})
		if want := "o/kustomization.yaml: " + base + ": remote bases are disabled"; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
		if reqs := srv.Requests(); len(reqs) != 0 {
			t.Errorf("the git server was asked: %+v", reqs)
		}
		leftovers(t)
	})
	t.Run("allowed", func(t *testing.T) {
		srv.ResetRequests()
		set, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "o", App: "shop", AllowRemote: true})
		if err != nil {
			t.Fatal(err)
		}
		// Legacy order: by kind, then name.
		if diff := cmp.Diff([]string{"ConfigMap/x-local", "ConfigMap/x-remote"}, ids(set.Objects)); diff != "" {
			t.Fatalf("objects (-want +got):\n%s", diff)
		}
		if got := set.Objects[1].GetLabels()["from"]; got != "remote" {
			t.Errorf("remote object labels = %v", set.Objects[1].GetLabels())
		}
		if len(srv.PackRequests()) == 0 {
			t.Error("no pack fetched from the git server")
		}
		leftovers(t)
	})
	t.Run("unknown ref", func(t *testing.T) {
		_, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "bad", AllowRemote: true})
		if err == nil || !strings.Contains(err.Error(), "kustomize: build bad: ") || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("error = %v", err)
		}
		leftovers(t)
	})
	t.Run("local git URL", func(t *testing.T) {
		_, err := r.Kustomize(context.Background(), KustomizeOptions{Root: root, Path: "file", AllowRemote: true})
		if want := "local git URLs are not allowed"; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
		leftovers(t)
	})
}
