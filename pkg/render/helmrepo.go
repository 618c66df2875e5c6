package render

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chart"
	"sigs.k8s.io/yaml"
)

// repoIndex is the part of a chart repository's index.yaml a fetch reads.
// It stands in for helm's repo.IndexFile, which would link helm's getter,
// plugin, CLI and kube packages (kubectl among them: 45 packages and 2 ms
// of every start-up) for three fields and two functions.
// TestRepoIndexLoadsWhatHelmLoads compares it with repo.LoadIndexFile.
type repoIndex struct {
	APIVersion string                  `json:"apiVersion"`
	Entries    map[string][]*repoChart `json:"entries"`
}

// repoChart is one version of a chart in an index: its Chart.yaml, as
// helm's repo.ChartVersion has it, and where to fetch it.
type repoChart struct {
	*chart.Metadata
	URLs   []string `json:"urls"`
	Digest string   `json:"digest"`
}

// parseRepoIndex reads an index.yaml as helm's loadIndex does: no
// apiVersion is an error; an entry that is empty or whose metadata fails
// helm's own validation (chart.Metadata.Validate: a version that is not
// semver, a bad name, apiVersion or type) is left out, as helm leaves it
// out, except for the one error helm tolerates (two dependencies of one
// name or alias, which some repositories make by stripping aliases).
func parseRepoIndex(data []byte) (*repoIndex, error) {
	if len(data) == 0 {
		return nil, errors.New("empty index.yaml file")
	}
	var idx repoIndex
	if err := yaml.Unmarshal(data, &idx); err != nil {
		return nil, err
	}
	if idx.APIVersion == "" {
		return nil, errors.New("no API version specified")
	}
	for name, cvs := range idx.Entries {
		kept := cvs[:0]
		for _, cv := range cvs {
			if cv == nil {
				continue
			}
			if cv.Metadata == nil {
				cv.Metadata = &chart.Metadata{}
			}
			if cv.APIVersion == "" {
				cv.APIVersion = chart.APIVersionV1
			}
			if err := cv.Validate(); err != nil && !strings.HasPrefix(err.Error(), "validation: more than one dependency with name or alias") {
				continue
			}
			kept = append(kept, cv)
		}
		idx.Entries[name] = kept
	}
	return &idx, nil
}

// get returns the version of chart name that helm's IndexFile.Get picks
// after SortEntries: an entry whose version is exactly version, else the
// highest semantic version that satisfies version as a constraint ("" is
// "*": the latest stable release). Entries whose version is not semver can
// only match exactly.
func (idx *repoIndex) get(name, version string) (*repoChart, error) {
	entries, ok := idx.Entries[name]
	if !ok {
		return nil, errors.New("no chart name found")
	}
	var versions []*repoChart
	for _, cv := range entries {
		if cv != nil {
			versions = append(versions, cv)
		}
	}
	if len(versions) == 0 {
		return nil, errors.New("no chart version found")
	}
	constraint, err := semver.NewConstraint(cmp.Or(version, "*"))
	if err != nil {
		return nil, err
	}
	if version != "" {
		for _, cv := range versions {
			if cv.Version == version {
				return cv, nil
			}
		}
	}
	var (
		best    *repoChart
		bestVer *semver.Version
	)
	for _, cv := range versions {
		v, err := semver.NewVersion(cv.Version)
		if err != nil || !constraint.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(bestVer) {
			best, bestVer = cv, v
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no chart version found for %s-%s", name, version)
	}
	return best, nil
}

// resolveChartURL resolves a chart's URL from an index against the
// repository's URL, keeping the repository's query, as helm's
// repo.ResolveReferenceURL does.
func resolveChartURL(repository, ref string) (string, error) {
	refURL, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("chart URL %q: %w", ref, err)
	}
	if refURL.IsAbs() {
		return ref, nil
	}
	base, err := url.Parse(repository)
	if err != nil {
		return "", fmt.Errorf("repository URL %q: %w", repository, err)
	}
	// ResolveReference drops the last path element without a trailing slash.
	base.RawPath = strings.TrimSuffix(base.RawPath, "/") + "/"
	base.Path = strings.TrimSuffix(base.Path, "/") + "/"
	u := base.ResolveReference(refURL)
	u.RawQuery = base.RawQuery
	return u.String(), nil
}
