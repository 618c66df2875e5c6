// Package version reports what deliver was built from.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X github.com/deliverhq/deliver/internal/version.Version=..."
var (
	// Version is deliver's release, "dev" for local builds.
	Version = "dev"
	// Commit is the git commit deliver was built from.
	Commit = "unknown"
)

// Info is what `deliver version` prints.
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	Go         string `json:"go"`
	Helm       string `json:"helm"`
	Kubernetes string `json:"kubernetesClient"`
}

// Get returns the build's versions. Library versions come from the module
// build info, so they are the ones actually linked in.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Go: runtime.Version(), Helm: "not linked", Kubernetes: "not linked"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && info.Commit == "unknown" {
			info.Commit = s.Value
		}
	}
	for _, d := range bi.Deps {
		switch d.Path {
		case "helm.sh/helm/v3":
			info.Helm = d.Version
		case "k8s.io/client-go":
			info.Kubernetes = d.Version
		}
	}
	return info
}
