#!/usr/bin/env bash
# Runs govulncheck (built from the module proxy, cached next to the test
# binaries) over every package; exits non-zero when a vulnerable function
# is called.
#
#   hack/vulncheck.sh              the real check, against vuln.go.dev
#   hack/vulncheck.sh self-test    proves the check fails: a local database
#                                  with one made-up vulnerability in a
#                                  function deliver calls (sigs.k8s.io/yaml
#                                  Unmarshal) must be reported
#
# The real check needs vuln.go.dev. Where it cannot be reached (a sandbox
# with only the module proxy), it says so and exits 0 unless
# VULNCHECK_REQUIRED=1; the self-test needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${DELIVER_TESTBIN:-$PWD/.testbin}"
# v1.1.4: the newest whose dependencies the module proxy here serves.
version=v1.1.4
mkdir -p "$bin"
if [[ ! -x "$bin/govulncheck" ]] || [[ "$(cat "$bin/govulncheck.version" 2>/dev/null)" != "$version" ]]; then
  GOBIN="$bin" go install "golang.org/x/vuln/cmd/govulncheck@$version"
  echo "$version" >"$bin/govulncheck.version"
fi

case "${1:-}" in
self-test)
  db=$(mktemp -d)
  trap 'rm -rf "$db"' EXIT
  mkdir -p "$db/index" "$db/ID"
  now=2026-01-01T00:00:00Z
  echo "{\"modified\":\"$now\"}" >"$db/index/db.json"
  echo "[{\"path\":\"sigs.k8s.io/yaml\",\"vulns\":[{\"id\":\"GO-9999-0001\",\"modified\":\"$now\"}]}]" >"$db/index/modules.json"
  echo "[{\"id\":\"GO-9999-0001\",\"modified\":\"$now\",\"aliases\":[]}]" >"$db/index/vulns.json"
  cat >"$db/ID/GO-9999-0001.json" <<JSON
{"schema_version":"1.3.1","id":"GO-9999-0001","modified":"$now","published":"$now",
 "summary":"made-up vulnerability for the self-test","details":"not real",
 "affected":[{"package":{"name":"sigs.k8s.io/yaml","ecosystem":"Go"},
   "ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}],
   "ecosystem_specific":{"imports":[{"path":"sigs.k8s.io/yaml","symbols":["Unmarshal"]}]}}],
 "database_specific":{"url":"https://pkg.go.dev/vuln/GO-9999-0001"}}
JSON
  set +e
  out=$("$bin/govulncheck" -db "file://$db" ./pkg/render 2>&1)
  code=$?
  set -e
  # 3: vulnerabilities found (anything else is govulncheck failing).
  if [[ $code -ne 3 ]] || ! grep -q "Vulnerability #1: GO-9999-0001" <<<"$out"; then
    echo "vulncheck self-test: govulncheck did not report a called vulnerable function (exit $code):" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "vulncheck self-test: a called vulnerable function fails the check (exit $code)"
  ;;
"")
  if ! curl -fsS -m 10 -o /dev/null https://vuln.go.dev/index/db.json 2>/dev/null; then
    if [[ "${VULNCHECK_REQUIRED:-0}" == 1 ]]; then
      echo "vulncheck: vuln.go.dev unreachable" >&2
      exit 1
    fi
    echo "vulncheck: NOT RUN: vuln.go.dev is unreachable from this machine (set VULNCHECK_REQUIRED=1 to fail instead)"
    exit 0
  fi
  "$bin/govulncheck" ./...
  ;;
*)
  echo "usage: $0 [self-test]" >&2
  exit 2
  ;;
esac
