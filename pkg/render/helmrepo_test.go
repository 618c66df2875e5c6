package render

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/repo"
)

// TestRepoIndexPicksWhatHelmPicks compares repoIndex.get with helm's own
// IndexFile.Get after SortEntries, which deliver used before.
func TestRepoIndexPicksWhatHelmPicks(t *testing.T) {
	versions := []string{"0.1.0", "1.2.3", "1.10.0", "2.0.0-rc.1", "1.9.9", "v1.11.0", "not-semver", "0.9.0-alpha"}
	ours := &repoIndex{Entries: map[string][]*repoChart{"empty": {}}}
	helms := repo.NewIndexFile()
	helms.Entries["empty"] = repo.ChartVersions{}
	for _, v := range versions {
		ours.Entries["app"] = append(ours.Entries["app"], &repoChart{Metadata: &chart.Metadata{Name: "app", Version: v}, URLs: []string{"app-" + v + ".tgz"}})
		helms.Entries["app"] = append(helms.Entries["app"], &repo.ChartVersion{Metadata: &chart.Metadata{Name: "app", Version: v}})
	}
	helms.SortEntries()
	for _, tt := range []struct{ name, version string }{
		{"app", ""},
		{"app", "*"},
		{"app", "1.2.3"},
		{"app", "~1.2"},
		{"app", "^1"},
		{"app", ">=1.0.0 <1.10.0"},
		{"app", "1.11.0"},
		{"app", "v1.11.0"},
		{"app", "2.0.0-rc.1"},
		{"app", ">=2.0.0-0"},
		{"app", "not-semver"},
		{"app", "9.9.9"},
		{"app", ">>1"},
		{"app", "0.9.0-alpha"},
		{"nope", ""},
		{"empty", ""},
	} {
		t.Run(tt.name+"@"+tt.version, func(t *testing.T) {
			want, wantErr := helms.Get(tt.name, tt.version)
			got, gotErr := ours.get(tt.name, tt.version)
			if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
				t.Fatalf("error = %v, helm's = %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			if got.Version != want.Version {
				t.Errorf("picked %s, helm picks %s", got.Version, want.Version)
			}
		})
	}
}

// TestRepoIndexLoadsWhatHelmLoads: parseRepoIndex keeps the entries
// helm's repo.LoadIndexFile keeps (it validates each with
// chart.Metadata.Validate), refuses what it refuses, and get then picks
// what helm's Get picks, on index files with entries helm leaves out.
func TestRepoIndexLoadsWhatHelmLoads(t *testing.T) {
	t.Parallel()
	entry := func(fields string) string { return "  - {" + fields + ", urls: [x.tgz]}\n" }
	valid := entry("apiVersion: v2, name: app, version: 1.2.3") +
		entry("apiVersion: v2, name: app, version: 1.10.0") +
		entry("name: app, version: 0.9.0") + // apiVersion defaults to v1
		entry("apiVersion: v2, name: app, version: 2.0.0-rc.1")
	for _, tt := range []struct{ name, index string }{
		{"valid", "apiVersion: v1\nentries:\n  app:\n" + valid},
		{"version not semver", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v2, name: app, version: latest")},
		{"a higher version with a bad name", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v2, name: ../app, version: 9.0.0")},
		{"a higher version without a name", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v2, version: 9.0.0")},
		{"a higher version of an unknown type", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v2, name: app, version: 9.0.0, type: plugin")},
		{"a higher version of an unknown apiVersion", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v9, name: app, version: 9.0.0")},
		{"a library chart", "apiVersion: v1\nentries:\n  app:\n" + valid + entry("apiVersion: v2, name: app, version: 9.0.0, type: library")},
		{"an empty entry", "apiVersion: v1\nentries:\n  app:\n" + valid + "  - null\n"},
		{"no apiVersion", "entries:\n  app:\n" + valid},
		{"empty", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "index.yaml")
			if err := os.WriteFile(file, []byte(tt.index), 0o644); err != nil {
				t.Fatal(err)
			}
			helms, herr := repo.LoadIndexFile(file)
			ours, err := parseRepoIndex([]byte(tt.index))
			if (herr != nil) != (err != nil) {
				t.Fatalf("error %v; helm's %v", err, herr)
			}
			if herr != nil {
				return
			}
			var want, got []string
			for _, cv := range helms.Entries["app"] {
				want = append(want, cv.Version)
			}
			for _, cv := range ours.Entries["app"] {
				got = append(got, cv.Version)
			}
			slices.Sort(want)
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("versions kept (-helm +deliver):\n%s", diff)
			}
			for _, q := range []string{"", "*", "1.2.3", "^1", "latest", "9.0.0", ">=2.0.0-0"} {
				hcv, herr := helms.Get("app", q)
				cv, err := ours.get("app", q)
				if (herr != nil) != (err != nil) || (herr == nil && hcv.Version != cv.Version) {
					t.Errorf("get %q: %v %v; helm: %v %v", q, cv, err, hcv, herr)
				}
			}
		})
	}
}

func TestResolveChartURL(t *testing.T) {
	for _, tt := range []struct{ repo, ref string }{
		{"https://charts.example.com", "app-1.0.0.tgz"},
		{"https://charts.example.com/stable/", "app-1.0.0.tgz"},
		{"https://charts.example.com/stable", "charts/app-1.0.0.tgz"},
		{"https://charts.example.com/stable?token=x", "app-1.0.0.tgz"},
		{"https://charts.example.com/a%2Fb", "app.tgz"},
		{"https://charts.example.com/stable", "https://cdn.example.com/app-1.0.0.tgz"},
		{"https://charts.example.com/stable", "/abs/app.tgz"},
	} {
		want, wantErr := repo.ResolveReferenceURL(tt.repo, tt.ref)
		got, gotErr := resolveChartURL(tt.repo, tt.ref)
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("%s + %s: error = %v, helm's = %v", tt.repo, tt.ref, gotErr, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s + %s (-helm +deliver):\n%s", tt.repo, tt.ref, diff)
		}
	}
}
