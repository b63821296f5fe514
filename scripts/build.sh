#!/usr/bin/env bash
# Builds the worker (build/worker/shim.mjs + wasm) with the tools setup.sh installed.
# worker-build would otherwise download wasm-bindgen, esbuild and wasm-opt from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo installs tools, also when rustup did not put it on PATH.
export PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"
if [ -z "${WASM_BINDGEN_BIN:-}" ]; then
  WASM_BINDGEN_BIN=$(command -v wasm-bindgen) || { echo "[build] wasm-bindgen not found: run bash scripts/setup.sh" >&2; exit 1; }
fi
export WASM_BINDGEN_BIN
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
exec worker-build --release
