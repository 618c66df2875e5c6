package render

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// repoIndex is the part of a chart repository's index.yaml a fetch reads.
// It stands in for helm's repo.IndexFile, which would link helm's getter,
// plugin, CLI and kube packages (kubectl among them: 45 packages and 2 ms
// of every start-up) for three fields and two functions.
type repoIndex struct {
	Entries map[string][]*repoChart `json:"entries"`
}

// repoChart is one version of a chart in an index.
type repoChart struct {
	Version string   `json:"version"`
	URLs    []string `json:"urls"`
	Digest  string   `json:"digest"`
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
