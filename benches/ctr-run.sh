#!/usr/bin/env bash
# End-to-end start latency through containerd: N interleaved `ctr run --rm` per runtime,
# in one private containerd, in one run. Prints median, p90 and the ratio to runc.
#
#   N=20 bash benches/ctr-run.sh        (after `make build test-images`)
#
# Runtimes: Triage running the Wasm hello image, Triage running busybox `true`, runc
# running busybox `true`, and crun (through the runc shim) where crun works on this host.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
N=${N:-20}

if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
  exec "$target/release/triage-containerd" \
    --shim "$target/release/containerd-shim-triage-v1" \
    --import "$root/dist/images/wasm.tar" --import "$root/dist/images/busybox.tar" \
    -- bash "$0" "$@"
fi

declare -A cmd
cmd[triage-wasm]="--runtime io.containerd.triage.v1 triage.test/wasm:latest ID /hello.wasm"
cmd[triage-native]="--runtime io.containerd.triage.v1 triage.test/busybox:latest ID true"
cmd[runc]="--runtime io.containerd.runc.v2 triage.test/busybox:latest ID true"
names=(triage-wasm triage-native runc)
if command -v crun >/dev/null && ctr run --rm --runtime io.containerd.runc.v2 --runc-binary "$(command -v crun)" \
     triage.test/busybox:latest crun-probe true >/dev/null 2>&1; then
  cmd[crun]="--runtime io.containerd.runc.v2 --runc-binary $(command -v crun) triage.test/busybox:latest ID true"
  names+=(crun)
else
  echo "crun: not measured (absent, or it fails on this host)" >&2
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
# Warm-up: one run each (page cache, snapshot of the image).
for name in "${names[@]}"; do
  ctr run --rm ${cmd[$name]//ID/warm-$name} >/dev/null
done
for i in $(seq 1 "$N"); do
  # Rotate the order each round so no runtime always goes first.
  for j in "${!names[@]}"; do
    name=${names[$(( (i + j) % ${#names[@]} ))]}
    start=$(date +%s%N)
    ctr run --rm ${cmd[$name]//ID/bench-$name-$i} >/dev/null
    end=$(date +%s%N)
    echo "$name $(( (end - start) / 1000 ))" >> "$results"
  done
done

stat() { # name -> "median p90" in ms
  grep "^$1 " "$results" | awk '{print $2}' | sort -n | awk '
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          p = v[int(NR * 0.9 + 0.999)]; printf "%.1f %.1f", m / 1000, p / 1000 }'
}
read -r runc_median _ <<<"$(stat runc)"
printf "%-14s %10s %10s %12s   (N=%d, ctr run --rm, interleaved)\n" runtime "median ms" "p90 ms" "vs runc" "$N"
for name in "${names[@]}"; do
  read -r median p90 <<<"$(stat "$name")"
  awk -v n="$name" -v m="$median" -v p="$p90" -v r="$runc_median" \
    'BEGIN { printf "%-14s %10s %10s %11.2fx\n", n, m, p, m / r }'
done
