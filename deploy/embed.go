// Package deploy holds the manifests that install deliver reconcile in a
// cluster (see README.md here), embedded so that deliver bootstrap
// installs exactly what this folder says.
package deploy

import "embed"

// Manifests are namespace.yaml, rbac.yaml and deployment.yaml.
//
//go:embed *.yaml
var Manifests embed.FS
