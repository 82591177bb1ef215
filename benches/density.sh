#!/usr/bin/env bash
# Density on a simulated 4C8G edge node: how many idle containers fit in 8 GiB.
#
#   K=20 bash benches/density.sh        (after `make build test-images`; needs root)
#
# For each kind — Triage running an idle Wasm guest (/sleeper.wasm, blocked in the
# host), Triage running busybox `sleep`, runc running busybox `sleep`, and idle services:
# Triage serving the Wasm hello component, runc running the native hyper hello server
# (each answered one request first, then left idle) — it starts K detached containers in
# one private containerd and measures
#   * the cgroup memory accounting: containerd and its shims live in a cgroup of their
#     own (charged above containerd's own baseline), each container in its own cgroup;
#   * PSS (proportional set size, /proc/PID/smaps_rollup) of each container's shim plus
#     every process of its container.
# "fit in 8 GiB" divides the node's allocatable memory (8 GiB less the node profile's
# 512 MiB system reserve, less containerd's baseline) by the per-container figure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
K=${K:-20}
NODE_BYTES=$((8 << 30))
RESERVE_BYTES=$((512 << 20))

# cgroup memory files, v1 (memory hierarchy) or v2.
if [ -f /sys/fs/cgroup/memory/memory.usage_in_bytes ]; then
  MEMROOT=/sys/fs/cgroup/memory USAGE=memory.usage_in_bytes
else
  MEMROOT=/sys/fs/cgroup USAGE=memory.current
fi

if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
  # containerd and every shim it starts are charged to this cgroup.
  group="$MEMROOT/triage-density-$$"
  mkdir -p "$group"
  cleanup_group() { rmdir "$group" 2>/dev/null || true; }
  trap cleanup_group EXIT
  echo $$ > "$group/cgroup.procs"
  export DENSITY_GROUP=$group
  status=0
  "$target/release/triage-containerd" \
    --shim "$target/release/containerd-shim-triage-v1" \
    --import "$root/dist/images/wasm.tar" --import "$root/dist/images/busybox.tar" \
    --import "$root/dist/images/wasm-components.tar" --import "$root/dist/images/native-hello.tar" \
    -- bash "$0" "$@" || status=$?
  # Leave the cgroup before removing it.
  echo $$ > "$MEMROOT/cgroup.procs"
  exit $status
fi

usage() { cat "$1/$USAGE"; }
pss_kib() { # pids... -> summed Pss in KiB
  local total=0 pid kib
  for pid in "$@"; do
    kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}
container_group() { # id -> its memory cgroup directory
  local pid
  pid=$(ctr task ls | awk -v id="$1" '$1 == id {print $2}')
  if [ "$MEMROOT" = /sys/fs/cgroup/memory ]; then
    echo "$MEMROOT$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$pid/cgroup")"
  else
    echo "$MEMROOT$(awk -F: '$1 == 0 {print $3}' "/proc/$pid/cgroup")"
  fi
}

declare -A cmd
cmd[triage-wasm]="--runtime io.containerd.triage.v1 triage.test/wasm:latest ID /sleeper.wasm"
cmd[triage-native]="--runtime io.containerd.triage.v1 triage.test/busybox:latest ID sleep 86400"
cmd[runc-native]="--runtime io.containerd.runc.v2 triage.test/busybox:latest ID sleep 86400"
cmd[triage-service]="--net-host --runtime io.containerd.triage.v1 --annotation triage.io/listen=127.0.0.1:PORT triage.test/wasm-components:latest ID /http-hello.wasm"
cmd[runc-service]="--net-host --runtime io.containerd.runc.v2 triage.test/native-hello:latest ID /native-hello 127.0.0.1:PORT 1"
names=(triage-wasm triage-native runc-native triage-service runc-service)

sleep 1
baseline=$(usage "$DENSITY_GROUP")
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "containerd baseline: $(mib "$baseline") MiB (cgroup accounting)"
printf "%-14s %4s %14s %14s %12s %12s\n" kind K "cgroup/ctr MiB" "PSS/ctr MiB" "fit (cgroup)" "fit (PSS)"
kind=0
for name in "${names[@]}"; do
  kind=$((kind + 1))
  ids=()
  ports=()
  for i in $(seq 1 "$K"); do
    id="density-$name-$i"
    port=$((19000 + kind * 500 + i))
    args=${cmd[$name]//ID/$id}
    ctr run -d --null-io ${args//PORT/$port} >/dev/null
    ids+=("$id")
    [[ ${cmd[$name]} == *PORT* ]] && ports+=("$port")
  done
  for id in "${ids[@]}"; do
    until ctr task ls | awk -v id="$id" '$1 == id && $3 == "RUNNING" {ok=1} END {exit !ok}'; do
      sleep 0.05
    done
  done
  for port in "${ports[@]}"; do # a service answers once, then idles
    until curl -sf "http://127.0.0.1:$port/" >/dev/null; do sleep 0.05; done
  done
  sleep 2 # let start-up buffers be freed and the guests block
  shims=$(usage "$DENSITY_GROUP")
  containers=0
  pss=0
  for id in "${ids[@]}"; do
    group=$(container_group "$id")
    containers=$((containers + $(usage "$group")))
    shim=$(pgrep -f -- "-namespace $CONTAINERD_NAMESPACE -id $id( |$)" || true)
    # shellcheck disable=SC2046
    pss=$((pss + $(pss_kib $shim $(cat "$group/cgroup.procs"))))
  done
  per_cgroup=$(( (shims - baseline + containers) / K ))
  per_pss=$(( pss * 1024 / K ))
  room=$(( NODE_BYTES - RESERVE_BYTES - baseline ))
  printf "%-14s %4d %14s %14s %12d %12d\n" "$name" "$K" "$(mib "$per_cgroup")" "$(mib "$per_pss")" \
    $(( room / per_cgroup )) $(( room / per_pss ))
  for id in "${ids[@]}"; do
    ctr task kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in "${ids[@]}"; do
    until ctr task rm "$id" >/dev/null 2>&1 || ! ctr task ls | grep -q "^$id "; do sleep 0.05; done
    ctr container rm "$id" >/dev/null
  done
done
