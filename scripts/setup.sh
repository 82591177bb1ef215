#!/usr/bin/env bash
# Installs what building and testing Triage needs on Debian 12 (idempotent; run as root).
set -euo pipefail

packages=(containerd runc libseccomp-dev pkg-config busybox-static protobuf-compiler containernetworking-plugins iproute2 bsdutils curl ca-certificates python3 debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for target in wasm32-wasip1 wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "setup: adding the $target Rust target"
    rustup target add "$target"
  fi
done
