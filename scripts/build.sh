#!/usr/bin/env bash
# Builds the worker (build/worker/shim.mjs + wasm) with the tools setup.sh installed.
# worker-build would otherwise download wasm-bindgen, esbuild and wasm-opt from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
exec worker-build --release
