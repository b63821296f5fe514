// Switchyard benchmark driver (run through `npm run bench` → bench/run.sh, which builds the bundle
// and the native micro-benchmarks first). In one run, on one raw workerd process:
//   - the gateway exactly as `wrangler deploy --dry-run` bundles it (bench/.out/bundle),
//   - a JavaScript pass-through Worker and a fixed-response Worker,
//   - an in-memory KV service behind the gateway's `kvNamespace` binding,
// plus the upstream (bench/upstream.mjs) called directly; then the gateway and the pass-through
// under `wrangler dev`. Writes bench/results/latest.md and prints it.
//
// Environment: BENCH_DURATION (s, 5), BENCH_WARMUP (s, 1), BENCH_CONNECTIONS ("1,32"),
// BENCH_PORT_BASE (18700), BENCH_STREAM_EVENTS (32), BENCH_WRANGLER_DEV (1; 0 skips it),
// BENCH_DEV_DURATION (s, 4), BENCH_ONLY (comma list of row ids to run, for debugging),
// BENCH_V8_FLAGS (comma list of V8 flags for the measured workerd, for investigation),
// BENCH_WORKERD (path of another workerd binary to serve the raw runtime with),
// BENCH_ROUNDS (1: how many times every raw-workerd row is measured, round-robin over the rows so
// that a slow spell of the machine touches every row alike; each cell reports the round with the
// median CPU per request, and the CPU range over the rounds beside it),
// BENCH_PROFILE (comma list of row ids, e.g. "oa-json/gateway,oa-json/pass": after the load runs,
// sample workerd with `perf record -e cpu-clock` during a wrk run of each, V8 started with
// --perf-basic-prof so JIT and wasm frames have names; flat profiles go to the results).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { bodies } from './upstream.mjs';
import * as client from './client.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');
const OUT = path.join(BENCH, '.out');
const env = process.env;
const DURATION = Number(env.BENCH_DURATION ?? 5);
const WARMUP = Number(env.BENCH_WARMUP ?? 1);
const CONNS = (env.BENCH_CONNECTIONS ?? '1,32').split(',').map(Number);
const BASE = Number(env.BENCH_PORT_BASE ?? 18700);
const DEV = (env.BENCH_WRANGLER_DEV ?? '1') !== '0';
const DEV_DURATION = Number(env.BENCH_DEV_DURATION ?? 4);
const ONLY = env.BENCH_ONLY ? env.BENCH_ONLY.split(',') : null;
const ROUNDS = Math.max(1, Number(env.BENCH_ROUNDS ?? 1));
const PROFILE = env.BENCH_PROFILE ? env.BENCH_PROFILE.split(',') : [];
// Extra V8 flags for the measured workerd (e.g. BENCH_V8_FLAGS=--trace-gc; its output goes to
// bench/.out/workerd.log). Flags change what is measured: for investigation, not for figures.
const V8_FLAGS = env.BENCH_V8_FLAGS ? env.BENCH_V8_FLAGS.split(',') : [];
const PORTS = { upstream: BASE, gateway: BASE + 1, pass: BASE + 2, fixed: BASE + 3, devGateway: BASE + 4, devPass: BASE + 5, passTs: BASE + 6 };
const ADMIN_TOKEN = 'bench-admin-token-0123456789';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
// BENCH_WORKERD: another workerd binary for the raw runtime (e.g. a newer release, closer to what
// Cloudflare runs than the one wrangler 4.86.0 brings).
const WORKERD = env.BENCH_WORKERD || path.join(ROOT, 'node_modules/.bin/workerd');
const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');

const log = (...a) => console.error('[bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();

function cleanup() {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGTERM');
    } catch {}
  }
  children.clear();
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => (cleanup(), process.exit(130)));

function start(cmd, args, opts = {}) {
  const logFile = opts.log ? fs.openSync(opts.log, 'w') : 'ignore';
  const c = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, detached: true, stdio: ['ignore', opts.pipe ? 'pipe' : logFile, logFile], env: { ...env, ...opts.env } });
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

async function stop(c) {
  if (!c || c.exitCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  try {
    process.kill(-c.pid, 'SIGTERM');
  } catch {}
  await Promise.race([exited, sleep(5000)]);
  try {
    process.kill(-c.pid, 'SIGKILL');
  } catch {}
  children.delete(c);
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

async function waitPort(port, ms, proc) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`process exited (${proc.exitCode}) before port ${port} opened`);
    if (await portOpen(port)) return;
    await sleep(100);
  }
  throw new Error(`port ${port} did not open within ${ms} ms`);
}

// --- CPU accounting: utime + stime of a process and all its descendants, in µs ---------------
function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}
function treeCpuUs(root) {
  const all = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(d);
    if (st) all.set(Number(d), st);
  }
  let ticks = 0;
  const stack = [root];
  const seen = new Set();
  while (stack.length) {
    const pid = stack.pop();
    if (seen.has(pid)) continue;
    seen.add(pid);
    const st = all.get(pid);
    if (st) ticks += st.ticks;
    for (const [p, s] of all) if (s.ppid === pid) stack.push(p);
  }
  return (ticks * 1e6) / CLK_TCK;
}

/** Share of the machine's CPU time (all cores) spent busy over `ms`. */
async function cpuBusy(ms) {
  const read = () => fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const a = read();
  await sleep(ms);
  const b = read();
  const d = b.map((x, i) => x - a[i]);
  const total = d.reduce((x, y) => x + y, 0);
  const idle = d[3] + (d[4] ?? 0);
  return total ? 1 - idle / total : 0;
}

/** Waits (up to BENCH_WAIT_IDLE s) for other work on the machine to calm down; returns the busy share. */
async function waitQuiet() {
  const limit = Number(env.BENCH_MAX_BUSY ?? 0.25);
  const deadline = Date.now() + Number(env.BENCH_WAIT_IDLE ?? 120) * 1000;
  for (;;) {
    const busy = Math.max(await cpuBusy(2000), await cpuBusy(2000));
    if (busy <= limit || Date.now() > deadline) return busy;
    log(`machine ${(busy * 100).toFixed(0)}% busy before the run (other work, e.g. a compile); waiting…`);
    await sleep(3000);
  }
}

