// Runs the BUILT Switchyard worker (build/worker/shim.mjs + build/index.js + build/index_bg.wasm, as
// worker-build 0.8.7 lays them out) inside workerd through Miniflare, with a fresh in-memory KV
// namespace per gateway and every provider pointed at the upstream emulator.
//
//   const gw = await startGateway({ emulatorUrl: emu.url, bindings: { MAX_REQUEST_BYTES: '65536' } });
//   const key = await gw.createKey('alice');
//   … new OpenAI({ apiKey: key, baseURL: gw.url + '/v1', maxRetries: 0 }) …
//   await gw.dispose();
//
// Environment: SWITCHYARD_BUILD_DIR (default ./build) and SWITCHYARD_WRANGLER_TOML (default
// ./wrangler.toml) point elsewhere; SWITCHYARD_TEST_VERBOSE=1 shows Miniflare's own log lines.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { Miniflare, Log, LogLevel } from 'miniflare';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const ADMIN_TOKEN = 'test-admin-token';

/** OpenAI-compatible providers: binding prefix → base path (appended to the emulator's origin). */
export const OPENAI_COMPATIBLE = ['OPENAI', 'XAI', 'GROQ', 'MISTRAL', 'DEEPSEEK', 'CEREBRAS', 'FIREWORKS', 'TOGETHERAI'];
/** Providers with their own protocol: base URL is the bare origin, as their SDKs read it. */
export const NATIVE = ['ANTHROPIC', 'GOOGLE', 'VERTEX'];

/** The fake upstream credential each provider gets, e.g. PROVIDER_KEYS.openai === 'sk-test-openai'. */
export const PROVIDER_KEYS = Object.fromEntries(
  [...OPENAI_COMPATIBLE, ...NATIVE].map((p) => [p.toLowerCase(), `sk-test-${p.toLowerCase()}`]),
);

/** The string bindings a gateway gets before `bindings` overrides are merged in. */
export function defaultBindings(emulatorUrl) {
  const out = { ADMIN_TOKEN };
  for (const p of [...OPENAI_COMPATIBLE, ...NATIVE]) out[`${p}_API_KEY`] = PROVIDER_KEYS[p.toLowerCase()];
  if (emulatorUrl) {
    const origin = emulatorUrl.replace(/\/+$/, '');
    for (const p of OPENAI_COMPATIBLE) out[`${p}_BASE_URL`] = `${origin}/v1`;
    for (const p of NATIVE) out[`${p}_BASE_URL`] = origin;
  }
  return out;
}

// Compatibility date and flags, with a tolerant reader for the few top-level keys needed when
// wrangler's own reader is unavailable.
function readTomlTopLevel(path) {
  const text = readFileSync(path, 'utf8');
  const top = text.split(/^\s*\[/m)[0];
  const date = top.match(/^\s*compatibility_date\s*=\s*["']([^"']+)["']/m)?.[1];
  const flagsRaw = top.match(/^\s*compatibility_flags\s*=\s*\[([^\]]*)\]/m)?.[1];
  const flags = flagsRaw ? [...flagsRaw.matchAll(/["']([^"']+)["']/g)].map((m) => m[1]) : [];
  return { compatibilityDate: date, compatibilityFlags: flags };
}

// wrangler's reader also brings what wrangler.toml declares beyond the basics (Durable Objects and
// their SQLite migrations, vars), so the tests follow the config as the lead extends it.
async function workerOptionsFromWrangler(configPath) {
  const fallback = readTomlTopLevel(configPath);
  try {
    const wrangler = await import('wrangler');
    // An env file that does not exist: wrangler then loads neither .dev.vars nor .env, so a
    // developer's local secrets never leak into the tests; [vars] from wrangler.toml still apply.
    const noEnvFiles = [join(tmpdir(), `switchyard-tests-no-env-${process.pid}`)];
    const { workerOptions } = wrangler.unstable_getMiniflareWorkerOptions(configPath, undefined, { envFiles: noEnvFiles });
    return {
      ...workerOptions,
      compatibilityDate: workerOptions.compatibilityDate ?? fallback.compatibilityDate,
      compatibilityFlags: workerOptions.compatibilityFlags ?? fallback.compatibilityFlags,
    };
  } catch (err) {
    if (process.env.SWITCHYARD_TEST_VERBOSE) console.error(`harness: wrangler config reader failed (${err.message}); using the basics`);
    return fallback;
  }
}

/**
 * Starts the built worker in workerd.
 * @param {{bindings?: Record<string,string>, emulatorUrl?: string, buildDir?: string, configPath?: string}} options
 */
export async function startGateway({ bindings = {}, emulatorUrl, buildDir, configPath } = {}) {
  const build = resolve(buildDir ?? process.env.SWITCHYARD_BUILD_DIR ?? join(ROOT, 'build'));
  const shim = join(build, 'worker', 'shim.mjs');
  if (!existsSync(shim)) {
    throw new Error(`The built worker is missing (${shim}). Build it first: npm run build (bash scripts/build.sh).`);
  }
  const toml = resolve(configPath ?? process.env.SWITCHYARD_WRANGLER_TOML ?? join(ROOT, 'wrangler.toml'));
  const fromConfig = existsSync(toml) ? await workerOptionsFromWrangler(toml) : {};

  const {
    // Replaced below, whatever wrangler.toml says.
    kvNamespaces: _kv,
    bindings: configVars = {},
    modulesRules: _rules,
    modules: _modules,
    scriptPath: _scriptPath,
    main: _main,
    name: _name,
    ...configRest
  } = fromConfig;

  const mergedBindings = { ...configVars, ...defaultBindings(emulatorUrl), ...bindings };
  const adminToken = mergedBindings.ADMIN_TOKEN;

  const mf = new Miniflare({
    ...configRest,
    name: 'switchyard',
    modules: true,
    scriptPath: shim,
    modulesRoot: build,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: fromConfig.compatibilityDate ?? '2025-09-01',
    compatibilityFlags: fromConfig.compatibilityFlags ?? [],
    kvNamespaces: { SWITCHYARD_KV: `switchyard-kv-${randomUUID()}` },
    bindings: mergedBindings,
    host: '127.0.0.1',
    port: 0,
    cf: false,
    log: process.env.SWITCHYARD_TEST_VERBOSE ? new Log(LogLevel.DEBUG) : new Log(LogLevel.WARN),
  });

  let url;
  try {
    url = (await mf.ready).origin;
  } catch (err) {
    await mf.dispose().catch(() => {});
    throw err;
  }

  async function admin(method, path, body, { token = adminToken, headers = {} } = {}) {
    const res = await fetch(url + path, {
      method,
      headers: {
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, json, headers: res.headers, text };
  }

  async function createKey(name = `test-key-${randomUUID().slice(0, 8)}`) {
    const res = await admin('POST', '/admin/keys', { name });
    if (res.status !== 201 || typeof res.json?.key !== 'string') {
      throw new Error(`POST /admin/keys answered ${res.status}: ${res.text.slice(0, 500)}`);
    }
    return res.json.key;
  }

  let disposed = false;
  async function dispose() {
    if (disposed) return;
    disposed = true;
    await mf.dispose();
  }

  return { url, mf, bindings: mergedBindings, adminToken, admin, createKey, dispose };
}
