#!/usr/bin/env bash
# Builds the binaries only `make bench` needs (never `make test`): Flux's
# source-controller and kustomize-controller, which the "apps" rows of
# hack/bench run side by side with deliver (docs/performance.md). Like
# hack/testbin.sh they are compiled from the Go module proxy into a cache
# folder, each stamped with its version and built only when missing; a second
# call returns at once. A cold build downloads a few hundred modules and takes
# 15-50 minutes on 2 cores.
#
# Usage: hack/benchbin.sh [all|flux]...
# The folder is $DELIVER_BENCHBIN (default: the folder "bench" inside the
# test binaries' folder, $DELIVER_TESTBIN or <repo>/.testbin, gitignored),
# where hack/bench looks for them.
set -euo pipefail

# The newest releases whose go.mod accepts this repository's Go (v1.10.x
# requires go 1.27).
FLUX_SOURCE_VERSION=v1.9.6
FLUX_KUSTOMIZE_VERSION=v1.9.6

# Dependencies pinned to another version than the controllers' go.mod
# names, one "module => module version" a line: the module proxy of our
# build machines does not serve github.com/fluxcd/pkg/artifact v0.18.3;
# v0.18.0 is the same API (patch releases of one minor).
FLUX_REPLACES='github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.0'

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/build.sh
. "$root/hack/lib/build.sh"
BUILD_LOG_TAG=benchbin
build_dirs "${DELIVER_BENCHBIN:-${DELIVER_TESTBIN:-$root/.testbin}/bench}"

# controller NAME VERSION builds github.com/fluxcd/NAME at VERSION. The
# controllers' go.mod replaces their api module with ./api, which a module
# zip does not contain, so `go install NAME@VERSION` refuses; a small wrapper
# module requires the controller instead and copies its other replace
# directives, which keeps every dependency at the controller's own version
# (but for FLUX_REPLACES).
controller() {
  local name=$1 v=$2
  built "$name" "$v" && return 0
  log "building fluxcd/$name $v"
  local d=$work/$name-$v
  mkdir -p "$d"
  (
    cd "$d"
    export GOFLAGS=-mod=mod
    if [ ! -f go.mod ]; then
      local gomod
      gomod=$(go mod download -json "github.com/fluxcd/$name@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      {
        printf 'module deliver.local/%sbuild\n\ngo %s\n\nrequire github.com/fluxcd/%s %s\n\n' \
          "$name" "$(awk '$1 == "go" {print $2; exit}' "$gomod")" "$name" "$v"
        grep -E '=>' "$gomod" | grep -vE '=>[[:space:]]*\./' |
          sed -E 's/^[[:space:]]*(replace[[:space:]]+)?/replace /'
        printf '%s\n' "$FLUX_REPLACES" | sed -E '/^$/d; s/^/replace /'
      } >go.mod
      go get "github.com/fluxcd/$name@$v" >/dev/null 2>&1
    fi
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/$name" "github.com/fluxcd/$name"
  )
  mark "$name" "$v"
}

flux() {
  controller source-controller "$FLUX_SOURCE_VERSION"
  controller kustomize-controller "$FLUX_KUSTOMIZE_VERSION"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all|flux) flux ;;
    *) echo "benchbin: unknown target $t" >&2; exit 2 ;;
  esac
done
echo "$out"