/** CPU µs: the machine's busy time, and this process with its reaped children (wrk). */
function machineBusyUs() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  return ((total - f[3] - (f[4] ?? 0)) * 1e6) / CLK_TCK;
}
function selfUs() {
  const s = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
  return ((f[11] + f[12] + f[13] + f[14]) * 1e6) / CLK_TCK;
}
/** A snapshot for one timed run: the server tree, the upstream, and everything else. */
function snap(cpuPid, upstreamPid) {
  return { t: performance.now(), server: treeCpuUs(cpuPid), upstream: upstreamPid ? treeCpuUs(upstreamPid) : 0, self: selfUs(), machine: machineBusyUs() };
}
function diff(a, b, requests) {
  const d = (k) => b[k] - a[k];
  const others = d('machine') - d('server') - d('upstream') - d('self');
  return {
    cpuUs: requests ? d('server') / requests : null,
    upstreamCpuUs: requests && d('upstream') ? d('upstream') / requests : null,
    otherCores: Math.max(0, others / ((b.t - a.t) * 1000)),
  };
}

// --- wrk ----------------------------------------------------------------------------------------
function toMs(v) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v);
  if (!m) return null;
  return Number(m[1]) * { us: 1e-3, ms: 1, s: 1e3, m: 6e4 }[m[2]];
}
async function wrk({ port, path: p, body, auth, connections, durationS }) {
  const bodyFile = path.join(OUT, `wrk-body-${port}.json`);
  fs.writeFileSync(bodyFile, body);
  const args = ['-t1', `-c${connections}`, `-d${Math.max(1, Math.round(durationS))}s`, '--latency', '-s', path.join(BENCH, 'wrk.lua'), `http://127.0.0.1:${port}${p}`];
  const out = await new Promise((resolve, reject) => {
    const c = spawn('wrk', args, { env: { ...env, WRK_BODY_FILE: bodyFile, WRK_AUTH: auth ?? '' } });
    let s = '';
    c.stdout.on('data', (d) => (s += d));
    c.stderr.on('data', (d) => (s += d));
    c.on('error', reject);
    c.on('exit', () => resolve(s));
  });
  const num = (re) => {
    const m = re.exec(out);
    return m ? m[1] : null;
  };
  const requests = Number(num(/(\d+) requests in/));
  const elapsed = toMs(num(/requests in ([\d.]+\w+),/) ?? '');
  const avg = toMs(num(/Latency\s+([\d.]+\w+)/) ?? '');
  const res = {
    requests,
    elapsedMs: elapsed,
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/)),
    avg,
    p50: toMs(num(/\s50%\s+([\d.]+\w+)/) ?? ''),
    p99: toMs(num(/\s99%\s+([\d.]+\w+)/) ?? ''),
    errors: Number(num(/Non-2xx or 3xx responses: (\d+)/) ?? 0),
    socketErrors: num(/Socket errors: ([^\n]+)/),
    consistency: (avg * requests) / connections / elapsed,
    raw: out,
  };
  if (!requests) res.failed = out.trim().split('\n').slice(-3).join(' ');
  return res;
}

// --- profile ---------------------------------------------------------------------------------
const CATEGORIES = [
  ['kernel (sockets, scheduling)', (dso) => dso.startsWith('[kernel')],
  ['wasm (the gateway\'s Rust code)', (dso, sym) => dso.startsWith('[JIT]') && /^JS:.*-\d+-(liftoff|turbofan)$/.test(sym) && !/^JS:(wasm-to-js|js-to-wasm)/.test(sym)],
  ['V8 builtins and interpreter', (dso, sym) => /^Builtins?_|^Builtin:|^BytecodeHandler/.test(sym)],
  ['JIT JavaScript (shim, workers, wasm↔JS wrappers)', (dso) => dso.startsWith('[JIT]')],
  ['malloc (tcmalloc, libc)', (dso, sym) => /tcmalloc|^__libc_(malloc|free)|^(malloc|free|cfree)$|_int_(malloc|free)/.test(sym)],
  ['V8 garbage collection', (dso, sym) => /v8::internal::(Heap|Scavenger|MarkCompact|Sweeper|MinorMarkSweep|Marking|ConcurrentMarking|GCTracer|MemoryAllocator|PagedSpace|NewSpace|CppHeap|GlobalHandles)|cppgc::|Evacuat|Scaveng/.test(sym)],
  ['V8 runtime and API', (dso, sym) => /^v8::|^Runtime_/.test(sym)],
  ['workerd JS glue (jsg)', (dso, sym) => /workerd::jsg::/.test(sym)],
  ['Workers APIs (fetch, streams, KV, Request/Response)', (dso, sym) => /workerd::api::/.test(sym)],
  ['kj/capnp (event loop, HTTP, I/O)', (dso, sym) => /^kj::|^capnp::|kj::_::/.test(sym)],
  ['libc (memcpy etc.)', (dso) => /^libc|^libm|^libstdc|^ld-linux/.test(dso)],
  ['other workerd', () => true],
];

async function profile(row, pid) {
  const data = path.join(OUT, `perf-${row.id.replace(/\W+/g, '_')}.data`);
  const c = Math.max(...CONNS);
  const secs = Math.max(2, Math.floor(DURATION));
  const perf = spawn('perf', ['record', '-e', 'cpu-clock', '-F', '4000', '-p', String(pid), '-o', data, '--', 'sleep', String(secs + 1)], { stdio: 'ignore' });
  const done = new Promise((r) => perf.on('exit', r));
  await sleep(300);
  const a = snap(pid, null);
  const w = await wrk({ port: row.port, path: row.path, body: row.body, auth: row.headers.authorization, connections: c, durationS: secs });
  const d = diff(a, snap(pid, null), w.requests);
  await done;
  const text = sh('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio', '--percent-limit', '0.01', '--full-source-path']);
  const entries = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(\[[^\]]+\]|\S+)\s+(?:tid \d+\s+)?\[[.k]\]\s+(.*)$/.exec(line);
    if (m) entries.push({ pct: Number(m[1]), dso: m[2], sym: m[3].trim() }); // JIT code's dso is "[JIT] tid N"
  }
  const cats = new Map(CATEGORIES.map(([n]) => [n, 0]));
  for (const e of entries) {
    const [name] = CATEGORIES.find(([, test]) => test(e.dso, e.sym));
    cats.set(name, cats.get(name) + e.pct);
  }
  const total = [...cats.values()].reduce((x, y) => x + y, 0) || 1;
  const top = entries
    .slice()
    .sort((x, y) => y.pct - x.pct)
    .slice(0, 15)
    .map((e) => `${e.pct.toFixed(2).padStart(6)}%  ${e.dso.padEnd(18)} ${e.sym.length > 110 ? e.sym.slice(0, 107) + '...' : e.sym}`);
  // The gateway's own functions (wasm), by self time: where its Rust code spends per request.
  const wasm = CATEGORIES[1][1];
  const topWasm = entries
    .filter((e) => wasm(e.dso, e.sym))
    .sort((x, y) => y.pct - x.pct)
    .slice(0, 10)
    .map((e) => `${e.pct.toFixed(2).padStart(6)}%  ${f0((d.cpuUs ?? 0) * e.pct / 100).padStart(4)} µs  ${e.sym.replace(/^JS:/, '').replace(/::h[0-9a-f]{16}-\d+-(liftoff|turbofan)$/, ' [$1]').slice(0, 110)}`);
  return {
    label: row.label,
    rps: w.rps,
    topWasm,
    cpuUs: d.cpuUs,
    categories: [...cats.entries()].filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]).map(([n, v]) => ({ name: n, share: v / total, us: d.cpuUs != null ? (d.cpuUs * v) / total : null })),
    top,
    samples: entries.length,
  };
}

