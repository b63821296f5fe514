#!/usr/bin/env bash
# Every test: native core tests, the catalog freshness check, then the built worker in workerd
# (Miniflare) against the upstream emulator, driven by the real client libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all-targets
if [ -f ../shared/data/model_prices.json ]; then
  node scripts/gen-catalog.mjs --check
fi
bash scripts/build.sh
node --test --test-concurrency=1 tests/*.test.mjs
