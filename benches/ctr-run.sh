#!/usr/bin/env bash
# End-to-end start latency through containerd: N interleaved `ctr run --rm` per runtime,
# in one private containerd, in one run. Prints median, p90 and the ratio to runc.
#
#   N=20 bash benches/ctr-run.sh        (after `make build test-images`)
#
# Runtimes measured:
#   triage-cold      Triage, Wasm hello, with an empty artifact cache each run (compile + store)
#   triage-warm      Triage, Wasm hello, module in the artifact cache (the usual case)
#   triage-snapshot  Triage, a guest with 16 MiB / ~0.1 s of init, started from its snapshot
#   triage-noinit    the same guest with `triage.io/snapshot=off` (init in every container)
#   triage-wasmedge  Triage, Wasm hello on the WasmEdge engine (warm cache), where the shim has it
#   triage-native    Triage, busybox `true`
#   runc             runc, busybox `true`
#   crun             crun through the runc shim, busybox `true`, where crun works on this host
#
# Other shims to compare against, by path (space separated); each runs as the runtime its
# file name says (containerd-shim-NAME-v1 -> io.containerd.NAME.v1):
#   ANCHOR_SHIMS="/opt/runwasi/containerd-shim-wasmtime-v1"
# Image per runtime: IMAGE_<name>="REF ARGS..." (name with - as _), e.g.
#   IMAGE_wasmtime="ghcr.io/containerd/runwasi/wasi-demo-app:latest /wasi-demo-app.wasm"
# with the image's OCI archive in IMPORTS="/path/a.tar /path/b.tar". Anchors default to
# Triage's Wasm hello image. ONLY="runc triage-warm" limits the runtimes measured.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
N=${N:-20}
# SHIM and TRIAGE_CONTAINERD name other builds (make bench-wasmedge: the shim with WasmEdge).
shim=${SHIM:-$target/release/containerd-shim-triage-v1}
private_containerd=${TRIAGE_CONTAINERD:-$target/release/triage-containerd}

if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
  # The private containerd finds every shim in one directory on its PATH.
  shims=$(mktemp -d)
  trap 'rm -rf "$shims"' EXIT
  ln -s "$shim" "$shims/containerd-shim-triage-v1"
  for anchor in ${ANCHOR_SHIMS:-}; do
    [ -x "$anchor" ] || { echo "ANCHOR_SHIMS: $anchor is not an executable" >&2; exit 2; }
    ln -s "$(readlink -f "$anchor")" "$shims/$(basename "$anchor")"
  done
  imports=()
  for archive in "$root/dist/images/wasm.tar" "$root/dist/images/busybox.tar" ${IMPORTS:-}; do
    imports+=(--import "$archive")
  done
  status=0
  "$private_containerd" --shim "$shims/containerd-shim-triage-v1" "${imports[@]}" \
    -- bash "$0" "$@" || status=$?
  exit $status
fi

wasm=triage.test/wasm:latest
busybox=triage.test/busybox:latest
declare -A cmd image
cmd[triage-cold]="--runtime io.containerd.triage.v1"
cmd[triage-warm]="--runtime io.containerd.triage.v1"
cmd[triage-snapshot]="--runtime io.containerd.triage.v1"
cmd[triage-noinit]="--runtime io.containerd.triage.v1 --annotation triage.io/snapshot=off"
cmd[triage-native]="--runtime io.containerd.triage.v1"
cmd[runc]="--runtime io.containerd.runc.v2"
image[triage-cold]="$wasm /hello.wasm"
image[triage-warm]="$wasm /hello.wasm"
image[triage-snapshot]="$wasm /snapinit.wasm"
image[triage-noinit]="$wasm /snapinit.wasm"
image[triage-native]="$busybox true"
image[runc]="$busybox true"
names=(triage-cold triage-warm triage-snapshot triage-noinit triage-native runc)
if ctr run --rm --runtime io.containerd.triage.v1 --annotation triage.io/engine=wasmedge \
     "$wasm" wasmedge-probe /hello.wasm >/dev/null 2>&1; then
  cmd[triage-wasmedge]="--runtime io.containerd.triage.v1 --annotation triage.io/engine=wasmedge"
  image[triage-wasmedge]="$wasm /hello.wasm"
  names+=(triage-wasmedge)
