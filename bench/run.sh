#!/usr/bin/env bash
# One command, one run: `npm run bench` (or `bash bench/run.sh`).
#  1. builds the deploy bundle with `wrangler deploy --dry-run --outdir bench/.out/bundle`
#  2. runs the native micro-benchmarks (`cargo bench --bench core`) → bench/.out/native.md
#  3. serves the bundle, a JS pass-through Worker, a fixed-response Worker and an in-memory KV
#     service on raw workerd, loads them (and the upstream directly, and both Workers under
#     `wrangler dev`) → bench/results/latest.md, printed at the end.
# Knobs (env): BENCH_ONLY=<row ids> BENCH_DURATION=5 BENCH_WARMUP=1 BENCH_CONNECTIONS=1,32 BENCH_STREAM_EVENTS=32
#   BENCH_WRANGLER_DEV=1 BENCH_DEV_DURATION=4 BENCH_NATIVE=1 BENCH_NATIVE_MS=300
#   BENCH_PORT_BASE=18700 BENCH_MAX_BUSY=0.25 BENCH_WAIT_IDLE=120 BENCH_SKIP_BUILD=0 BENCH_V8_FLAGS=
#   BENCH_WORKERD=<path of another workerd binary> BENCH_ROUNDS=1 (rounds over every row; medians)
#   BENCH_PROFILE=<row ids>  (default: the JSON and streaming rows of the gateway and the
#   pass-through, when `perf` is installed; BENCH_PROFILE= (empty) skips profiling)
# All traffic goes to 127.0.0.1; every load run is bounded by BENCH_DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false
say() { printf '[bench] %s\n' "$*" >&2; }
OUT=bench/.out
mkdir -p "$OUT" bench/results

# The toolchain and npm packages the build needs (what `npm run dev` / `npm test` install).
bash scripts/setup.sh
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing wrk from Debian"
    (apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; })
  else
    say "wrk is required (Debian/Ubuntu: apt-get install wrk)"; exit 1
  fi
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "building the deploy bundle: wrangler deploy --dry-run --outdir $OUT/bundle"
  rm -rf "$OUT/bundle"
  if ! node_modules/.bin/wrangler deploy --dry-run --outdir "$OUT/bundle" >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log" >&2
    say "the bundle build failed (full log: $OUT/build.log); scripts/setup.sh installs the build tools"
    exit 1
  fi
fi

if [ "${BENCH_NATIVE:-1}" != 0 ]; then
  say "native micro-benchmarks: cargo bench --bench core"
  if ! cargo bench --bench core >"$OUT/native.md" 2>"$OUT/native.log"; then
    tail -30 "$OUT/native.log" >&2
    printf '_`cargo bench --bench core` failed; see bench/.out/native.log_\n' >"$OUT/native.md"
    say "native micro-benchmarks failed; going on with the load benchmarks"
  fi
fi

if [ -z "${BENCH_PROFILE+x}" ] && command -v perf >/dev/null; then
  export BENCH_PROFILE=oa-json/pass,oa-json/gateway,oa-stream/pass,oa-stream/gateway,an-stream/pass,an-stream/gateway
fi

say "load: $(uptime)"
exec node bench/bench.mjs
