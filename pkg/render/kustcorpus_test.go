package render

import (
	"context"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deliverhq/deliver/internal/corpus"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The kustomize corpus: kustomizations generated here in the shapes public
// repositories use (bases and overlays, components, generators of every
// source, strategic-merge, JSON 6902 and inline patches, name prefixes,
// labels, images, replicas, replacements, block scalars at the ends of
// files without a final line break), built by deliver and by kustomize,
// and compared as kubectl would read kustomize's output.

// kustCorpus writes every case into its own repository folder.
func kustCorpus(t *testing.T) (string, []corpus.Kustomization) {
	t.Helper()
	cases := corpus.Kustomizations()
	root := t.TempDir()
	for _, c := range cases {
		if err := corpus.WriteTree(filepath.Join(root, c.Name), c.Files); err != nil {
			t.Fatal(err)
		}
	}
	return root, cases
}

// deliverKustomize returns deliver's objects of a case as canonical JSON.
func deliverKustomize(t *testing.T, r *Renderer, root string, c corpus.Kustomization) ([]string, error) {
	t.Helper()
	set, err := r.Kustomize(context.Background(), KustomizeOptions{Root: filepath.Join(root, c.Name), Path: c.Path, App: "corpus"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range append(set.Objects, set.Hooks...) {
		out = append(out, canonicalJSON(t, o.Object))
	}
	slices.Sort(out)
	return out, nil
}

// corpusTally counts a corpus test's cases: compared, or refused by both
// (a resource with a key that is not a string: kustomize's JSON encoding
// refuses it, and so does deliver). Mostly compared, or the corpus proves
// little.
type corpusTally struct{ compared, refused atomic.Int64 }

func (c *corpusTally) check(t *testing.T, cases int) {
	t.Helper()
	t.Cleanup(func() {
		t.Logf("%d cases compared, %d refused by both", c.compared.Load(), c.refused.Load())
		if c.compared.Load() < int64(cases)*7/10 {
			t.Errorf("only %d of %d cases compared", c.compared.Load(), cases)
		}
	})
}

// compare checks deliver's objects (or error) against kustomize's output
// (or error), read by kubectl's decoder.
func (c *corpusTally) compare(t *testing.T, out []byte, kerr error, got []string, err error) {
	t.Helper()
	if kerr != nil || err != nil {
		if (kerr == nil) != (err == nil) {
			t.Fatalf("kustomize: %v\ndeliver: %v", kerr, err)
		}
		c.refused.Add(1)
		return
	}
	want, err := kubectlDecode(string(out))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	c.compared.Add(1)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want kustomize +got deliver):\n%s", diff)
	}
}

// TestKustomizeCorpusLibrary compares deliver's objects with kustomize's
// own YAML output (the krusty build the CLI runs, AsYaml) read by
// kubectl's decoder.
func TestKustomizeCorpusLibrary(t *testing.T) {
	root, cases := kustCorpus(t)
	var r Renderer
	var tally corpusTally
	tally.check(t, len(cases))
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
			var out []byte
			m, kerr := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, c.Name, c.Path))
			if kerr == nil {
				out, kerr = m.AsYaml()
			}
			got, err := deliverKustomize(t, &r, root, c)
			tally.compare(t, out, kerr, got, err)
		})
	}
}

// TestKustomizeCorpusCLI compares deliver's objects with the output of
// `kustomize build`, read by kubectl's decoder.
func TestKustomizeCorpusCLI(t *testing.T) {
	kustomize := testbin(t, "kustomize")
	root, cases := kustCorpus(t)
	var r Renderer
	var tally corpusTally
	tally.check(t, len(cases))
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			out, kerr := cliOutput(t, filepath.Join(root, c.Name), kustomize, "build", c.Path)
			got, err := deliverKustomize(t, &r, root, c)
			tally.compare(t, out, kerr, got, err)
		})
	}
}
