#!/usr/bin/env bash
# wasi-nn through the whole container path, per backend: (a) one container classifying a
# batch, (b) a container per case with the model preloaded, (c) a 224×224 CNN, (d) the
# same CNN as an HTTP service (the imaging service: `http-classify`, one instance per
# request, the graph built once for the container), loaded by `hey` at 1 and 8 connections.
#
#   N=30 M=200 bash benches/nn.sh        (after `make build test-images`; (d) needs hey)
#
# Backends: tract (built in) and onnxruntime (TRIAGE_ONNXRUNTIME, else the library
# scripts/onnxruntime.sh fetches). The CNN is `light_squeezenet.onnx` from PyPI's `onnx`
# wheel (ONNX's backend test data: SqueezeNet's layers with constant weights), fetched
# once into /var/cache/triage/models. Cases: the digits model's 450 held-out 8×8 images.
# Prints per-case latency inside the guest (set_input..get_output, p50/p99), cases per
# minute inside one container and for the whole `ctr run`, and per-container wall time;
# for the CNN also the graph's set-up at Create, built in the container or taken from the
# node's store of prepared graphs (columns: helper, prepare or map; init, session).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
N=${N:-30}
shim="$target/release/containerd-shim-triage-v1"

if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
  exec "$target/release/triage-containerd" --shim "$shim" --import "$root/dist/images/wasm.tar" \
    --import "$root/dist/images/wasm-components.tar" -- bash "$0" "$@"
fi

M=${M:-200}
work=$(mktemp -d)
service=
cleanup() {
  if [ -n "$service" ]; then
    ctr task kill -s SIGKILL "$service" >/dev/null 2>&1 || true
    ctr task rm -f "$service" >/dev/null 2>&1 || true
    ctr container rm "$service" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
wasm=triage.test/wasm:latest
run=(ctr run --rm --runtime io.containerd.triage.v1)

# The CNN, from the onnx wheel (pip download; nothing else of the wheel is installed).
models=/var/cache/triage/models
squeezenet=$models/light_squeezenet.onnx
if [ ! -f "$squeezenet" ]; then
  mkdir -p "$models" "$work/wheel"
  python3 -m pip download -q onnx==1.23.2 --no-deps --only-binary=:all: -d "$work/wheel"
  python3 - "$work"/wheel/onnx-*.whl "$squeezenet" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("onnx/backend/test/data/light/light_squeezenet.onnx"))
PY
fi

# Cases: digits as PGM images, all in one directory and one per directory; CNN inputs as
# raw float32 3×224×224 images.
python3 - "$root/test-images/models/digits_holdout.csv" "$work" "$N" <<'PY'
import os, random, struct, sys
rows = [l.strip().split(",") for l in open(sys.argv[1]).read().splitlines()[1:] if l.strip()]
work, n = sys.argv[2], int(sys.argv[3])
os.makedirs(f"{work}/digits")
for i, row in enumerate(rows):
    pgm = "P2\n8 8\n16\n" + " ".join(row[1:]) + "\n"
    open(f"{work}/digits/case-{i:03}.pgm", "w").write(pgm)
    if i < n:
        os.makedirs(f"{work}/single/{i:03}")
        open(f"{work}/single/{i:03}/case.pgm", "w").write(pgm)
os.makedirs(f"{work}/cnn/cases")
rng = random.Random(7)
for i in range(n):
    data = struct.pack("<%df" % (3 * 224 * 224), *(rng.random() for _ in range(3 * 224 * 224)))
    open(f"{work}/cnn/cases/img-{i:03}.f32", "wb").write(data)
PY
cp "$squeezenet" "$work/cnn/"

# Percentiles of the numbers on stdin (one per line): "p50 p99 count".
stats() {
  python3 -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
p = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
print(f"{p(0.5):.3f} {p(0.99):.3f} {len(v)}")'
}
now_ms() { date +%s%N | awk '{printf "%.3f", $1 / 1e6}'; }

backends=(tract)
library=${TRIAGE_ONNXRUNTIME:-$(bash "$root/scripts/onnxruntime.sh" 2>/dev/null || true)}
[ -n "$library" ] && [ -f "$library" ] && backends+=(onnxruntime) || echo "onnxruntime: not measured (no library)" >&2

