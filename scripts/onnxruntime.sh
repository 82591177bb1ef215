#!/usr/bin/env bash
# Fetches the pinned ONNX Runtime library (libonnxruntime.so from PyPI's CPU wheel) into DIR (default /var/cache/triage/onnxruntime) and prints its path.
#
# Usage: scripts/onnxruntime.sh [DIR]
# Needs curl, sha256sum and python3 (only its zipfile module; no pip). Idempotent: a library
# already in DIR with the pinned digest is kept. Tests find it through TRIAGE_ONNXRUNTIME:
#   export TRIAGE_ONNXRUNTIME="$(scripts/onnxruntime.sh)"
set -euo pipefail

# The version test-images/models/requirements.txt verified the model fixtures with.
VERSION=1.32.0
# The manylinux x86_64 wheel; the library inside is the same for every cp3x wheel of a release.
WHEEL=onnxruntime-${VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl
URL=https://files.pythonhosted.org/packages/1d/46/e6f356c9539d2eed44126de3421a81e217da2ad91b22dc11b379cb1e384f/${WHEEL}
WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
MEMBER=onnxruntime/capi/libonnxruntime.so.${VERSION}
LIB_SHA256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

dest=${1:-/var/cache/triage/onnxruntime}
lib=$dest/libonnxruntime.so.$VERSION

if [ -f "$lib" ] && echo "$LIB_SHA256  $lib" | sha256sum --check --status; then
  echo "$lib"
  exit 0
fi

if [ "$(uname -m)" != x86_64 ]; then
  echo "onnxruntime.sh: the pinned wheel is for x86_64, this machine is $(uname -m)" >&2
  exit 1
fi

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "onnxruntime.sh: downloading $WHEEL" >&2
curl -sSfL --retry 3 -o "$tmp/$WHEEL" "$URL"
if ! echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --status; then
  echo "onnxruntime.sh: $WHEEL does not have the pinned sha256 $WHEEL_SHA256" >&2
  exit 1
fi

python3 - "$tmp/$WHEEL" "$MEMBER" "$tmp/lib" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
if ! echo "$LIB_SHA256  $tmp/lib" | sha256sum --check --status; then
  echo "onnxruntime.sh: $MEMBER in $WHEEL does not have the pinned sha256 $LIB_SHA256" >&2
  exit 1
fi
chmod 0644 "$tmp/lib"
mv -f "$tmp/lib" "$lib"
echo "$lib"
