#!/usr/bin/env bash
# Every test: native core tests, the catalog freshness check, then the built worker in workerd
# (Miniflare) against the upstream emulator, driven by the real client libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all-targets
if [ -f ../shared/data/model_prices.json ] && [ -f ../shared/data/model_prices.LICENSE ]; then
  node scripts/gen-catalog.mjs --check
else
  echo "[test] catalog check skipped: ../shared/data/model_prices.json (and its LICENSE) not beside this clone" >&2
fi
bash scripts/build.sh
# (A test that hangs fails after five minutes instead of holding CI.)
node --test --test-concurrency=1 --test-timeout=300000 tests/*.test.mjs