// --- requests -----------------------------------------------------------------------------------
async function httpJson(port, method, p, headers, body) {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { method, headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, text, json };
}

async function createKey(port) {
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const r = await httpJson(port, 'POST', '/admin/keys', auth, JSON.stringify({ name: 'bench' }));
  if (r.status !== 200 && r.status !== 201) throw new Error(`POST /admin/keys → ${r.status}: ${r.text.slice(0, 300)}`);
  const key = r.json?.key;
  if (!key) throw new Error(`POST /admin/keys returned no key: ${r.text.slice(0, 300)}`);
  const list = await httpJson(port, 'GET', '/admin/keys', auth);
  const listed = list.status === 200 && JSON.stringify(list.json).includes('"bench"');
  const bad = await httpJson(port, 'POST', '/v1/chat/completions', { authorization: 'Bearer sk-sy-not-a-real-key-000000000000' }, OA_JSON);
  const good = await httpJson(port, 'POST', '/v1/chat/completions', { authorization: `Bearer ${key}` }, OA_JSON);
  return {
    key,
    checks: {
      'POST /admin/keys (KV put)': `${r.status}`,
      'GET /admin/keys (KV list with metadata)': `${list.status}${listed ? ', lists the key' : ', KEY NOT LISTED'}`,
      'chat with an unknown key (KV get, miss)': `${bad.status}`,
      'chat with the new key (KV get, hit)': `${good.status}${good.json?.choices ? ', completion returned' : `: ${good.text.slice(0, 200)}`}`,
    },
    ok: listed && bad.status === 401 && good.status === 200 && !!good.json?.choices,
  };
}

// --- scenarios ----------------------------------------------------------------------------------
const msgs = [{ role: 'user', content: 'hi' }];
const OA_JSON = JSON.stringify({ model: 'openai/gpt-4o', messages: msgs });
const OA_STREAM = JSON.stringify({ model: 'openai/gpt-4o', messages: msgs, stream: true });
const AN_JSON = JSON.stringify({ model: 'anthropic/claude-sonnet-4-6', messages: msgs });
const AN_STREAM = JSON.stringify({ model: 'anthropic/claude-sonnet-4-6', messages: msgs, stream: true });
const UP_OA_JSON = JSON.stringify({ model: 'gpt-4o', messages: msgs });
const UP_OA_STREAM = JSON.stringify({ model: 'gpt-4o', messages: msgs, stream: true });
const UP_AN_JSON = JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 4096, messages: msgs });
const UP_AN_STREAM = JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 4096, messages: msgs, stream: true });

function scenarios(key) {
  const gw = { authorization: `Bearer ${key}` };
  const up = { authorization: 'Bearer sk-upstream' };
  const upA = { 'x-api-key': 'sk-ant-upstream', 'anthropic-version': '2023-06-01' };
  const row = (id, label, port, p, body, headers) => ({ id, label, port, path: p, body, headers });
  return [
    {
      id: 'oa-json', title: 'JSON, OpenAI-compatible (pass-through)', stream: false,
      rows: [
        row('oa-json/upstream', 'upstream direct', PORTS.upstream, '/v1/chat/completions', UP_OA_JSON, up),
        row('oa-json/fixed', 'fixed-response Worker', PORTS.fixed, '/v1/chat/completions', UP_OA_JSON, up),
        row('oa-json/pass', 'JS pass-through Worker', PORTS.pass, '/v1/chat/completions', UP_OA_JSON, up),
        row('oa-json/js-contract', 'JS doing the JSON contract\'s runtime calls (no gateway logic)', PORTS.passTs, '/v1/chat/completions?shape=contract', UP_OA_JSON, up),
        row('oa-json/gateway', 'gateway', PORTS.gateway, '/v1/chat/completions', OA_JSON, gw),
      ],
    },
    {
      id: 'oa-stream', title: 'Streaming, OpenAI-compatible (pass-through)', stream: true,
      rows: [
        row('oa-stream/upstream', 'upstream direct', PORTS.upstream, '/v1/chat/completions', UP_OA_STREAM, up),
        row('oa-stream/fixed', 'fixed-response Worker', PORTS.fixed, '/v1/chat/completions', UP_OA_STREAM, up),
        row('oa-stream/pass', 'JS pass-through Worker', PORTS.pass, '/v1/chat/completions', UP_OA_STREAM, up),
        row('oa-stream/pass-ts', 'JS pass-through + JS TransformStream', PORTS.passTs, '/v1/chat/completions', UP_OA_STREAM, up),
        row('oa-stream/pass-loop', 'JS pass-through + JS read loop into IdentityTransformStream', PORTS.passTs, '/v1/chat/completions?via=loop', UP_OA_STREAM, up),
        row('oa-stream/tee-read', 'JS pass-through, body tee\'d: response native, JS reads every chunk of the copy', PORTS.passTs, '/v1/chat/completions?via=tee-read', UP_OA_STREAM, up),
        row('oa-stream/pipe', 'JS pass-through, native pipeTo into IdentityTransformStream, JS closes it', PORTS.passTs, '/v1/chat/completions?via=pipe', UP_OA_STREAM, up),
        row('oa-stream/tee-pipe', 'JS pass-through, tee\'d: native pipe to the client + native copy, JS closes it', PORTS.passTs, '/v1/chat/completions?via=tee-pipe', UP_OA_STREAM, up),
        row('oa-stream/gateway', 'gateway', PORTS.gateway, '/v1/chat/completions', OA_STREAM, gw),
      ],
    },
    {
      id: 'an-json', title: 'JSON, Anthropic (translated)', stream: false,
      rows: [
        row('an-json/upstream', 'upstream direct (Anthropic JSON)', PORTS.upstream, '/v1/messages', UP_AN_JSON, upA),
        row('an-json/pass', 'JS pass-through Worker (Anthropic JSON)', PORTS.pass, '/v1/messages', UP_AN_JSON, upA),
        row('an-json/gateway', 'gateway (OpenAI in, Anthropic upstream)', PORTS.gateway, '/v1/chat/completions', AN_JSON, gw),
      ],
    },
    {
      id: 'an-stream', title: 'Streaming, Anthropic (translated)', stream: true,
      rows: [
        row('an-stream/upstream', 'upstream direct (Anthropic SSE)', PORTS.upstream, '/v1/messages', UP_AN_STREAM, upA),
        row('an-stream/pass', 'JS pass-through Worker (Anthropic SSE)', PORTS.pass, '/v1/messages', UP_AN_STREAM, upA),
        row('an-stream/pass-ts', 'JS pass-through + JS TransformStream (Anthropic SSE)', PORTS.passTs, '/v1/messages', UP_AN_STREAM, upA),
        row('an-stream/pass-loop', 'JS pass-through + JS read loop into IdentityTransformStream (Anthropic SSE)', PORTS.passTs, '/v1/messages?via=loop', UP_AN_STREAM, upA),
        row('an-stream/gateway', 'gateway (OpenAI in, Anthropic upstream)', PORTS.gateway, '/v1/chat/completions', AN_STREAM, gw),
      ],
    },
  ];
}

