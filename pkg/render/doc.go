// Package render turns an app's sources (plain manifests, Helm charts and
// kustomize overlays) into one object.Set, hooks kept apart.
//
// Every file is read through an os.Root opened on the repository snapshot, so
// neither a "../" path nor a symlink can make a renderer read outside it.
package render
