#!/usr/bin/env bash
# Installs the Debian packages the real worker node and the image builds need, when one is missing:
#   runc, iptables, conntrack, nftables, socat  the node (container runtime, kube-proxy, the apiserver forwarder)
#   buildah, mmdebstrap                           `make images` (no Docker engine; the base rootfs from Debian)
# A machine that has them all pays nothing; one that lacks some needs root (or sudo) and Debian's apt.
set -euo pipefail

declare -A package_of=(
  [runc]=runc [iptables]=iptables [conntrack]=conntrack [nft]=nftables [socat]=socat
  [buildah]=buildah [mmdebstrap]=mmdebstrap
)
missing=()
for command in "${!package_of[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null || missing+=("${package_of[$command]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-host-packages: installing ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
