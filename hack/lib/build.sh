# shellcheck shell=bash
# The build-and-stamp helpers shared by hack/testbin.sh and hack/benchbin.sh,
# which compile pinned tools from the Go module proxy into a cache folder and
# skip whatever is already there. Sourced, not run. The sourcing script sets
# BUILD_LOG_TAG (the prefix of its log lines) and calls build_dirs first.
#
# A tool NAME built at VERSION is the executable $out/NAME next to the stamp
# $out/.NAME.version holding VERSION; a build starts from its own wrapper
# module under $out/.work, kept between calls so that a second cold build
# reuses its go.mod and go.sum.

# build_dirs DIR creates DIR and DIR/.work, and sets out (DIR, absolute) and
# work.
build_dirs() {
  mkdir -p "$1"
  out=$(cd "$1" && pwd)
  work=$out/.work
  mkdir -p "$work"
}

log() { printf '%s: %s\n' "${BUILD_LOG_TAG:-build}" "$*" >&2; }

# built NAME VERSION: true when NAME was built at VERSION.
built() { [ -x "$out/$1" ] && [ "$(cat "$out/.$1.version" 2>/dev/null)" = "$2" ]; }

# mark NAME VERSION stamps NAME as built at VERSION.
mark() { echo "$2" >"$out/.$1.version"; }

# wrapper_module NAME GO MODULE@VERSION, run inside the build folder, writes
# a go.mod of its own (module deliver.local/NAMEbuild, go GO) that requires
# MODULE at VERSION, unless one is already there. Building a command of the
# module from it keeps every dependency at the versions MODULE's go.mod
# names.
wrapper_module() {
  [ -f go.mod ] && return 0
  printf 'module deliver.local/%sbuild\n\ngo %s\n' "$1" "$2" >go.mod
  go get "$3" >/dev/null 2>&1
}

# go_command NAME VERSION MODULE PACKAGE [LDFLAGS_FN] builds the command
# PACKAGE of MODULE at VERSION into $out/NAME, static (CGO off) and
# trimmed, from its wrapper module, and stamps it; nothing when it is
# built already. LDFLAGS_FN, when given, is a function run inside the
# wrapper module (where `go list -m` sees MODULE's dependencies) that
# prints the -X flags to add to "-s -w".
go_command() {
  local name=$1 version=$2 module=$3 pkg=$4 ldfn=${5:-}
  built "$name" "$version" && return 0
  log "building $name $version"
  local d=$work/$name-$version
  mkdir -p "$d"
  (
    cd "$d"
    export GOFLAGS=-mod=mod
    wrapper_module "$name" 1.25 "$module@$version"
    local ld="-s -w"
    if [ -n "$ldfn" ]; then
      ld="$ld $("$ldfn")"
    fi
    CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/$name" "$pkg"
  )
  mark "$name" "$version"
}
