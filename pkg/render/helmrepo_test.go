package render

import (
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
		ours.Entries["app"] = append(ours.Entries["app"], &repoChart{Version: v, URLs: []string{"app-" + v + ".tgz"}})
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
