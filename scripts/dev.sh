#!/usr/bin/env bash
# Serves the gateway locally with wrangler dev on http://127.0.0.1:8787 (installing first what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  install -m 600 .dev.vars.example .dev.vars # (it will hold keys: readable by its owner only)
  echo "[dev] created .dev.vars from .dev.vars.example: set ADMIN_TOKEN and your provider keys there" >&2
fi
export CLOUDFLARE_CF_FETCH_ENABLED="${CLOUDFLARE_CF_FETCH_ENABLED:-false}"
export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"
exec node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
