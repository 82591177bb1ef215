#!/usr/bin/env bash
# Both engines, same machine, same run, inside the Debian 13 root (scripts/trixie.sh; Debian 12
# has no libwasmedge):
#  1. the in-process benches (wasm_start, wasm_throughput): a release build with wasmtime and
#     WasmEdge, one bench process per engine, then every bench's median side by side with the
#     ratio WasmEdge / wasmtime and each engine's against the same kernel compiled natively;
#  2. whole starts through containerd (benches/ctr-run.sh): the shim with both engines, built
#     in the root, under a private containerd there (the host's containerd, ctr and runc,
#     which run on trixie's newer glibc): Wasm hello on each engine, busybox on Triage and runc.
#
#   make bench-wasmedge          (root; builds the workloads and the root first)
#
# Environment: TRIAGE_WASM_DIR (the built workloads), TRIXIE_TARGET_DIR (the root's target
# dir), HOST_RELEASE (the host build's release dir, for triage-containerd), BENCHES
# ("wasm_start wasm_throughput"; empty skips part 1), JOBS (2), CRITERION_ARGS (passed to each bench binary, e.g.
# a name filter), N (ctr runs per runtime, 20; N=0 skips part 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
wasm_dir=${TRIAGE_WASM_DIR:?TRIAGE_WASM_DIR must name the built workloads (make test-images)}
target=${TRIXIE_TARGET_DIR:?TRIXIE_TARGET_DIR must name the trixie build\'s target dir}
benches=${BENCHES-wasm_start wasm_throughput}
jobs=${JOBS:-2}
host_release=${HOST_RELEASE:?HOST_RELEASE must name the host build\'s release dir (make build)}
N=${N:-20}

in_trixie() {
  CARGO_TARGET_DIR=$target TRIXIE_BIND=$wasm_dir TRIXIE_ENV="TRIAGE_WASM_DIR=$wasm_dir $1" \
    bash "$root/scripts/trixie.sh" run "${@:2}"
}

in_process() {
  bench_args=()
  for bench in $benches; do bench_args+=(--bench "$bench"); done
  build=(cargo bench --offline -j "$jobs" -p triage-benches --features wasmedge "${bench_args[@]}")

  # Criterion keeps each bench's last run; a fresh directory holds only this run's.
  rm -rf "$target/criterion"
  started=$SECONDS
  in_trixie "" "${build[@]}" --no-run
  echo "engines: benches built in $((SECONDS - started)) s"
  for engine in wasmtime wasmedge; do
    echo "engines: running the benches on $engine"
    # shellcheck disable=SC2086  # CRITERION_ARGS is a list of words
    in_trixie "TRIAGE_BENCH_ENGINE=$engine" "${build[@]}" -- ${CRITERION_ARGS:-}
  done

  # Medians from criterion's estimates: <group>/<engine or native>/new/estimates.json.
  python3 - "$target/criterion" <<'PY'
import json, pathlib, sys

root = pathlib.Path(sys.argv[1])
medians = {}
for est in sorted(root.rglob("new/estimates.json")):
    function = est.parent.parent.name
    group = est.parent.parent.parent.relative_to(root).as_posix()
    medians.setdefault(group, {})[function] = json.loads(est.read_text())["median"]["point_estimate"]

def show(ns):
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"

def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"

engines = ("wasmtime", "wasmedge")
print("\n| bench | wasmtime | WasmEdge | WasmEdge / wasmtime | native beside wasmtime / WasmEdge | wasmtime / native | WasmEdge / native |")
print("|---|---|---|---|---|---|---|")
for group, by in sorted(medians.items()):
    wt, we = by.get("wasmtime"), by.get("wasmedge")
    nt, ne = by.get("native_beside_wasmtime"), by.get("native_beside_wasmedge")
    if wt or we:
        native = f"{show(nt)} / {show(ne)}" if nt or ne else "-"
        print(f"| {group} | {show(wt)} | {show(we)} | {ratio(we, wt)} | {native} | {ratio(wt, nt)} | {ratio(we, ne)} |")
    for name, ns in sorted(by.items()):
        if name not in engines and not name.startswith("native_beside_"):
            print(f"| {group}/{name} | {show(ns)} | | | | | |")
print("\n(median of each bench; criterion's reports are in " + str(root) + ")")
PY
}

[ -z "$benches" ] || in_process
[ "$N" -gt 0 ] || exit 0
in_trixie "" cargo build --offline --release -j "$jobs" -p triage-shim --features wasmedge
host_bin=$target/host-bin
rm -rf "$host_bin" && mkdir -p "$host_bin"
for tool in containerd ctr containerd-shim-runc-v2 runc; do
  cp "$(command -v "$tool")" "$host_bin/"
done
cp "$host_release/triage-containerd" "$host_bin/"
echo "engines: ctr run --rm, N=$N per runtime"
in_trixie "" env PATH="$host_bin:/usr/bin:/bin" N="$N" \
  SHIM="$target/release/containerd-shim-triage-v1" TRIAGE_CONTAINERD="$host_bin/triage-containerd" \
  ONLY="triage-warm triage-wasmedge triage-native runc" bash benches/ctr-run.sh
