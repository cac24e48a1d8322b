#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy and caches them outside the repository,
# keyed by the versions and by this script itself: only the first run on a machine pays the build.
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
# A change to how a binary is built (flags, ldflags, tags) must not reuse binaries built the old way.
recipe="$(cat "$here/versions.env" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_containerd-${CONTAINERD_VERSION}_cni-${CNI_PLUGINS_VERSION}_coredns-${COREDNS_VERSION}_${recipe}"
bin_dir="$cache_root/bin/$key"
kubernetes_commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
containerd_commands=(containerd containerd-shim-runc-v2 ctr)
# The CNI plugins live in their own directory: kubelet's CNI bin dir should hold plugins only.
cni_plugins=(main/bridge main/loopback ipam/host-local meta/portmap)
binaries=(etcd kwok helm pause coredns "${kubernetes_commands[@]}" "${containerd_commands[@]}")
for plugin in "${cni_plugins[@]}"; do binaries+=("cni/${plugin#*/}"); done

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
  for cmd in "${kubernetes_commands[@]}"; do
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

go_install() {  # name module-path version [extra go install flags...]
  [[ -x "$bin_dir/$1" ]] && return 0
  local name="$1" package="$2" version="$3"
  shift 3
  log "building $name $version"
  mkdir -p "$(dirname "$bin_dir/$name")"
  GOBIN="$work/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w" "$@" "$package@$version"
  mv "$work/gobin/$(basename "$package")" "$bin_dir/$name"
}

build_helm() {
  # helm reports its version, and the Kubernetes version it assumes without a cluster (`helm template`, the
  # kubeVersion check), from ldflags its own Makefile sets; a plain `go install` leaves v3.x-dev and v1.20.
  local helm_mod client_go minor
  helm_mod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  client_go="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$helm_mod" | head -n 1)"
  minor="$client_go"
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${minor}"
  done
  [[ -x "$bin_dir/helm" ]] && return 0
  log "building helm ${HELM_VERSION} (assumes Kubernetes 1.${minor} without a cluster)"
  GOBIN="$work/gobin" GOFLAGS= go install -trimpath -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  mv "$work/gobin/helm" "$bin_dir/helm"
}

build_etcd
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
go_install coredns github.com/coredns/coredns "$COREDNS_VERSION"
build_helm
for cmd in "${containerd_commands[@]}"; do
  # CGO off leaves out the snapshotters that need C libraries; the node uses overlayfs.
  go_install "$cmd" "github.com/containerd/containerd/v2/cmd/$cmd" "$CONTAINERD_VERSION" \
    -tags "no_btrfs no_devmapper no_zfs no_aufs"
done
for plugin in "${cni_plugins[@]}"; do
  go_install "cni/${plugin#*/}" "github.com/containernetworking/plugins/plugins/$plugin" "$CNI_PLUGINS_VERSION"
done
build_kubernetes

build_pause() {
  # The pod sandbox's process, compiled from the pause.c that ships in the Kubernetes module, with the flags of
  # its own Makefile: no registry can be reached for registry.k8s.io/pause, so images.py builds the image locally.
  [[ -x "$bin_dir/pause" ]] && return 0
  command -v gcc >/dev/null || { log "gcc (with the static C library) is required for the pause binary"; exit 1; }
  local source
  source="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  log "building pause from k8s.io/kubernetes ${KUBERNETES_VERSION}"
  gcc -Os -Wall -Werror -static "-DVERSION=${KUBERNETES_VERSION}-devcluster" -o "$bin_dir/pause.tmp" \
    "$source/build/pause/linux/pause.c"
  mv "$bin_dir/pause.tmp" "$bin_dir/pause"
}
build_pause
have_all || { log "some binaries are missing from $bin_dir"; exit 1; }
echo "$bin_dir"