labels="LABELS=0,1,2,3,4,5,6,7,8,9"
digits_preload="triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx"
printf '%-12s %-34s %10s %10s %10s\n' backend measurement p50 p99 rate
for backend in "${backends[@]}"; do
  printf '[nn]\ncpu_backend = "%s"\nonnxruntime = "%s"\n' "$backend" "$library" > "$TRIAGE_CONFIG"

  # (a) One container, 450 cases.
  start=$(now_ms)
  "${run[@]}" --mount "type=bind,src=$work/digits,dst=/cases,options=rbind:ro" \
    --env "$labels" --env TIMING=1 --annotation "$digits_preload" \
    "$wasm" "nn-batch-$backend" /classify.wasm digits /cases > "$work/batch.out" 2> "$work/batch.err"
  wall=$(awk -v a="$start" -v b="$(now_ms)" 'BEGIN {print b - a}')
  cases=$(wc -l < "$work/batch.out")
  read -r p50 p99 _ < <(awk '{print $4 / 1000}' "$work/batch.out" | stats)
  inside=$(awk '{s += $4} END {printf "%.0f", NR / (s / 1e6) * 60}' "$work/batch.out")
  whole=$(awk -v n="$cases" -v w="$wall" 'BEGIN {printf "%.0f", n / (w / 1000) * 60}')
  printf '%-12s %-34s %8sms %8sms %8s/min\n' "$backend" "(a) batch: per case in the guest" "$p50" "$p99" "$inside"
  printf '%-12s %-34s %10s %10s %8s/min\n' "$backend" "(a) batch: whole ctr run ($cases)" "${wall}ms" "" "$whole"

  # (b) A container per case, the model preloaded at Create.
  : > "$work/single.wall"; : > "$work/single.guest"
  for dir in "$work"/single/*; do
    start=$(now_ms)
    "${run[@]}" --mount "type=bind,src=$dir,dst=/cases,options=rbind:ro" \
      --env "$labels" --env TIMING=1 --annotation "$digits_preload" \
      "$wasm" "nn-one-$backend" /classify.wasm digits /cases > "$work/one.out" 2>/dev/null
    awk -v a="$start" -v b="$(now_ms)" 'BEGIN {print b - a}' >> "$work/single.wall"
    awk '{print $4 / 1000}' "$work/one.out" >> "$work/single.guest"
  done
  read -r p50 p99 n < <(stats < "$work/single.guest")
  printf '%-12s %-34s %8sms %8sms\n' "$backend" "(b) per container: case in guest" "$p50" "$p99"
  read -r p50 p99 n < <(stats < "$work/single.wall")
  rate=$(awk -v m="$p50" 'BEGIN {printf "%.0f", 60000 / m}')
  printf '%-12s %-34s %8sms %8sms %8s/min\n' "$backend" "(b) per container: ctr run --rm" "$p50" "$p99" "$rate"

  # (c) The 224×224 CNN, N images in one container.
  cnn() { # ID [ANNOTATION...]: classify the N images in container ID
    local id=$1; shift
    "${run[@]}" --mount "type=bind,src=$work/cnn,dst=/data,options=rbind:ro" \
      --env TIMING=1 --env INPUT_SHAPE=1,3,224,224 \
      --annotation "triage.io/nn-preload=squeezenet:ONNX:CPU:/data/light_squeezenet.onnx" "$@" \
      "$wasm" "$id" /classify.wasm squeezenet /data/cases > "$work/cnn.out" 2> "$work/cnn.err" ||
      { echo "$id failed:" >&2; cat "$work/cnn.err" >&2; grep -F "$id" "$TRIAGE_CONTAINERD_LOG" | tail -5 >&2; return 1; }
  }
  # The ms= of the shim's line MESSAGE for container ID, or "-".
  logged_ms() {
    { grep -F "$1" "$TRIAGE_CONTAINERD_LOG" | grep -o "$2.*" | grep -o 'ms=[0-9.]*' | head -1 | awk -F= '{printf "%.1f", $2}'; } || true
  }
  cnn "nn-cnn-$backend-1"
  read -r p50 p99 n < <(awk '{print $4 / 1000}' "$work/cnn.out" | stats)
  rate=$(awk '{s += $4} END {printf "%.0f", NR / (s / 1e6) * 60}' "$work/cnn.out")
  printf '%-12s %-34s %8sms %8sms %8s/min\n' "$backend" "(c) squeezenet 224x224 ($n)" "$p50" "$p99" "$rate"
  # Its graph at Create: built from the model in the container (artifact cache off), or
  # from the node's store: the first container prepares it (helper), each maps it and
  # makes its session over the mapped bytes (init).
  cnn "nn-cnn-$backend-own" --annotation triage.io/cache=off
  cnn "nn-cnn-$backend-2"
  cnn "nn-cnn-$backend-3"
  printf '%-12s %-34s %9sms\n' "$backend" "(c) graph from the model (cache off)" \
    "$(logged_ms "nn-cnn-$backend-own" 'wasi-nn model preloaded')"
  for i in 1 2 3; do
    stored=$(logged_ms "nn-cnn-$backend-$i" "wasi-nn prepared graph from the node")
    printf '%-12s %-34s %9sms %9sms\n' "$backend" "(c) graph, store: container $i" "${stored:--}" \
      "$(logged_ms "nn-cnn-$backend-$i" 'wasi-nn model preloaded')"
  done
  env_ms=$(logged_ms "nn-cnn-$backend-3" 'onnxruntime environment made')
  [ -z "$env_ms" ] || printf '%-12s %-34s %9s %9sms\n' "$backend" "(c) of which onnxruntime environment" "" "$env_ms"

  # (d) The CNN as an HTTP service on the node's 2 CPUs: M images POSTed as raw floats,
  # each answered by a fresh instance over the container's one graph.
  if ! command -v hey >/dev/null; then
    echo "(d) not measured: hey is not installed (apt-get install hey)" >&2
    continue
  fi
  service="nn-svc-$backend"
  port=18190
  ctr run -d --net-host --cpus 2 --memory-limit $((1 << 30)) --runtime io.containerd.triage.v1 \
    --mount "type=bind,src=$work/cnn,dst=/data,options=rbind:ro" \
    --annotation "triage.io/listen=127.0.0.1:$port" \
    --annotation "triage.io/nn-preload=squeezenet:ONNX:CPU:/data/light_squeezenet.onnx" \
    triage.test/wasm-components:latest "$service" /http-classify.wasm >/dev/null
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/.well-known/triage/health" >/dev/null 2>&1 && break
    sleep 0.05
  done
  for c in 1 8; do
    # hey sends M/c requests per connection; per-request times from its CSV.
    start=$(now_ms)
    hey -n "$M" -c "$c" -o csv -m POST -T application/octet-stream -D "$work/cnn/cases/img-000.f32" \
      -H "x-input-shape: 1,3,224,224" -H "x-input-name: data_0" \
      "http://127.0.0.1:$port/classify/squeezenet" > "$work/hey.csv"
    wall=$(awk -v a="$start" -v b="$(now_ms)" 'BEGIN {print b - a}')
    sent=$(( M / c * c ))
    ok=$(awk -F, 'NR > 1 && $7 == 200' "$work/hey.csv" | wc -l)
    [ "$ok" = "$sent" ] || { echo "(d) -c $c: $ok of $sent answers were 200" >&2; head -5 "$work/hey.csv" >&2; exit 1; }
    read -r p50 p99 _ < <(awk -F, 'NR > 1 {print $1 * 1000}' "$work/hey.csv" | stats)
    rate=$(awk -v n="$ok" -v w="$wall" 'BEGIN {printf "%.0f", n / (w / 1000) * 60}')
    printf '%-12s %-34s %8sms %8sms %8s/min\n' "$backend" "(d) squeezenet over HTTP, -c $c" "$p50" "$p99" "$rate"
  done
  ctr task kill -s SIGKILL "$service" >/dev/null 2>&1 || true
  ctr task rm -f "$service" >/dev/null 2>&1 || true
  ctr container rm "$service" >/dev/null 2>&1 || true
  service=
done
