#!/usr/bin/env bash
# Builds the pinned binaries of the local test control plane (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok), Vault, the
# helm and kustomize CLIs (oracles for pkg/render) and the sops CLI (oracle
# for pkg/secrets) from the Go module proxy into
# a cache folder, skipping whatever is already there.
# Nothing can be downloaded as a prebuilt binary on our machines, so everything
# is compiled from source. A second call returns in well under a second.
#
# Usage: hack/testbin.sh [all|kube|etcd|kwok|vault|helm|kustomize|sops]...
# The folder is $DELIVER_TESTBIN (default: <repo>/.testbin, gitignored).
set -euo pipefail

KUBE_VERSION=v1.37.0   # same minor as k8s.io/client-go in go.mod
ETCD_VERSION=v3.5.21
KWOK_VERSION=v0.7.0
VAULT_VERSION=v1.21.0  # v1.21.x later than .0 need an unpublished in-tree sdk
HELM_VERSION=v3.22.0   # same as helm.sh/helm/v3 in go.mod
KUSTOMIZE_VERSION=v5.8.1  # the CLI release built on sigs.k8s.io/kustomize/api v0.21.1 in go.mod
SOPS_VERSION=v3.13.3   # same as github.com/getsops/sops/v3 in go.mod

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/build.sh
. "$root/hack/lib/build.sh"
BUILD_LOG_TAG=testbin
build_dirs "${DELIVER_TESTBIN:-$root/.testbin}"

kube() {
  local need=0 b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    built "$b" "$KUBE_VERSION" || need=1
  done
  [ "$need" = 1 ] || return 0
  log "building kubernetes $KUBE_VERSION (about 5 min cold)"
  local d=$work/kube-$KUBE_VERSION minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  mkdir -p "$d"
  (
    cd "$d"
    export GONOSUMDB=k8s.io GOFLAGS=-mod=mod
    if [ ! -f go.mod ]; then
      cat >go.mod <<MOD
module deliver.local/kubebuild

go 1.25

require k8s.io/kubernetes $KUBE_VERSION
MOD
      # k8s.io/kubernetes replaces its staging modules with ./staging/...;
      # a consumer must pin each of them to the matching published v0.Y.Z.
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
        echo "replace $m => $m v0.${KUBE_VERSION#v1.}" >>go.mod
      done
      printf 'package main\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n)\n\nfunc main() {}\n' >tools.go
      go mod tidy >/dev/null
    fi
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
    go build -trimpath -ldflags "$ld" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl
  )
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do mark "$b" "$KUBE_VERSION"; done
}

etcd() {
  built etcd "$ETCD_VERSION" && return 0
  log "building etcd $ETCD_VERSION"
  local d=$work/etcd-$ETCD_VERSION
  mkdir -p "$d"
  (
    cd "$d"
    export GOFLAGS=-mod=mod
    wrapper_module etcd 1.23 "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  )
  mark etcd "$ETCD_VERSION"
}

kwok() {
  built kwok "$KWOK_VERSION" && return 0
  log "building kwok $KWOK_VERSION"
  GOBIN=$out go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mark kwok "$KWOK_VERSION"
}

vault() {
  built vault "$VAULT_VERSION" && return 0
  log "building vault $VAULT_VERSION (about 6-10 min cold)"
  local d=$work/vault-$VAULT_VERSION
  mkdir -p "$d"
  (
    cd "$d"
    export GONOSUMDB=github.com/hashicorp GOFLAGS=-mod=mod
    if [ ! -f go.mod ]; then
      cat >go.mod <<MOD
module deliver.local/vaultbuild

go 1.25

require github.com/hashicorp/vault $VAULT_VERSION

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
MOD
      printf 'package main\n\nimport _ "github.com/hashicorp/vault/command"\n\nfunc main() {}\n' >tools.go
      go mod tidy -e >/dev/null 2>&1 || true
    fi
    go build -trimpath -ldflags "-s -w" -o "$out/vault" github.com/hashicorp/vault
  )
  mark vault "$VAULT_VERSION"
}

# helm_ldflags are the -X flags of helm's own Makefile for a release: its
# version, and the default .Capabilities.KubeVersion taken from its
# k8s.io/client-go minor.
helm_ldflags() {
  local cg major minor
  cg=$(go list -m -f '{{.Version}}' k8s.io/client-go)
  cg=${cg#v}
  major=$(( ${cg%%.*} + 1 ))
  minor=${cg#*.}
  minor=${minor%%.*}
  printf '%s' "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  printf ' %s' "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  printf ' %s' "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

# kustomize_ldflags stamp the version `kustomize version` prints.
kustomize_ldflags() { printf '%s' "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION"; }

helm() { go_command helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm helm_ldflags; }
kustomize() { go_command kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 sigs.k8s.io/kustomize/kustomize/v5 kustomize_ldflags; }
sops() { go_command sops "$SOPS_VERSION" github.com/getsops/sops/v3 github.com/getsops/sops/v3/cmd/sops; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all) etcd; kwok; kube; vault; helm; kustomize; sops ;;
    kube|etcd|kwok|vault|helm|kustomize|sops) "$t" ;;
    *) echo "testbin: unknown target $t" >&2; exit 2 ;;
  esac
done
echo "$out"
