#!/usr/bin/env bash
# Builds the healthcheck tool (kstatus and gopher-lua, from the Go module proxy) once per version of its sources,
# cached outside the repository like devcluster/build-binaries.sh; prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)"
binary="$cache_root/bin/healthcheck-$key"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
command -v go >/dev/null || { echo "healthcheck: Go is required (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$(dirname "$binary")"
echo "healthcheck: building $binary (about a minute the first time)" >&2
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$binary.tmp" .)
mv "$binary.tmp" "$binary"
echo "$binary"
