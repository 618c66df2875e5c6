#!/usr/bin/env bash
# post-plan.sh FILE
#
# Posts FILE, the body `deliver diff -o markdown` printed, as the pull
# request's plan comment, or updates the comment it posted before: one
# sticky comment per pull request, found by the marker every body opens
# with (<!-- deliver-plan -->).
#
# Needs bash, curl and jq (jq reads the API's JSON and encodes the body;
# GitHub's runners have all three).
#
# Environment:
#   GITHUB_TOKEN       a token allowed to write the pull request's comments
#                      (required; sent in a header read from a file, never
#                      printed nor passed on a command line)
#   GITHUB_REPOSITORY  owner/name (required; GitHub Actions sets it)
#   PR_NUMBER          the pull request's number (required)
#   GITHUB_API_URL     the REST API's base URL (default https://api.github.com;
#                      GitHub Actions sets it, also on GitHub Enterprise Server)
#   DELIVER_PLAN_MARKER  the marker (default <!-- deliver-plan -->)
set -euo pipefail

file=${1:?usage: post-plan.sh FILE}
: "${GITHUB_TOKEN:?post-plan.sh: GITHUB_TOKEN is not set}"
: "${GITHUB_REPOSITORY:?post-plan.sh: GITHUB_REPOSITORY (owner/name) is not set}"
: "${PR_NUMBER:?post-plan.sh: PR_NUMBER is not set}"
api=${GITHUB_API_URL:-https://api.github.com}
api=${api%/}
marker=${DELIVER_PLAN_MARKER:-<!-- deliver-plan -->}

if ! grep -qF -- "$marker" "$file"; then
  echo "post-plan.sh: $file does not hold the marker $marker: the comment could not be found again to update it" >&2
  exit 1
fi

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# printf is a builtin: the token is on no command line that ps shows.
printf 'Authorization: Bearer %s\n' "$GITHUB_TOKEN" >"$tmp/auth"

# github METHOD URL [JSON-FILE]: one API request; its response on stdout.
# --fail: an error status ends the script, with curl's message (the
# status), which holds no header.
github() {
  local args=(--silent --show-error --fail -X "$1" -H @"$tmp/auth"
    -H 'Accept: application/vnd.github+json' -H 'X-GitHub-Api-Version: 2022-11-28')
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary @"$3")
  fi
  curl "${args[@]}" "$2"
}

# The comment posted before: the first one holding the marker, page by
# page (100 comments a page, the most the API gives).
id=
page=1
while :; do
  github GET "$api/repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments?per_page=100&page=$page" >"$tmp/page.json"
  id=$(jq -r --arg m "$marker" '[(. // [])[] | select((.body // "") | contains($m))][0].id // empty' "$tmp/page.json")
  count=$(jq '(. // []) | length' "$tmp/page.json")
  if [ -n "$id" ] || [ "$count" -lt 100 ]; then
    break
  fi
  page=$((page + 1))
done

jq -Rs '{body: .}' "$file" >"$tmp/body.json"
if [ -n "$id" ]; then
  github PATCH "$api/repos/$GITHUB_REPOSITORY/issues/comments/$id" "$tmp/body.json" >"$tmp/out.json"
  echo "post-plan.sh: updated comment $id: $(jq -r '.html_url // empty' "$tmp/out.json")"
else
  github POST "$api/repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" "$tmp/body.json" >"$tmp/out.json"
  echo "post-plan.sh: created comment $(jq -r '.id' "$tmp/out.json"): $(jq -r '.html_url // empty' "$tmp/out.json")"
fi
