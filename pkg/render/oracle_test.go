package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/pkg/object"
)

// runCLI runs a CLI with a private HOME and helm folders, returning stdout;
// a failure fails the test.
func runCLI(t testing.TB, dir, bin string, args ...string) []byte {
	t.Helper()
	out, err := cliOutput(t, dir, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cliOutput is runCLI that returns the CLI's failure, with its stderr.
func cliOutput(t testing.TB, dir, bin string, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG="+filepath.Join(home, "none"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w\n%s", filepath.Base(bin), args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// decryptedCopy copies the test repository to a temporary folder with the
// given files replaced by their fake-decrypted plaintext, for the CLIs.
func decryptedCopy(t *testing.T, encrypted ...string) string {
	t.Helper()
	dst := t.TempDir()
	err := os.CopyFS(dst, os.DirFS("testdata/repo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range encrypted {
		data, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := fakeDecrypt(context.Background(), f, data)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), plain, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// sameObjects checks that the set decoded from deliver's renderer holds
// exactly the objects of the CLI's output.
func sameObjects(t *testing.T, cli []byte, got [][]byte) {
	t.Helper()
	set, err := decodeStream(cli, func([]byte, int) object.Origin { return object.Origin{} })
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for _, o := range append(set.Objects, set.Hooks...) {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, y)
	}
	sortBytes(want)
	sortBytes(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want CLI +got deliver):\n%s", diff)
	}
}

func sortBytes(b [][]byte) {
	sort.Slice(b, func(i, j int) bool { return bytes.Compare(b[i], b[j]) < 0 })
}

// helmTemplate returns what `helm template` prints for opts, byte for byte:
// manifests sorted in install order, each after a "# Source:" comment, then
// the hooks. Helm reads the objects from the same documents; the oracle
// test compares this with the helm CLI.
func helmTemplate(ctx context.Context, opts HelmOptions) ([]byte, error) {
	docs, err := helmDocs(ctx, opts)
	if err != nil {
		return nil, err
	}
	return templateText(docs, false, false), nil
}

func TestHelmOracle(t *testing.T) {
	helm := testbin(t, "helm")
	tests := []struct {
		name string
		opts HelmOptions
		args []string
	}{
		{
			name: "all inputs",
			opts: appChart(),
			// The inline values become a last values file: the same merge.
			args: []string{"template", "web", "charts/app", "--namespace", "shop",
				"-f", "values/app.yaml", "-f", "values/app.secret.yaml", "-f", "inline.yaml",
				"--set", "replicas=3", "--set", "sub.message=set-by-flag", "--set-string", "appVersionLabel=007",
				"--kube-version", "v1.31.2", "--api-versions", "monitoring.coreos.com/v1", "--include-crds"},
		},
		{
			name: "defaults",
			opts: appChartDefaults(),
			args: []string{"template", "shop", "charts/app"},
		},
		{
			// Install order: known kinds, unknown kinds by name, documents
			// of one kind in template order; hooks apart (one with an
			// unknown event left out); comment-only and empty output; a
			// CRD file of two documents.
			name: "order",
			opts: HelmOptions{Root: "testdata/repo", App: "rel", Chart: "charts/order", IncludeCRDs: true},
			args: []string{"template", "rel", "charts/order", "--include-crds"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := decryptedCopy(t, "values/app.secret.yaml")
			inline, err := yaml.Marshal(tt.opts.Values)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "inline.yaml"), inline, 0o644); err != nil {
				t.Fatal(err)
			}
			want := runCLI(t, dir, helm, tt.args...)
			got, err := helmTemplate(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			// Byte for byte: the same documents in the same order.
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("output (-want helm template +got deliver):\n%s", diff)
			}
			set, err := Helm(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			sameObjects(t, want, marshalAll(t, set))
		})
	}
}

func TestKustomizeOracle(t *testing.T) {
	kustomize := testbin(t, "kustomize")
	opts := prodOverlay()
	dir := decryptedCopy(t, "kustomize/overlays/prod/db.enc.env", "kustomize/overlays/prod/password.enc.json")
	want := runCLI(t, dir, kustomize, "build", opts.Path)
	var r Renderer
	built, err := r.kustomizeBuild(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The CLI prints each object's JSON as YAML (resource.AsYAML), joined
	// with "---" (resmap.AsYaml). kustomize's order is deterministic:
	// compare the bytes as they are.
	var got []byte
	for i, res := range built {
		doc, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			got = append(got, "---\n"...)
		}
		got = append(got, y...)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("output (-want kustomize build +got deliver):\n%s", diff)
	}
	set, err := r.Kustomize(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	sameObjects(t, want, marshalAll(t, set))
}

// marshalAll returns the YAML of every object and hook of set.
func marshalAll(t *testing.T, set *object.Set) [][]byte {
	t.Helper()
	var out [][]byte
	for _, o := range append(set.Objects, set.Hooks...) {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, y)
	}
	return out
}