/** One row's results over the rounds: per connection count, the round with the median CPU per
 * request (its req/s and latencies with it), and the CPU range over all rounds. */
function medianRound(results) {
  if (results.length === 1) return results[0];
  const ok = results.filter((r) => !r.failed);
  if (!ok.length) return results[0];
  const merged = { ...ok[0], byConn: {}, rounds: results.length };
  for (const c of Object.keys(ok[0].byConn)) {
    const cells = ok.map((r) => r.byConn[c]).filter((x) => x && x.cpuUs != null);
    if (!cells.length) continue;
    const sorted = cells.slice().sort((a, b) => a.cpuUs - b.cpuUs);
    merged.byConn[c] = { ...sorted[Math.floor((sorted.length - 1) / 2)], cpuRange: [sorted[0].cpuUs, sorted.at(-1).cpuUs] };
  }
  return merged;
}

/** Probe once; on success, warm up and measure at each connection count. */
async function measure(row, { cpuPid, upstreamPid, conns = CONNS, durationS = DURATION, useWrk = true }) {
  const probe = await client.once(row).catch((e) => ({ status: 0, text: String(e) }));
  const result = { row, probe: { status: probe.status, bytes: probe.bodyBytes }, byConn: {} };
  if (probe.status < 200 || probe.status >= 300) {
    let msg = probe.text ?? '';
    try {
      msg = JSON.parse(msg).error?.message ?? msg;
    } catch {}
    result.failed = `HTTP ${probe.status}: ${String(msg).slice(0, 160)}`;
    log(`${row.id}: FAILED ${result.failed}`);
    return result;
  }
  for (const c of conns) {
    await client.run({ ...row, connections: c, durationMs: WARMUP * 1000 });
    const r = {};
    if (c > 1 && useWrk) {
      const a = snap(cpuPid, upstreamPid);
      const w = await wrk({ port: row.port, path: row.path, body: row.body, auth: row.headers.authorization, connections: c, durationS });
      const d = diff(a, snap(cpuPid, upstreamPid), w.requests);
      r.wrk = w;
      r.rps = w.rps;
      r.requests = w.requests;
      r.errors = w.errors;
      Object.assign(r, d);
      if (w.failed) r.failed = w.failed;
    }
    const a = snap(cpuPid, upstreamPid);
    const l = await client.run({ ...row, connections: c, durationMs: durationS * 1000 });
    const d = diff(a, snap(cpuPid, upstreamPid), l.requests);
    r.lat = l;
    r.latCpuUs = d.cpuUs;
    if (!r.wrk) {
      r.rps = l.rps;
      r.requests = l.requests;
      r.errors = l.errors;
      Object.assign(r, d);
    }
    result.byConn[c] = r;
    log(`${row.id} c=${c}: ${r.rps.toFixed(0)} req/s, ${r.cpuUs?.toFixed(0)} µs CPU/req, p50 ${l.p50.toFixed(3)} ms, p99 ${l.p99.toFixed(3)} ms, consistency ${l.consistency.toFixed(2)}${r.wrk ? `, wrk consistency ${r.wrk.consistency.toFixed(2)}` : ''}${r.errors ? `, ${r.errors} errors` : ''}, other load ${r.otherCores.toFixed(2)} cores`);
  }
  return result;
}

// --- environment facts -------------------------------------------------------------------------
function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
  } catch (e) {
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || 'n/a';
  }
}
function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown';
  return {
    nproc: os.cpus().length,
    cpu,
    mem: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: os.release(),
    load: os.loadavg().map((x) => x.toFixed(2)).join(', '),
    workerd: sh(WORKERD, ['--version']),
    wrangler: sh(WRANGLER, ['--version']).split('\n').pop(),
    node: process.version,
    rustc: sh('rustc', ['--version']),
    wrk: (sh('wrk', ['-v']).match(/wrk \S+/) ?? ['wrk'])[0],
  };
}

function compat() {
  const toml = fs.readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8');
  const date = (toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m) ?? [])[1] ?? '2026-04-01';
  const flagsRaw = (toml.match(/^compatibility_flags\s*=\s*\[([^\]]*)\]/m) ?? [])[1] ?? '';
  const flags = [...flagsRaw.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  return { date, flags };
}

