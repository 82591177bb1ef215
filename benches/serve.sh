#!/usr/bin/env bash
# HTTP throughput of a Wasm service through Triage against a native server in runc, in the
# same run: the hello handler (`test-images/wasm/serve`, one instance per request from the
# instance pool) and `triage-native-hello` (`test-images/native-hello`: hyper, HTTP/1.1 and
# h2c, the same greeting), both with 2 CPUs and 1 GiB, host network, 127.0.0.1, one
# private containerd. Loads: `hey -n N -c 50` (runwasi's published figure) and `-c 1`;
# `wrk` at 50 and 1 connections; `h2load` (h2c) at 50 connections. The CPU the load
# generator itself used is printed beside each result: on 2 cores it shares them with the
# server, and a tool near 100% of a core is what limits the figure.
#
#   bash benches/serve.sh          (after `make build test-images`; needs hey, wrk, h2load)
#   N=100000 N1=5000 D=10s bash benches/serve.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$( [ -w /var/cache ] && echo /var/cache/triage/target || echo "$root/target")}
shim=${SHIM:-$target/release/containerd-shim-triage-v1}
private_containerd=${TRIAGE_CONTAINERD:-$target/release/triage-containerd}
for tool in hey wrk h2load; do
  command -v $tool >/dev/null || { echo "$tool is not installed (apt-get install hey wrk nghttp2-client)" >&2; exit 2; }
done

if [ -z "${CONTAINERD_ADDRESS:-}" ]; then
  shims=$(mktemp -d)
  trap 'rm -rf "$shims"' EXIT
  ln -s "$shim" "$shims/containerd-shim-triage-v1"
  status=0
  "$private_containerd" --shim "$shims/containerd-shim-triage-v1" \
    --import "$root/dist/images/wasm-components.tar" --import "$root/dist/images/native-hello.tar" \
    -- bash "$0" "$@" || status=$?
  exit $status
fi

N=${N:-100000}
N1=${N1:-5000}
D=${D:-10s}
wasm_port=18180
native_port=18181
limits=(--cpus 2 --memory-limit $((1 << 30)))

ctr run -d --net-host "${limits[@]}" --runtime io.containerd.triage.v1 \
  --annotation "triage.io/listen=127.0.0.1:$wasm_port" \
  triage.test/wasm-components:latest bench-serve-wasm /http-hello.wasm >/dev/null
ctr run -d --net-host "${limits[@]}" --runtime io.containerd.runc.v2 \
  triage.test/native-hello:latest bench-serve-native /native-hello "127.0.0.1:$native_port" 2 >/dev/null
cleanup() {
  for id in bench-serve-wasm bench-serve-native; do
    ctr task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    ctr task rm -f "$id" >/dev/null 2>&1 || true
    ctr container rm "$id" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
for port in $wasm_port $native_port; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    sleep 0.05
  done
done

# Runs a load generator; prints its output, then "cpu=P" (its own CPU, % of one core).
timed() {
  local out status
  out=$( { /usr/bin/time -f 'cpu=%P' "$@"; } 2>&1 ) || status=$?
  printf '%s\n' "$out"
  return "${status:-0}"
}

row() { # tool server connections req/s p50 p95 p99 errors cpu
  printf "%-7s %-7s c=%-3s %9.0f req/s  p50 %6.2f  p95 %6s  p99 %6s ms  errors %s  tool cpu %s\n" "$@"
}

hey_run() { # server url requests connections
  timed hey -n "$3" -c "$4" "$2" | awk -v server="$1" -v c="$4" '
    /Requests\/sec:/ { rps = $2 }
    /^  50% in/ { p50 = $3 * 1000 } /^  95% in/ { p95 = $3 * 1000 } /^  99% in/ { p99 = $3 * 1000 }
    /^  \[[3-5][0-9][0-9]\]/ { bad += $2 } /^cpu=/ { sub("cpu=", ""); cpu = $0 }
    END { printf "hey %s %s %s %s %.2f %.2f %s %s\n", server, c, rps, p50, p95, p99, bad + 0, cpu }'
}

wrk_run() { # server url connections
  local threads=$(( $3 < 2 ? 1 : 2 ))
  timed wrk -t "$threads" -c "$3" -d "$D" --latency "$2" | awk -v server="$1" -v c="$3" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Non-2xx|Socket errors/ { bad = bad $0 } /^cpu=/ { sub("cpu=", ""); cpu = $0 }
    END { printf "wrk %s %s %s %s - %.2f %s %s\n", server, c, rps, p50, p99, (bad == "" ? 0 : 1), cpu }'
}

h2load_run() { # server url requests connections (h2c, prior knowledge)
  timed h2load -n "$3" -c "$4" "$2" | awk -v server="$1" -v c="$4" '
    /^finished in/ { rps = $4 + 0 }
    /^time for request:/ { mean = $5 }
    /^requests:/ { bad = $10 + $12 } /^cpu=/ { sub("cpu=", ""); cpu = $0 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "h2load %s %s %s %.2f - - %s %s\n", server, c, rps, ms(mean), bad + 0, cpu }'
}

# Warm-up, then each load on both, interleaved.
hey -n 2000 -c 10 "http://127.0.0.1:$wasm_port/" >/dev/null
hey -n 2000 -c 10 "http://127.0.0.1:$native_port/" >/dev/null
results=$(mktemp)
{
  for server in triage native; do
    port=$([ $server = triage ] && echo $wasm_port || echo $native_port)
    hey_run $server "http://127.0.0.1:$port/" "$N" 50
  done
  for server in triage native; do
    port=$([ $server = triage ] && echo $wasm_port || echo $native_port)
    hey_run $server "http://127.0.0.1:$port/" "$N1" 1
  done
  for c in 50 1; do
    for server in triage native; do
      port=$([ $server = triage ] && echo $wasm_port || echo $native_port)
      wrk_run $server "http://127.0.0.1:$port/" $c
    done
  done
  for server in triage native; do
    port=$([ $server = triage ] && echo $wasm_port || echo $native_port)
    h2load_run $server "http://127.0.0.1:$port/" "$N" 50
  done
} > "$results"
echo "tool    server  conns      req/s        p50 ms   p95 ms   p99 ms (h2load: mean ms)"
while read -r tool server c rps p50 p95 p99 bad cpu; do
  row "$tool" "$server" "$c" "$rps" "$p50" "$p95" "$p99" "$bad" "$cpu"
done < "$results"
awk '{ rps[$1 " c=" $3, $2] = $4; keys[$1 " c=" $3] = 1 }
     END { for (k in keys) if (rps[k, "native"] > 0)
             printf "ratio %-13s triage %.2fx the native server'"'"'s req/s\n", k, rps[k, "triage"] / rps[k, "native"] }' "$results" | sort
rm -f "$results"
