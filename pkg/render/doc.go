// Package render turns an app's sources (plain manifests; Helm charts and
// kustomize overlays in later stages of the project) into one object.Set.
//
// Every file is read through an os.Root opened on the repository snapshot, so
// neither a "../" path nor a symlink can make a renderer read outside it.
package render
