#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already there:
# the wasm32 target, worker-build, wasm-bindgen-cli at the exact version in Cargo.lock,
# and the npm packages pinned in package-lock.json (wrangler/workerd, binaryen, test clients).
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo installs tools, also when rustup did not put it on PATH.
export PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"

say() { printf '[setup] %s\n' "$*" >&2; }

command -v cargo >/dev/null || { say "Rust is required: https://rustup.rs"; exit 1; }
command -v npm >/dev/null || { say "Node.js 20+ and npm are required"; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  command -v rustup >/dev/null || { say "rustup is required to add the wasm32 target: https://rustup.rs"; exit 1; }
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

WORKER_BUILD_VERSION=0.8.7
if ! worker-build --version 2>/dev/null | grep -qxF "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install --locked worker-build --version "$WORKER_BUILD_VERSION"
fi

# wasm-bindgen-cli must match the wasm-bindgen crate exactly. Installed without --locked: its
# lockfile pins a crate release the registry mirror lacks (see ../shared/TOOLCHAIN.md).
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qxF "wasm-bindgen $WB_VERSION"; then
  say "installing wasm-bindgen-cli $WB_VERSION (about two minutes, once)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund
fi
