#!/usr/bin/env bash
# A Debian 13 (trixie) root with libwasmedge-dev, made with debootstrap and kept between runs,
# where the WasmEdge engine is built and tested (Debian 12 has no libwasmedge).
#
#   scripts/trixie.sh check          exit 0 if a root can be made or used here, else say why
#   scripts/trixie.sh ensure         make the root (once; again when the package list changes)
#   scripts/trixie.sh run CMD...     run CMD inside it, as root, in a private mount namespace
#
# `run` binds the repository, cargo's and rustup's homes, $CARGO_TARGET_DIR (the trixie build's
# own target dir) and each directory of $TRIXIE_BIND (colon-separated) at their host paths; the
# mounts vanish with the command. Environment: TRIXIE_ROOT (default /var/cache/triage/trixie),
# TRIXIE_MIRROR (default: the Debian archive of this host's APT sources, scripts/apt-mirror.sh).
set -euo pipefail

ROOT=${TRIXIE_ROOT:-/var/cache/triage/trixie}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# Building runtime with the WasmEdge engine: libwasmedge's headers and library, libclang for
# wasmedge-sys's bindgen, a C toolchain for build scripts, libseccomp for libcontainer, protoc
# for the test kit's containerd client (a dev-dependency).
PACKAGES=(libwasmedge-dev libclang-dev build-essential libseccomp-dev pkg-config ca-certificates protobuf-compiler)
STAMP="$ROOT/.triage-packages"

usable() {
  if [ "$(id -u)" != 0 ]; then
    echo "not root: debootstrap and chroot need root"
    return 1
  fi
  if ! command -v debootstrap >/dev/null; then
    echo "debootstrap is not installed (apt-get install debootstrap)"
    return 1
  fi
  if ! command -v unshare >/dev/null; then
    echo "unshare (util-linux) is not installed"
    return 1
  fi
  return 0
}

ensure() {
  usable >/dev/null || { echo "trixie: $(usable)" >&2; exit 1; }
  local wanted
  wanted="${PACKAGES[*]}"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    return 0
  fi
  local started=$SECONDS
  if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ -d "$ROOT/debootstrap" ]; then
    local MIRROR
    MIRROR=${TRIXIE_MIRROR:-$(bash "$REPO/scripts/apt-mirror.sh")}
    echo "trixie: debootstrap into $ROOT (minbase, from $MIRROR)"
    rm -rf "$ROOT"
    mkdir -p "$(dirname "$ROOT")"
    # debootstrap mounts /proc and /sys in the target; a private namespace drops them after.
    unshare --mount --propagation private \
      debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
      tail -20 "$ROOT.debootstrap.log" >&2
      exit 1
    }
  fi
  echo "trixie: apt-get install ${PACKAGES[*]}"
  # debootstrap's resolver cannot install libwasmedge0's dependencies itself: apt-get does.
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  unshare --mount --propagation private bash -euo pipefail -c '
    mount -t proc proc "$1/proc"
    shift
    root=$1; shift
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    chroot "$root" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    chroot "$root" apt-get clean
  ' _ "$ROOT" "$ROOT" "${PACKAGES[@]}"
  echo "$wanted" >"$STAMP"
  echo "trixie: ready in $((SECONDS - started)) s ($(chroot "$ROOT" dpkg-query -W -f '${Package} ${Version}' libwasmedge0))"
}

run() {
  [ -f "$STAMP" ] || { echo "trixie: no root at $ROOT (run: $0 ensure)" >&2; exit 1; }
  local cargo_home=${CARGO_HOME:-$HOME/.cargo} rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  local target=${CARGO_TARGET_DIR:?CARGO_TARGET_DIR must name the trixie build\'s target dir}
  mkdir -p "$target"
  local binds=("$REPO" "$cargo_home" "$rustup_home" "$target")
  local extra
  IFS=: read -r -a extra <<<"${TRIXIE_BIND:-}"
  for dir in "${extra[@]}"; do [ -n "$dir" ] && binds+=("$dir"); done
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # The command sees the host's /dev, /sys (cgroups) and a fresh /proc, as containers need.
  # The root is bound onto itself first: libcontainer changes the propagation of "/" and
  # pivots out of it, which needs "/" to be a mount point.
  unshare --mount --propagation private bash -euo pipefail -c '
    root=$1; shift
    mount --rbind "$root" "$root"
    # A fresh /tmp first: the binds below may lie under /tmp (a clone in /tmp/…).
    mkdir -p "$root/tmp" && mount -t tmpfs tmpfs "$root/tmp"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    n=$1; shift
    for ((i = 0; i < n; i++)); do
      mkdir -p "$root$1"
      mount --rbind "$1" "$root$1"
      shift
    done
    exec chroot "$root" "$@"
  ' _ "$ROOT" "${#binds[@]}" "${binds[@]}" \
    env -i PATH="$cargo_home/bin:/usr/local/bin:/usr/bin:/bin" HOME="${HOME:-/root}" \
    CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" CARGO_TARGET_DIR="$target" \
    WASMEDGE_INCLUDE_DIR=/usr/include WASMEDGE_LIB_DIR=/usr/lib/x86_64-linux-gnu \
    LIBCLANG_PATH=/usr/lib/llvm-19/lib CI="${CI:-}" TERM=dumb \
    ${TRIXIE_ENV:-} bash -c 'cd "$0" && exec "$@"' "$REPO" "$@"
}

case "${1:-}" in
  check)
    reason=$(usable) || { echo "$reason"; exit 1; }
    ;;
  ensure) ensure ;;
  run)
    shift
    run "$@"
    ;;
  *)
    echo "usage: $0 check | ensure | run CMD..." >&2
    exit 2
    ;;
esac
