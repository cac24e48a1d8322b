#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy and caches them
# outside the repository, keyed by version: only the first run on a machine pays the build.
#
#   devcluster/build-binaries.sh          # prints the bin directory on stdout
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the k8s.io staging
# modules with local paths), so a throwaway wrapper module requires it and pins every
# staging module to the matching v0.x release. etcd is wrapped the same way.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
bin_dir="$cache_root/bin/$key"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

have_all() {
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}

if have_all; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-binaries: Go is required (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$bin_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log() { echo "build-binaries: $*" >&2; }

# Go 1.27+ turns on the jsonv2 experiment, which breaks the apiserver's OpenAPI output.
export GOEXPERIMENT="${GOEXPERIMENT:-nojsonv2}"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

build_kubernetes() {
  local mod="$work/kubernetes"
  mkdir -p "$mod"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  local k8s_mod
  k8s_mod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  {
    echo "module modeldeploy.dev/devcluster/kubernetes"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$k8s_mod"
    echo ")"
  } >"$mod/go.mod"
  local major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  local minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=${major} -X $pkg.gitMinor=${minor}"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$bin_dir/$cmd" ]] && continue
    log "building $cmd ${KUBERNETES_VERSION} (several minutes on the first run)"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$bin_dir/$cmd.tmp" "$bin_dir/$cmd"
  done
}

build_etcd() {
  [[ -x "$bin_dir/etcd" ]] && return 0
  local mod="$work/etcd"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<GOMOD
module modeldeploy.dev/devcluster/etcd

go 1.24

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
GOMOD
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd ${ETCD_VERSION}"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" .)
  mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
}

go_install() {  # name module-path version
  [[ -x "$bin_dir/$1" ]] && return 0
  log "building $1 $3"
  GOBIN="$work/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w" "$2@$3"
  mv "$work/gobin/$1" "$bin_dir/$1"
}

build_etcd
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
build_kubernetes
have_all || { log "some binaries are missing from $bin_dir"; exit 1; }
echo "$bin_dir"
