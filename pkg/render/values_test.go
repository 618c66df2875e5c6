package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/corpus"
)

// TestHelmValuesMergeAsHelm merges generated values as deliver does (two
// values files, then inline values as deliver.yaml gives them, then
// --set) and compares the result with Helm's CLI merging the same files
// and flags (-f a -f b -f inline --set ...), types included.
func TestHelmValuesMergeAsHelm(t *testing.T) {
	// Files Helm reads alone: the merge is under test, not the reading
	// (config's TestInlineValuesReadAsHelm covers it).
	var texts []string
	for _, text := range corpus.ValuesFiles(5, 300) {
		var m map[string]any
		if yaml.Unmarshal([]byte(text), &m) == nil {
			texts = append(texts, text)
		}
	}
	sets := [][]string{nil, {"image.tag=2.0"}, {"replicaCount=3,enabled=false"}, {"config.a.b=yes", "name=null"}, {"annotations[0]=x"}}
	root := t.TempDir()
	merged, refused := 0, 0
	for i := 0; i+2 < len(texts); i += 3 {
		var files []string
		for j := range 3 {
			f := fmt.Sprintf("v%d.yaml", i+j)
			if err := os.WriteFile(filepath.Join(root, f), []byte(texts[i+j]), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		set := sets[(i/3)%len(sets)]
		abs := []string{filepath.Join(root, files[0]), filepath.Join(root, files[1]), filepath.Join(root, files[2])}
		want, herr := (&values.Options{ValueFiles: abs, Values: set}).MergeValues(getter.Providers{})

		// The third file as inline values: what config.Values holds.
		var inline map[string]any
		ierr := yaml.Unmarshal([]byte(texts[i+2]), &inline)
		var got map[string]any
		err := ierr
		if err == nil {
			got, err = helmValues(context.Background(), os.DirFS(root), HelmOptions{ValuesFiles: files[:2], Values: inline, Set: set, MaxFileSize: DefaultMaxFileSize})
		}
		if herr != nil || err != nil {
			if (herr == nil) != (err == nil) {
				t.Errorf("files %v: helm: %v\ndeliver: %v", files, herr, err)
			}
			refused++
			continue
		}
		merged++
		if diff := cmp.Diff(want, got, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("files %v, --set %v: values (-helm +deliver):\n%s", files, set, diff)
		}
	}
	t.Logf("%d merged alike, %d refused by both", merged, refused)
	if merged < (len(texts)/3)*7/10 {
		t.Errorf("only %d of %d merged", merged, len(texts)/3)
	}
}

// TestDecodeValuesAsKubectl reads manifests whose fields hold generated
// values (YAML 1.1 words, numbers in every notation, dates, tags,
// anchors and merge keys, block scalars) with deliver's decoder and with
// kubectl's, in a custom resource's spec and, as a document of its own,
// with each value file as the object's top level beside its kind.
func TestDecodeValuesAsKubectl(t *testing.T) {
	compared, refused := 0, 0
	for i, text := range corpus.ValuesFiles(17, 300) {
		docs := []string{
			"apiVersion: example.org/v1\nkind: Thing\nmetadata:\n  name: t\nspec:\n" + corpus.Nested(2, text),
			"apiVersion: example.org/v1\nkind: Thing\nmetadata:\n  name: t\n" + text,
		}
		for j, doc := range docs {
			want, kerr := kubectlDecode(doc)
			objs, err := Decode("values.yaml", []byte(doc))
			if kerr != nil || err != nil {
				if kerr == nil {
					t.Errorf("case %d.%d: deliver refused what kubectl reads: %v\n%s", i, j, err, doc)
				}
				refused++
				continue
			}
			var got []string
			for _, o := range objs {
				got = append(got, canonicalJSON(t, o.Object))
			}
			compared++
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("case %d.%d: objects (-kubectl +deliver):\n%s\n%s", i, j, diff, doc)
			}
		}
	}
	t.Logf("%d documents read alike, %d refused by kubectl", compared, refused)
	if compared < 600*7/10 {
		t.Errorf("only %d of 600 documents read", compared)
	}
}