else
  echo "triage-wasmedge: not measured (this shim has no WasmEdge engine; make bench-wasmedge has)" >&2
fi
if command -v crun >/dev/null && ctr run --rm --runtime io.containerd.runc.v2 --runc-binary "$(command -v crun)" \
     "$busybox" crun-probe true >/dev/null 2>&1; then
  cmd[crun]="--runtime io.containerd.runc.v2 --runc-binary $(command -v crun)"
  image[crun]="$busybox true"
  names+=(crun)
else
  echo "crun: not measured (absent, or it fails on this host)" >&2
fi
for anchor in ${ANCHOR_SHIMS:-}; do
  base=$(basename "$anchor")                 # containerd-shim-NAME-v1
  name=${base#containerd-shim-}; name=${name%-v*}
  version=${base##*-}
  cmd[$name]="--runtime io.containerd.$name.$version"
  image[$name]="$wasm /hello.wasm"
  names+=("$name")
done
for name in "${names[@]}"; do
  override="IMAGE_${name//-/_}"
  [ -n "${!override:-}" ] && image[$name]=${!override}
done
if [ -n "${ONLY:-}" ]; then
  read -r -a names <<<"$ONLY"
fi

run() { # name id -> runs one container, its output discarded; fails loudly
  local name=$1 id=$2 ref args
  read -r ref args <<<"${image[$name]}"
  # shellcheck disable=SC2086 # the command words are meant to split
  ctr run --rm ${cmd[$name]} "$ref" "$id" $args >/dev/null ||
    { echo "$name: ctr run of $id failed" >&2; exit 1; }
}

results=$(mktemp)
cold_cache=$(mktemp -d)
trap 'rm -rf "$results" "$cold_cache"' EXIT
# Warm-up: one run each (page cache, snapshot of the image, the cache entries).
for name in "${names[@]}"; do
  run "$name" "warm-$name"
done
for i in $(seq 1 "$N"); do
  # Rotate the order each round so no runtime always goes first.
  for j in "${!names[@]}"; do
    name=${names[$(( (i + j) % ${#names[@]} ))]}
    if [ "$name" = triage-cold ]; then
      # An empty cache of its own (node profile [wasm] cache), set up outside the timed
      # window; the other runtimes keep the shared, warm one.
      rm -rf "$cold_cache"
      printf '[wasm]\ncache = "%s"\n' "$cold_cache" > "$TRIAGE_CONFIG"
    fi
    start=$(date +%s%N)
    run "$name" "bench-$name-$i"
    end=$(date +%s%N)
    if [ "$name" = triage-cold ]; then rm -f "$TRIAGE_CONFIG"; fi
    echo "$name $(( (end - start) / 1000 ))" >> "$results"
  done
done

stat() { # name -> "median p90" in ms
  grep "^$1 " "$results" | awk '{print $2}' | sort -n | awk '
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          p = v[int(NR * 0.9 + 0.999)]; printf "%.1f %.1f", m / 1000, p / 1000 }'
}
runc_median=
if grep -q "^runc " "$results"; then read -r runc_median _ <<<"$(stat runc)"; fi
printf "%-16s %10s %10s %10s   (N=%d, ctr run --rm, interleaved)\n" runtime "median ms" "p90 ms" "vs runc" "$N"
for name in "${names[@]}"; do
  read -r median p90 <<<"$(stat "$name")"
  awk -v n="$name" -v m="$median" -v p="$p90" -v r="$runc_median" \
    'BEGIN { if (r == "") printf "%-16s %10s %10s %10s\n", n, m, p, "-";
             else printf "%-16s %10s %10s %9.2fx\n", n, m, p, m / r }'
done