// --- formatting --------------------------------------------------------------------------------
const f0 = (x) => (x == null || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'));
const f2 = (x) => (x == null || Number.isNaN(x) ? '–' : x.toFixed(2));
const f3 = (x) => (x == null || Number.isNaN(x) ? '–' : x.toFixed(3));

function loadTable(results, conns) {
  const lines = [
    '| path | conns | req/s | CPU µs/req (workerd) | upstream CPU µs/req | p50 ms | p99 ms | consistency | errors | other load (cores) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const res of results) {
    if (res.failed) {
      lines.push(`| ${res.row.label} | – | **FAILED** ${res.failed.replace(/\|/g, '/')} | | | | | | | |`);
      continue;
    }
    for (const c of conns) {
      const r = res.byConn[c];
      if (!r) continue;
      const cons = `${f2(r.lat.consistency)}${r.wrk ? ` (wrk ${f2(r.wrk.consistency)})` : ''}`;
      const cpu = r.cpuRange ? `${f0(r.cpuUs)} (${f0(r.cpuRange[0])}–${f0(r.cpuRange[1])})` : f0(r.cpuUs);
      lines.push(`| ${res.row.label} | ${c} | ${f0(r.rps)} | ${cpu} | ${f0(r.upstreamCpuUs)} | ${f3(r.lat.p50)} | ${f3(r.lat.p99)} | ${cons} | ${r.errors || 0} | ${f2(r.otherCores)} |`);
    }
  }
  return lines.join('\n');
}

function streamTable(results) {
  const lines = [
    '| path | first byte p50 ms | first event p50 ms | last byte p50 ms | last byte p99 ms | body bytes |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const res of results) {
    const r = res.byConn[1];
    if (!r) continue;
    lines.push(`| ${res.row.label} | ${f3(r.lat.ttfbP50)} | ${f3(r.lat.firstEventP50)} | ${f3(r.lat.p50)} | ${f3(r.lat.p99)} | ${res.probe.bytes ?? '–'} |`);
  }
  return lines.join('\n');
}

function parseNative(md) {
  // rows: | name | … | ns/event | … ; we look for the per-event figure of each translation row
  const get = (re) => {
    const m = re.exec(md);
    return m ? Number(m[1]) : null;
  };
  return {
    anthropicNsPerEvent: get(/\|\s*anthropic stream \(text\): decode \+ translate \+ encode\s*\|[^|]*\|\s*([\d.]+)\s*\|/),
    geminiNsPerEvent: get(/\|\s*gemini stream[^|]*: decode \+ translate \+ encode\s*\|[^|]*\|\s*([\d.]+)\s*\|/),
  };
}

// --- main ---------------------------------------------------------------------------------------
async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  fs.mkdirSync(path.join(BENCH, 'results'), { recursive: true });
  const bundleDir = path.join(OUT, 'bundle');
  const files = fs.readdirSync(bundleDir);
  const wasmName = files.find((f) => f.endsWith('.wasm'));
  const shimName = files.find((f) => /\.(m?js)$/.test(f));
  if (!wasmName || !shimName) throw new Error(`bench/.out/bundle lacks a .wasm or .js (has: ${files.join(', ')}); run bench/run.sh`);
  const wasm = fs.readFileSync(path.join(bundleDir, wasmName));
  const shim = fs.readFileSync(path.join(bundleDir, shimName));
  const sizes = { wasm: wasm.length, wasmGz: zlib.gzipSync(wasm).length, wasmGz9: zlib.gzipSync(wasm, { level: 9 }).length, shim: shim.length, shimGz: zlib.gzipSync(shim).length };

  const b = bodies();
  fs.writeFileSync(path.join(OUT, 'fixed.json'), b.openai.json);
  fs.writeFileSync(path.join(OUT, 'fixed.sse'), Buffer.concat(b.openai.sse));

  const busyPorts = [];
  for (const p of Object.values(PORTS)) if (await portOpen(p)) busyPorts.push(p);
  if (busyPorts.length) {
    throw new Error(`port(s) ${busyPorts.join(', ')} already in use: another benchmark run in progress? (set BENCH_PORT_BASE to use other ports)`);
  }
  const busyBefore = await waitQuiet();
  const m = machine();
  log(`load before the run: ${m.load}; CPU busy over 2 s: ${(busyBefore * 100).toFixed(0)}%`);

  // upstream
  const upstream = start(process.execPath, [path.join(BENCH, 'upstream.mjs'), '--port', String(PORTS.upstream)], { log: path.join(OUT, 'upstream.log'), env: { BENCH_STREAM_EVENTS: String(b.events) } });
  await waitPort(PORTS.upstream, 10000, upstream);
  const UPSTREAM = `http://127.0.0.1:${PORTS.upstream}`;

  // workerd config
  const { date, flags } = compat();
  const vars = {
    CORS_ORIGINS: '',
    ADMIN_TOKEN,
    OPENAI_API_KEY: 'sk-bench-openai',
    OPENAI_BASE_URL: `${UPSTREAM}/v1`,
    ANTHROPIC_API_KEY: 'sk-ant-bench',
    ANTHROPIC_BASE_URL: UPSTREAM,
    GOOGLE_API_KEY: 'bench-google',
    GOOGLE_BASE_URL: UPSTREAM,
    // Settings to compare (A/B), e.g. BENCH_GATEWAY_VARS='{"STREAM_IDLE_TIMEOUT_MS":"0"}'.
    ...JSON.parse(process.env.BENCH_GATEWAY_VARS || '{}'),
  };
  const q = (s) => JSON.stringify(s);
  const tmpl = fs.readFileSync(path.join(BENCH, 'config.capnp.tmpl'), 'utf8');
  const writeConfig = (name, v8Flags) => {
    const config = tmpl
      .replaceAll('{{GATEWAY_PORT}}', PORTS.gateway)
      .replaceAll('{{PASS_PORT}}', PORTS.pass)
      .replaceAll('{{PASS_TS_PORT}}', PORTS.passTs)
      .replaceAll('{{FIXED_PORT}}', PORTS.fixed)
      .replaceAll('{{SHIM_NAME}}', shimName)
      .replaceAll('{{WASM_NAME}}', wasmName)
      .replaceAll('{{COMPAT_DATE}}', date)
      .replaceAll('{{COMPAT_FLAGS}}', flags.map(q).join(', '))
      .replaceAll('{{UPSTREAM_URL}}', UPSTREAM)
      .replaceAll('{{V8_FLAGS}}', v8Flags.map(q).join(', '))
      .replace('{{GATEWAY_BINDINGS}}', Object.entries(vars).map(([k, v]) => `    (name = ${q(k)}, text = ${q(v)}),`).join('\n'));
    const p = path.join(OUT, name);
    fs.writeFileSync(p, config);
    return p;
  };
  const startWorkerd = async (configPath, logName) => {
    // cwd bench/.out: V8's profiling flags write isolate-*.log files into the working directory
    const proc = start(WORKERD, ['serve', configPath], { log: path.join(OUT, logName), cwd: OUT });
    await Promise.all([PORTS.gateway, PORTS.pass, PORTS.fixed, PORTS.passTs].map((p) => waitPort(p, 30000, proc)));
    return proc;
  };

  const workerd = await startWorkerd(writeConfig('config.capnp', V8_FLAGS), 'workerd.log');
  log(`workerd pid ${workerd.pid} serving gateway :${PORTS.gateway}, pass-through :${PORTS.pass}, fixed :${PORTS.fixed}; upstream :${PORTS.upstream}`);

  const setup = await createKey(PORTS.gateway);
  log('KV / key checks:', JSON.stringify(setup.checks));
  if (!setup.ok) log('WARNING: the KV end-to-end checks did not all pass; see the table in the results');

  const t0 = Date.now();
  const raw = [];
  // Every round measures every row once; the rounds are then merged row by row.
  const rounds = [];
  for (let i = 0; i < ROUNDS; i++) {
    if (ROUNDS > 1) log(`round ${i + 1} of ${ROUNDS}`);
    const round = new Map();
    for (const sc of scenarios(setup.key)) {
      for (const row of sc.rows) {
        if (ONLY && !ONLY.some((o) => row.id.startsWith(o))) continue;
        round.set(row.id, await measure(row, { cpuPid: workerd.pid, upstreamPid: upstream.pid }));
      }
    }
    rounds.push(round);
  }
  for (const sc of scenarios(setup.key)) {
    const results = [];
    for (const row of sc.rows) {
      if (ONLY && !ONLY.some((o) => row.id.startsWith(o))) continue;
      results.push(medianRound(rounds.map((r) => r.get(row.id))));
    }
    raw.push({ sc, results });
  }
  const rawS = (Date.now() - t0) / 1000;
  const workerdLog = fs.readFileSync(path.join(OUT, 'workerd.log'), 'utf8');
  await stop(workerd);

  // profiles: a second workerd with V8's perf map, so the measured runs above stay unprofiled
  const profiles = [];
  if (PROFILE.length) {
    const prof = await startWorkerd(writeConfig('config-profile.capnp', ['--perf-basic-prof']), 'workerd-profile.log');
    try {
      const pkey = (await createKey(PORTS.gateway)).key;
      const rows = scenarios(pkey).flatMap((sc) => sc.rows);
      for (const id of PROFILE) {
        const row = rows.find((r) => r.id === id);
        const measured = raw.flatMap((x) => x.results).find((r) => r.row.id === id);
        if (!row || !measured || measured.failed) {
          log(`BENCH_PROFILE: skipping ${id} (${!row ? 'no such row' : 'not measured'})`);
          continue;
        }
        await client.run({ ...row, connections: Math.max(...CONNS), durationMs: WARMUP * 1000 });
        profiles.push({ id, ...(await profile(row, prof.pid)) });
      }
    } catch (e) {
      log(`profiling failed: ${e.message}`);
    } finally {
      await stop(prof);
      fs.rmSync(`/tmp/perf-${prof.pid}.map`, { force: true });
      for (const f of fs.readdirSync(OUT)) if (/^isolate-.*\.log$/.test(f)) fs.rmSync(path.join(OUT, f), { force: true });
    }
  }

  // wrangler dev
  const dev = [];
  if (DEV) {
    const buildCopy = path.join(OUT, 'dev-build');
    fs.rmSync(buildCopy, { recursive: true, force: true });
    fs.cpSync(path.join(ROOT, 'build'), buildCopy, { recursive: true });
    const devVarsToml = (v) => Object.entries(v).map(([k, val]) => `${k} = ${q(val)}`).join('\n');
    fs.writeFileSync(
      path.join(OUT, 'wrangler-gateway.toml'),
      `name = "switchyard-bench"\nmain = "dev-build/worker/shim.mjs"\ncompatibility_date = ${q(date)}\ncompatibility_flags = [${flags.map(q).join(', ')}]\n\n[[kv_namespaces]]\nbinding = "SWITCHYARD_KV"\nid = "00000000000000000000000000000000"\n\n[vars]\n${devVarsToml(vars)}\n`,
    );
    fs.writeFileSync(
      path.join(OUT, 'wrangler-pass.toml'),
      `name = "passthrough-bench"\nmain = "../workers/passthrough.js"\ncompatibility_date = ${q(date)}\ncompatibility_flags = [${flags.map(q).join(', ')}]\n\n[vars]\nUPSTREAM = ${q(UPSTREAM)}\n`,
    );
    const devEnv = { CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: '1' };
    for (const [which, cfg, port] of [
      ['gateway', 'wrangler-gateway.toml', PORTS.devGateway],
      ['pass', 'wrangler-pass.toml', PORTS.devPass],
    ]) {
      const state = path.join(OUT, `wrangler-state-${which}`);
      fs.rmSync(state, { recursive: true, force: true });
      const proc = start(WRANGLER, ['dev', '-c', path.join(OUT, cfg), '--ip', '127.0.0.1', '--port', String(port), '--persist-to', state, '--inspector-port', String(port + 100), '--show-interactive-dev-session=false', '--log-level', 'warn'], { log: path.join(OUT, `wrangler-dev-${which}.log`), env: devEnv });
      try {
        await waitPort(port, 90000, proc);
        let key = 'unused';
        if (which === 'gateway') {
          // the dev server may accept connections before the worker is ready
          for (let i = 0; ; i++) {
            try {
              key = (await createKey(port)).key;
              break;
            } catch (e) {
              if (i > 20) throw e;
              await sleep(500);
            }
          }
        }
        const auth = which === 'gateway' ? { authorization: `Bearer ${key}` } : { authorization: 'Bearer sk-upstream' };
        const label = which === 'gateway' ? 'gateway (wrangler dev)' : 'JS pass-through Worker (wrangler dev)';
        for (const [sid, body] of [
          ['oa-json', which === 'gateway' ? OA_JSON : UP_OA_JSON],
          ['oa-stream', which === 'gateway' ? OA_STREAM : UP_OA_STREAM],
        ]) {
          const row = { id: `dev-${sid}/${which}`, label, port, path: '/v1/chat/completions', body, headers: auth };
          dev.push({ sid, res: await measure(row, { cpuPid: proc.pid, upstreamPid: upstream.pid, durationS: DEV_DURATION, useWrk: false }) });
        }
      } catch (e) {
        log(`wrangler dev (${which}) failed: ${e.message}`);
        dev.push({ sid: 'oa-json', res: { row: { label: `${which} (wrangler dev)` }, failed: String(e.message).slice(0, 200), byConn: {} } });
      } finally {
        await stop(proc);
      }
    }
  }
  await stop(upstream);
  const loadAfter = os.loadavg().map((x) => x.toFixed(2)).join(', ');

  // native micro-benchmarks (written by run.sh)
  const nativePath = path.join(OUT, 'native.md');
  const native = fs.existsSync(nativePath) ? fs.readFileSync(nativePath, 'utf8').trim() : '_not run (run bench/run.sh)_';
  const nat = parseNative(native);

  // --- report ---
  const get = (sid, label) => raw.find((x) => x.sc.id === sid)?.results.find((r) => r.row.id === `${sid}/${label}`);
  const delta = (sid, c) => {
    const g = get(sid, 'gateway');
    const p = get(sid, 'pass');
    const gr = g?.byConn[c];
    const pr = p?.byConn[c];
    if (!gr || !pr) return null;
    return { cpu: gr.cpuUs - pr.cpuUs, ratio: gr.rps / pr.rps, p50: gr.lat.p50 - pr.lat.p50, p99: gr.lat.p99 - pr.lat.p99, total: gr.lat.p50 - pr.lat.p50, g: gr, p: pr };
  };
  const cMax = Math.max(...CONNS);
  const cMin = Math.min(...CONNS);
  const out = [];
  out.push(`# Switchyard benchmark results`);
  out.push('');
  out.push(`Run ${new Date().toISOString()} with \`npm run bench\` (BENCH_DURATION=${DURATION}s per measurement, warm-up ${WARMUP}s, connections ${CONNS.join(' and ')}, ${b.events} content events per stream${ROUNDS > 1 ? `; ${ROUNDS} rounds, round-robin over the rows: each cell is the round with the median CPU per request, the CPU range over the rounds in brackets` : ''}).`);
  out.push('');
  out.push(`Machine: ${m.nproc} cores, ${m.cpu}, ${m.mem}, Linux ${m.kernel}; load average before ${m.load}, after ${loadAfter}; CPU ${(busyBefore * 100).toFixed(0)}% busy in the 2 s before the run${busyBefore > Number(env.BENCH_MAX_BUSY ?? 0.25) ? ' (**noisy: other work was running**)' : ''}.`);
  out.push(`Versions: workerd ${m.workerd.replace(/^workerd\s*/, '')}, wrangler ${m.wrangler}, node ${m.node}, ${m.rustc}, ${m.wrk}.`);
  out.push('');
  out.push('Raw workerd (the production runtime), one process serving the gateway bundle from `wrangler deploy --dry-run`, the floors and an in-memory KV service. ' +
    (cMax > 1 ? `req/s and CPU at ${CONNS.filter((c) => c > 1).join(' and ')} connections from wrk (-t1); at 1 connection, and every p50/p99, from bench/client.mjs (closed loop, raw sockets). ` : 'req/s, CPU and every p50/p99 from bench/client.mjs (closed loop, raw sockets). ') +
    'CPU µs/req = utime+stime of the workerd process over the timed run ÷ requests completed. consistency = mean latency × requests ÷ connections ÷ run time (≈ 1 when the latencies add up).');
  out.push('');
  out.push('KV checks through the gateway on raw workerd:');
  out.push('');
  for (const [k, v] of Object.entries(setup.checks)) out.push(`- ${k}: ${v}`);
  out.push('');
  for (const { sc, results } of raw) {
    if (!results.length) continue;
    out.push(`## ${sc.title}`);
    out.push('');
    out.push(loadTable(results, CONNS));
    out.push('');
    if (sc.stream && CONNS.includes(1)) {
      out.push(`Stream timings at 1 connection (${b.events} content events):`);
      out.push('');
      out.push(streamTable(results));
      out.push('');
    }
  }
  out.push(`## Gateway − JS pass-through`);
  out.push('');
  out.push('| scenario | conns | Δ CPU µs/req | req/s ratio | Δ p50 ms | Δ p99 ms | gateway − cheapest JS-per-chunk floor, CPU µs/req |');
  out.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const { sc } of raw) {
    for (const c of CONNS) {
      const d = delta(sc.id, c);
      const floors = ['pass-ts', 'pass-loop'].map((id) => get(sc.id, id)?.byConn[c]?.cpuUs).filter((x) => x != null);
      const vsJs = d && floors.length ? f0(d.g.cpuUs - Math.min(...floors)) : '–';
      if (d) out.push(`| ${sc.title} | ${c} | ${f0(d.cpu)} | ${f2(d.ratio)} | ${f3(d.p50)} | ${f3(d.p99)} | ${vsJs} |`);
      else if (c === CONNS[0]) out.push(`| ${sc.title} | – | not measured (${get(sc.id, 'gateway')?.failed ?? get(sc.id, 'pass')?.failed ?? 'no data'}) | | | | |`);
    }
  }
  out.push('');
  out.push('## What a design costs before any gateway logic: JS floors − JS pass-through');
  out.push('');
  out.push('Each floor is a JavaScript Worker doing only the runtime calls of one design (bench/workers/passthrough-transform.js); its cost over the plain pass-through is the least any gateway built that way can add.');
  out.push('');
  out.push('| floor | conns | Δ CPU µs/req | req/s ratio | Δ p50 ms |');
  out.push('|---|---:|---:|---:|---:|');
  const floorRows = [['oa-json', 'js-contract'], ['oa-stream', 'pass-loop'], ['oa-stream', 'tee-read'], ['oa-stream', 'pipe'], ['oa-stream', 'tee-pipe'], ['an-stream', 'pass-loop']];
  for (const [sid, id] of floorRows) {
    const f = get(sid, id);
    const p = get(sid, 'pass');
    for (const c of CONNS) {
      const fr = f?.byConn[c];
      const pr = p?.byConn[c];
      if (fr && pr) out.push(`| ${f.row.label} (${sid}) | ${c} | ${f0(fr.cpuUs - pr.cpuUs)} | ${f2(fr.rps / pr.rps)} | ${f3(fr.lat.p50 - pr.lat.p50)} |`);
    }
  }
  out.push('');

  if (DEV) {
    out.push('## Under `wrangler dev` (development server: a proxy Worker and Node in front of the Worker)');
    out.push('');
    for (const sid of ['oa-json', 'oa-stream']) {
      const rows = dev.filter((d) => d.sid === sid).map((d) => d.res);
      const title = sid === 'oa-json' ? 'JSON, OpenAI-compatible' : 'Streaming, OpenAI-compatible';
      if (!rows.length) continue;
      out.push(`### ${title}`);
      out.push('');
      out.push(loadTable(rows, CONNS).replace('CPU µs/req (workerd)', 'CPU µs/req (wrangler + workerd tree)'));
      out.push('');
    }
  }

  out.push('## Wasm size');
  out.push('');
  out.push(`| file | raw | gzip (level 6) | gzip -9 |`);
  out.push('|---|---:|---:|---:|');
  out.push(`| ${wasmName} | ${f0(sizes.wasm)} B (${(sizes.wasm / 1024).toFixed(1)} KiB) | ${f0(sizes.wasmGz)} B (${(sizes.wasmGz / 1024).toFixed(1)} KiB) | ${f0(sizes.wasmGz9)} B |`);
  out.push(`| ${shimName} (JS shim) | ${f0(sizes.shim)} B | ${f0(sizes.shimGz)} B | |`);
  out.push('');
  out.push('## Native micro-benchmarks (`cargo bench --bench core`)');
  out.push('');
  out.push(native);
  out.push('');

  // targets
  const T = [];
  const verdict = (ok) => (ok == null ? 'not measured' : ok ? 'met' : '**not met**');
  const dj = delta('oa-json', cMax);
  const dj1 = delta('oa-json', cMin);
  T.push([`JSON via OpenAI-compatible: CPU ≤ pass-through + 100 µs (${cMax} conns; ${cMin} conn)`, dj ? `${f0(dj.cpu)} µs; ${dj1 ? f0(dj1.cpu) : '–'} µs` : '–', verdict(dj ? dj.cpu <= 100 && (!dj1 || dj1.cpu <= 100) : null)]);
  T.push([`JSON via OpenAI-compatible: req/s ≥ 85% of pass-through (${cMax} conns)`, dj ? `${(dj.ratio * 100).toFixed(0)}%` : '–', verdict(dj ? dj.ratio >= 0.85 : null)]);
  const ds = delta('oa-stream', cMax);
  const ds1 = delta('oa-stream', cMin);
  T.push([`Streaming pass-through: CPU ≤ pass-through + 150 µs (${cMax} conns; ${cMin} conn)`, ds ? `${f0(ds.cpu)} µs; ${ds1 ? f0(ds1.cpu) : '–'} µs` : '–', verdict(ds ? ds.cpu <= 150 && (!ds1 || ds1.cpu <= 150) : null)]);
  T.push(['Streaming pass-through: total time at 1 conn ≤ pass-through + 0.5 ms (p50 last byte)', ds1 ? `${f3(ds1.total)} ms` : '–', verdict(ds1 ? ds1.total <= 0.5 : null)]);
  const da = delta('an-stream', cMax);
  const da1 = delta('an-stream', cMin);
  T.push([`Anthropic translated streaming: CPU ≤ pass-through + 300 µs (${cMax} conns; ${cMin} conn)`, da ? `${f0(da.cpu)} µs; ${da1 ? f0(da1.cpu) : '–'} µs` : `– (${get('an-stream', 'gateway')?.failed ?? 'no data'})`, verdict(da ? da.cpu <= 300 && (!da1 || da1.cpu <= 300) : null)]);
  T.push(['Anthropic translated streaming natively ≤ 2 µs per event', nat.anthropicNsPerEvent != null ? `${(nat.anthropicNsPerEvent / 1000).toFixed(2)} µs` : '–', verdict(nat.anthropicNsPerEvent != null ? nat.anthropicNsPerEvent <= 2000 : null)]);
  T.push(['Wasm ≤ 1 MB gzipped', `${(sizes.wasmGz / 1024).toFixed(1)} KiB`, verdict(sizes.wasmGz <= 1024 * 1024)]);
  out.push('## Targets');
  out.push('');
  out.push('| target | measured | verdict |');
  out.push('|---|---:|---|');
  for (const [a, bb, c] of T) out.push(`| ${a} | ${bb} | ${c} |`);
  out.push('');
  if (profiles.length) {
    out.push(`## Where the time goes (perf, cpu-clock samples of workerd at ${Math.max(...CONNS)} connections)`);
    out.push('');
    out.push('A second workerd run with V8\'s `--perf-basic-prof` (so JIT and wasm frames are named), sampled with `perf record -e cpu-clock` during a wrk run; self time by category, and µs per request = share × the CPU µs/req measured during that profile run.');
    out.push('');
    const names = [...new Set(profiles.flatMap((p) => p.categories.map((c) => c.name)))];
    out.push(`| category | ${profiles.map((p) => p.id).join(' | ')} |`);
    out.push(`|---|${profiles.map(() => '---:').join('|')}|`);
    for (const n of names) {
      out.push(`| ${n} | ${profiles.map((p) => { const c = p.categories.find((x) => x.name === n); return c ? `${f0(c.us)} µs (${(c.share * 100).toFixed(0)}%)` : '–'; }).join(' | ')} |`);
    }
    out.push(`| **total CPU µs/req (req/s)** | ${profiles.map((p) => `**${f0(p.cpuUs)}** (${f0(p.rps)})`).join(' | ')} |`);
    out.push('');
    for (const p of profiles) {
      out.push(`<details><summary>top symbols: ${p.id}</summary>`);
      out.push('');
      out.push('```');
      out.push(...p.top);
      if (p.topWasm?.length) {
        out.push('', 'wasm functions (self time, µs per request):');
        out.push(...p.topWasm);
      }
      out.push('```');
      out.push('</details>');
      out.push('');
    }
  }
  out.push(`Raw workerd phase took ${rawS.toFixed(0)} s.`);
  const warn = workerdLog.split('\n').filter((l) => /error|uncaught|exception/i.test(l) && !/Connection reset by peer|disconnected/.test(l)).slice(0, 5);
  if (warn.length) {
    out.push('');
    out.push('workerd logged (first lines):');
    out.push('');
    out.push('```');
    out.push(...warn.map((l) => l.slice(0, 300)));
    out.push('```');
  }
  const md = out.join('\n') + '\n';
  fs.writeFileSync(path.join(BENCH, 'results', 'latest.md'), md);
  fs.writeFileSync(path.join(OUT, 'raw.json'), JSON.stringify({ raw: raw.map(({ sc, results }) => ({ id: sc.id, results: results.map((r) => ({ ...r, byConn: Object.fromEntries(Object.entries(r.byConn).map(([k, v]) => [k, { ...v, wrk: v.wrk ? { ...v.wrk, raw: undefined } : undefined }])) })) })), dev, sizes }, null, 1));
  process.stdout.write(md);
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (e) => {
    log('FAILED:', e.stack ?? e);
    cleanup();
    process.exit(1);
  },
);
