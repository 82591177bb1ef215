#!/usr/bin/env bash
# Pod start and teardown through containerd's CRI plugin (what kubelet/K3s do): Triage's
# handler running the Wasm hello module vs runc's handler running busybox `true`,
# N interleaved samples each in one private containerd. Prints medians, p90 and ratios.
#
#   N=20 bash benches/pod-start.sh        (after `make build test-images`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
exec "$target/release/triage-pod-bench" "$target/release/containerd-shim-triage-v1" "$root/dist/images" "${N:-20}"
