// Integration suite for the reliability layer: retries with backoff and Retry-After, provider and
// model fallback, per-attempt and whole-request timeouts, streaming fallback before the first
// token (and a clean error after it), routing options (order / only / models) per request and per
// key, weighted load balancing, the circuit breaker, routing metadata and idempotent replay.
// Everything runs against the built worker in workerd (harness.mjs) and the fault-injecting
// upstream emulator (emulator.mjs), driven by the `openai` SDK wherever it can express the call.
// Needs `npm run build` first.
//
// Models with two providers (catalog order = default order):
//   anthropic/claude-sonnet-4-6      anthropic (/v1/messages)            → vertex (…/publishers/anthropic/…)
//   google/gemini-3.1-pro-preview    google (/v1beta/models/…)           → vertex (…/publishers/google/…)
// Single-provider models: openai/gpt-4o, xai/grok-3 (both /v1/chat/completions, told apart by key).
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import { startEmulator } from './emulator.mjs';
import { startGateway } from './harness.mjs';
import { apiError } from './clients.mjs';

const CLAUDE = 'anthropic/claude-sonnet-4-6';
const GEMINI = 'google/gemini-3.1-pro-preview';
const GPT = 'openai/gpt-4o';
const GROK = 'xai/grok-3';

// Emulator rule paths (substring match on path + query).
const ANTHROPIC_PATH = '/v1/messages';
const VERTEX_CLAUDE_PATH = '/publishers/anthropic/models/';
const GOOGLE_PATH = '/v1beta/models/';

const VERTEX_SA = readFileSync(new URL('./fixtures/vertex/test_service_account.json', import.meta.url), 'utf8');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const userMessage = (content) => [{ role: 'user', content }];
const gatewayOptions = (gateway) => ({ providerOptions: { gateway } });

let emu;
let deadPort;
let gw; // main gateway: deterministic catalog order, breaker effectively off
let key;

function vertexBindings(origin) {
  return {
    VERTEX_API_KEY: VERTEX_SA,
    VERTEX_PROJECT: 'p',
    VERTEX_LOCATION: 'us-east5',
    VERTEX_BASE_URL: origin,
    VERTEX_TOKEN_URL: `${origin}/token`,
  };
}

/** Bindings every gateway in this file gets: Vertex on the emulator, two attempts per provider, 10 ms backoff. */
function baseBindings(extra = {}) {
  return {
    ...vertexBindings(emu.url),
    RETRY_MAX_ATTEMPTS: '2',
    RETRY_BASE_DELAY_MS: '10',
    // The breaker is tested on its own gateway; here it must not open from the failures other
    // tests inject on purpose.
    BREAKER_THRESHOLD: '100000',
    ...extra,
  };
}

function client(gateway = gw, apiKey = key) {
  return new OpenAI({ apiKey, baseURL: `${gateway.url}/v1`, maxRetries: 0, timeout: 20_000 });
}

/** Which provider an emulator request was meant for. */
function providerOf(r) {
  if (r.protocol === 'token') return 'token';
  if (r.pathname.includes('/publishers/')) return 'vertex';
  if (r.pathname.endsWith('/v1/messages')) return 'anthropic';
  if (r.pathname.includes('/v1beta/models/')) return 'google';
  const m = (r.headers.authorization ?? '').match(/^Bearer sk-test-([a-z]+)$/);
  return m ? m[1] : `unknown(${r.pathname})`;
}

/** Upstream model calls (the Vertex token exchange left out), optionally only those after `from`. */
function upstreamCalls(from = 0) {
  return emu.requests.slice(from).filter((r) => r.protocol !== 'token');
}
const providersCalled = (from = 0) => upstreamCalls(from).map(providerOf);

function assertNoProviderOptionsUpstream() {
  assert.ok(emu.requests.length > 0, 'something reached the emulator');
  for (const r of emu.requests) {
    assert.ok(!r.rawBody.includes('providerOptions'), `providerOptions must not be forwarded upstream (${r.method} ${r.path}): ${r.rawBody.slice(0, 300)}`);
  }
}

function routingOf(data) {
  const routing = data?.providerMetadata?.gateway?.routing;
  assert.ok(routing && typeof routing === 'object', `providerMetadata.gateway.routing is present: ${JSON.stringify(data?.providerMetadata)}`);
  return routing;
}


/** Drains an SDK stream: text, finish reasons, chunk count, and the error it threw if any. */
async function drain(stream) {
  const out = { text: '', finishReasons: [], roles: 0, chunks: [], error: null };
  try {
    for await (const chunk of stream) {
      out.chunks.push(chunk);
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      if (choice.delta?.role) out.roles++;
      out.text += choice.delta?.content ?? '';
      if (choice.finish_reason) out.finishReasons.push(choice.finish_reason);
    }
  } catch (err) {
    out.error = err;
  }
  return out;
}

/** A streaming request read as raw SSE: the data payloads in order ('[DONE]' kept as is). */
async function rawStream(body, { gateway = gw, apiKey = key } = {}) {
  const res = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  let text = '';
  let cut = null;
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
  } catch (err) {
    cut = err;
  }
  const events = text
    .split(/\r?\n\r?\n/)
    .map((block) =>
      block
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n'),
    )
    .filter((d) => d.length > 0)
    .map((d) => {
      if (d === '[DONE]') return d;
      try {
        return JSON.parse(d);
      } catch {
        return { unparseable: d };
      }
    });
  return { status: res.status, headers: res.headers, text, events, cut };
}

/**
 * A raw stream that failed after its content: the gateway ended it itself with the routing chunk
 * (its serving attempt marked `stream_failed`), one error event and one `[DONE]`, in that order.
 * Returns the error and the events before the routing chunk.
 */
function failedAfterContent(res) {
  assert.equal(res.cut, null, `the gateway ended the stream itself (${res.cut?.message})`);
  const { events } = res;
  assert.equal(events.at(-1), '[DONE]');
  assert.equal(events.filter((e) => e === '[DONE]').length, 1);
  const error = events.at(-2)?.error;
  assert.ok(error, `an error event right before [DONE]: ${res.text.slice(-400)}`);
  const routingAt = events.findIndex((e) => e?.providerMetadata?.gateway?.routing);
  assert.equal(routingAt, events.length - 3, 'the routing chunk comes right before the error event');
  assert.equal(events[routingAt].providerMetadata.gateway.routing.attempts.at(-1).errorKind, 'stream_failed');
  return { error, before: events.slice(0, -3) };
}

before(async () => {
  emu = await startEmulator();
  // A port with nothing listening, for "connection refused".
  const probe = http.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  deadPort = probe.address().port;
  await new Promise((r) => probe.close(r));

  gw = await startGateway({ emulatorUrl: emu.url, bindings: baseBindings() });
  key = await gw.createKey('reliability-main');
});

after(async () => {
  await gw?.dispose();
  await emu?.close();
});

beforeEach(() => emu?.reset());

// ---------------------------------------------------------------------------------------------

describe('retries', () => {
  test('500 then success: the same provider is retried, both attempts reported', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 500, times: 1 });
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('retry me') })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, 'Hello from emulator: retry me');
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic'], 'retried on anthropic; vertex not needed');
    assert.deepEqual(upstreamCalls().map((r) => r.status), [500, 200]);
    assert.equal(response.headers.get('x-switchyard-attempts'), 'anthropic:500,anthropic:200');
    assert.equal(response.headers.get('x-switchyard-provider'), 'anthropic');
  });

  test('a non-streamed answer whose body stalls or is cut after its head: the attempt fails (timeout, connection), the retry serves', async () => {
    const quick = await startGateway({ emulatorUrl: emu.url, bindings: baseBindings({ DEFAULT_TIMEOUT_MS: '800' }) });
    try {
      const k = await quick.createKey('body');
      const head = '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",';
      for (const [fault, kind] of [
        [{ stallAfter: 1 }, 'timeout'],
        [{ cutAfter: 1 }, 'connection_failed'],
      ]) {
        emu.reset();
        // A JSON head and the start of its body, then nothing more (or the connection cut).
        emu.script({ match: { model: 'gpt-4o' }, stream: [{ raw: head }, { raw: '"choices":[]}' }], headers: { 'content-type': 'application/json' }, ...fault });
        const started = Date.now();
        const { data, response } = await client(quick, k)
          .chat.completions.create({ model: GPT, messages: userMessage('whole body') })
          .withResponse();
        assert.equal(data.choices[0].message.content, 'Hello from emulator: whole body', kind);
        assert.equal(response.headers.get('x-switchyard-attempts'), `openai:${kind},openai:200`);
        assert.ok(Date.now() - started < 5000, `${kind}: within the attempt's time, not the total`);
        if (fault.stallAfter) {
          const [stalled] = upstreamCalls();
          assert.ok(await emu.waitFor(() => stalled.clientClosed, 3000).catch(() => false), 'the stalled body was let go');
        }
      }
    } finally {
      await quick.dispose();
    }
  });

  test('every retryable status (408 409 429 500 502 503 504 529) is retried once, then succeeds', async () => {
    for (const status of [408, 409, 429, 500, 502, 503, 504, 529]) {
      emu.reset();
      emu.script({ match: { model: 'gpt-4o' }, status, times: 1 });
      const { data, response } = await client()
        .chat.completions.create({ model: GPT, messages: userMessage(`after ${status}`) })
        .withResponse();
      assert.equal(data.choices[0].message.content, `Hello from emulator: after ${status}`, `after an upstream ${status}`);
      assert.deepEqual(providersCalled(), ['openai', 'openai'], `two upstream calls after an upstream ${status}`);
      assert.equal(response.headers.get('x-switchyard-attempts'), `openai:${status},openai:200`);
    }
  });

  test('429 with Retry-After: 1 — the retry waits at least one second', async () => {
    emu.script({ match: { model: 'gpt-4o' }, status: 429, headers: { 'retry-after': '1' }, times: 1 });
    const { data, response } = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('patience') })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: patience');
    const [first, second] = upstreamCalls();
    assert.ok(first && second, `two upstream calls (got ${upstreamCalls().length})`);
    assert.equal(upstreamCalls().length, 2);
    const gap = second.receivedAt - first.receivedAt;
    assert.ok(gap >= 1000, `the retry came ${gap} ms after the 429; Retry-After asked for 1000 ms`);
    assert.ok(gap < 5000, `the retry came ${gap} ms after the 429 (far more than asked)`);
    assert.equal(response.headers.get('x-switchyard-attempts'), 'openai:429,openai:200');
  });

  test('429 with retry-after-ms: 400 — the retry waits at least 400 ms (backoff base is 10 ms)', async () => {
    emu.script({ match: { model: 'gpt-4o' }, status: 429, headers: { 'retry-after-ms': '400' }, times: 1 });
    const { response } = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('patience ms') })
      .withResponse();
    assert.equal(response.status, 200);
    const [first, second] = upstreamCalls();
    assert.equal(upstreamCalls().length, 2);
    const gap = second.receivedAt - first.receivedAt;
    assert.ok(gap >= 400, `the retry came ${gap} ms after the 429; retry-after-ms asked for 400 ms`);
    assert.ok(gap < 3000, `the retry came ${gap} ms after the 429 (far more than asked)`);
  });

  test('a Retry-After beyond the remaining budget moves on to the next provider instead of waiting', async () => {
    // 3 s is under the longest backoff the gateway waits (8 s): only the budget can skip it.
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 429, headers: { 'retry-after': '3' }, persistent: true });
    const started = Date.now();
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('no time to wait'), ...gatewayOptions({ totalTimeoutMs: 2000 }) })
      .withResponse();
    const elapsed = Date.now() - started;
    assert.equal(data.choices[0].message.content, 'Hello from emulator: no time to wait');
    assert.deepEqual(providersCalled(), ['anthropic', 'vertex'], 'anthropic not retried (its wait exceeds the budget), vertex serves');
    assert.ok(elapsed < 1500, `answered in ${elapsed} ms: the 3 s Retry-After was not waited for`);
    assert.equal(response.headers.get('x-switchyard-attempts'), 'anthropic:429,vertex:200');
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assertNoProviderOptionsUpstream();
  });

  // Its size follows from the request: one attempt, a final 502, no fallback paying for the same
  // generation again, and no breaker opened by it.
  test('an answer announced over 24 MiB is not read: a final 502 after one attempt', async () => {
    // On a gateway whose breakers open after 2 failures: four of these leave openai first.
    const strict = await startGateway({ emulatorUrl: emu.url, bindings: baseBindings({ BREAKER_THRESHOLD: '2' }) });
    try {
      const sdk = client(strict, await strict.createKey('huge'));
      const huge = `{"id":"huge","object":"chat.completion","pad":"${'x'.repeat(25 * 1024 * 1024)}"}`;
      emu.script({ match: { model: 'gpt-4o' }, body: huge, headers: { 'content-type': 'application/json' }, persistent: true });
      for (let i = 0; i < 4; i++) {
        const err = await apiError(
          sdk.chat.completions.create({
            model: GPT,
            messages: userMessage('too much'),
            providerOptions: { gateway: { models: ['xai/grok-3'] } },
          }),
          502,
        );
        assert.equal(err.code, 'upstream_response_too_large');
      }
      assert.deepEqual(providersCalled(), ['openai', 'openai', 'openai', 'openai'], 'no retry, no fallback, still tried first');
      // A real failure still counts on that gateway: two 503s open openai's breaker.
      emu.reset();
      emu.script({ match: { model: 'gpt-4o' }, status: 503, times: 2 });
      await sdk.chat.completions.create({ model: GPT, messages: userMessage('fails'), providerOptions: { gateway: { models: ['xai/grok-3'] } } });
      const from = emu.requests.length;
      await sdk.chat.completions.create({ model: GPT, messages: userMessage('skips'), providerOptions: { gateway: { models: ['xai/grok-3'] } } });
      assert.deepEqual(providersCalled(from), ['xai'], 'the breaker is open after real failures');
    } finally {
      await strict.dispose();
    }
  });

  for (const bodyEncoding of ['chunked', 'gzip']) {
    test(`an answer over 24 MiB with no length announced (${bodyEncoding}) is dropped at the limit`, async () => {
      const huge = `{"id":"huge","object":"chat.completion","pad":"${'x'.repeat(25 * 1024 * 1024)}"}`;
      emu.script({ match: { model: 'gpt-4o' }, body: huge, bodyEncoding, headers: { 'content-type': 'application/json' }, times: 1 });
      const err = await apiError(client().chat.completions.create({ model: GPT, messages: userMessage('not that much') }), 502);
      assert.equal(err.code, 'upstream_response_too_large');
      assert.equal(err.headers.get('x-switchyard-attempts'), 'openai:response_too_large');
      assert.equal(err.headers.get('x-should-retry'), 'false', 'a client retry would get the same');
      assert.deepEqual(providersCalled(), ['openai']);

      // Under the limit, the same encoding is read whole.
      emu.reset();
      const fine = JSON.stringify({
        id: 'chatcmpl-fine',
        object: 'chat.completion',
        created: 1764201600,
        model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: 'unannounced but fine' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
        pad: 'y'.repeat(1024 * 1024),
      });
      emu.script({ match: { model: 'gpt-4o' }, body: fine, bodyEncoding, headers: { 'content-type': 'application/json' }, times: 1 });
      const ok = await client().chat.completions.create({ model: GPT, messages: userMessage('fine') });
      assert.equal(ok.choices[0].message.content, 'unannounced but fine');
      assert.equal(ok.pad.length, 1024 * 1024);
    });
  }

  test('malformed upstream JSON is retryable: retried on the same provider, then falls back', async () => {
    // OpenAI-compatible provider: one malformed body, the retry serves.
    emu.script({ match: { model: 'gpt-4o' }, malformed: true, times: 1 });
    const { data, response } = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('parse me') })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: parse me');
    assert.deepEqual(providersCalled(), ['openai', 'openai']);
    const attempts = (response.headers.get('x-switchyard-attempts') ?? '').split(',');
    assert.equal(attempts.length, 2, `two attempts reported: ${attempts}`);
    assert.equal(attempts[1], 'openai:200');
    assert.match(attempts[0], /^openai:/);
    assert.notEqual(attempts[0], 'openai:200', 'the malformed attempt is reported as a failure, not as a plain 200');

    // Translated provider: always malformed → both anthropic attempts fail, vertex serves.
    emu.reset();
    emu.script({ match: { path: ANTHROPIC_PATH }, malformed: true, persistent: true });
    const second = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('parse me too') })
      .withResponse();
    assert.equal(second.data.choices[0].message.content, 'Hello from emulator: parse me too');
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
    assert.equal(second.response.headers.get('x-switchyard-provider'), 'vertex');
  });

  test('non-retryable errors (400 401 403 404 422, context length) go straight back: one upstream call', async () => {
    const cases = [
      { status: 400, expect: 400 },
      { status: 401, expect: null }, // the gateway's own provider credential: mapped, not passed through
      { status: 403, expect: 403 },
      { status: 404, expect: 404 },
      { status: 422, expect: 422 },
      { status: 400, expect: 400, message: 'prompt is too long: 250000 tokens > 200000 maximum' },
    ];
    for (const c of cases) {
      emu.reset();
      emu.script({ match: { path: ANTHROPIC_PATH }, status: c.status, message: c.message, persistent: true });
      let err = null;
      try {
        await client().chat.completions.create({ model: CLAUDE, messages: userMessage('no retry') });
      } catch (e) {
        err = e;
      }
      const label = `upstream ${c.status}${c.message ? ' (context length)' : ''}`;
      assert.ok(err instanceof OpenAI.APIError, `${label}: the client gets an error (got ${err})`);
      if (c.expect !== null) assert.equal(err.status, c.expect, `${label}: status kept`);
      else {
        // The provider refused the gateway's own key: the client's key is fine.
        assert.equal(err.status, 502, `${label}: a 502, not a 401 about the client's key`);
        assert.equal(err.code, 'upstream_authentication_failed');
        assert.match(err.error.message, /ANTHROPIC_API_KEY/, 'names the variable to renew');
        assert.ok(!err.error.message.includes('x-api-key'), `the provider's own message is not passed on: ${err.error.message}`);
        assert.equal(err.headers.get('x-should-retry'), 'false');
      }
      assert.deepEqual(providersCalled(), ['anthropic'], `${label}: exactly one upstream call, vertex not tried`);
      const attempts = err.headers.get('x-switchyard-attempts') ?? '';
      if (c.expect !== null) assert.equal(attempts, `anthropic:${c.status}`, `${label}: attempts header`);
      else assert.match(attempts, /^anthropic:[^,]+$/, `${label}: one attempt in the attempts header`);
    }

    // Nor does a non-retryable error move on to a fallback model.
    emu.reset();
    emu.script({ match: { model: 'gpt-4o' }, status: 400, persistent: true });
    await apiError(client().chat.completions.create({ model: GPT, messages: userMessage('x'), ...gatewayOptions({ models: [GROK] }) }), 400);
    assert.deepEqual(providersCalled(), ['openai'], 'a 400 does not fall back to another model');
  });

  test('total failure: the last attempt’s error and status, with the attempts header', async () => {
    emu.script(
      { match: { path: ANTHROPIC_PATH }, status: 503, persistent: true },
      { match: { path: VERTEX_CLAUDE_PATH }, status: 429, persistent: true },
    );
    const err = await apiError(client().chat.completions.create({ model: CLAUDE, messages: userMessage('nobody home') }), 429);
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex', 'vertex']);
    assert.equal(err.headers.get('x-switchyard-attempts'), 'anthropic:503,anthropic:503,vertex:429,vertex:429');
    assert.equal(err.headers.get('x-switchyard-provider'), 'vertex');
  });
});

// ---------------------------------------------------------------------------------------------

describe('fallback and timeouts', () => {
  test('503 on anthropic (both attempts) → vertex serves', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 503, persistent: true });
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('fall back') })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].message.content, 'Hello from emulator: fall back');
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
    assert.equal(upstreamCalls()[2].path, '/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:rawPredict');
    assert.equal(response.headers.get('x-switchyard-attempts'), 'anthropic:503,anthropic:503,vertex:200');
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
  });

  test('connection refused (ANTHROPIC_BASE_URL at a closed port) → vertex serves', async () => {
    const refused = await startGateway({
      emulatorUrl: emu.url,
      bindings: baseBindings({ ANTHROPIC_BASE_URL: `http://127.0.0.1:${deadPort}` }),
    });
    try {
      const k = await refused.createKey('refused');
      const { data, response } = await client(refused, k)
        .chat.completions.create({ model: CLAUDE, messages: userMessage('anyone there') })
        .withResponse();
      assert.equal(data.choices[0].message.content, 'Hello from emulator: anyone there');
      assert.deepEqual(providersCalled(), ['vertex'], 'only vertex reached the emulator');
      assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
      const attempts = (response.headers.get('x-switchyard-attempts') ?? '').split(',');
      assert.equal(attempts.length, 3, `two refused anthropic attempts then vertex: ${attempts}`);
      for (const a of attempts.slice(0, 2)) assert.match(a, /^anthropic:[a-z_-]+$/i, `a refused attempt names its error kind: ${a}`);
      assert.equal(attempts[2], 'vertex:200');
      const routing = routingOf(data);
      assert.equal(routing.attempts[0].provider, 'anthropic');
      assert.equal(typeof routing.attempts[0].errorKind, 'string');
      assert.ok(routing.attempts[0].errorKind.length > 0, 'errorKind is set on a connect failure');
    } finally {
      await refused.dispose();
    }
  });

  test('a hang past timeoutMs: 300 is aborted upstream and the next attempt serves', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, hang: true, persistent: true });
    const started = Date.now();
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('wake up'), ...gatewayOptions({ timeoutMs: 300 }) })
      .withResponse();
    const elapsed = Date.now() - started;
    assert.equal(data.choices[0].message.content, 'Hello from emulator: wake up');
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
    assert.ok(elapsed < 4000, `answered in ${elapsed} ms (two 300 ms timeouts, then vertex)`);
    for (const hung of upstreamCalls().filter((r) => providerOf(r) === 'anthropic')) {
      const closed = await emu.waitFor(() => hung.clientClosed, 3000).catch(() => false);
      assert.ok(closed, `the hung anthropic attempt #${hung.seq} was aborted (emulator saw its socket closed)`);
      const lived = hung.closedAt - hung.receivedAt;
      assert.ok(lived >= 200 && lived < 2000, `the hung attempt was aborted after ${lived} ms (timeoutMs 300)`);
    }
    const attempts = (response.headers.get('x-switchyard-attempts') ?? '').split(',');
    assert.equal(attempts.length, 3, `attempts: ${attempts}`);
    for (const a of attempts.slice(0, 2)) assert.match(a, /^anthropic:[a-z_-]+$/i, `a timed-out attempt names its error kind: ${a}`);
    assert.equal(attempts[2], 'vertex:200');
    assertNoProviderOptionsUpstream();
  });

  test('every attempt times out → 504, each attempt aborted', async () => {
    emu.script({ match: { model: 'gpt-4o' }, hang: true, persistent: true });
    const started = Date.now();
    const err = await apiError(client().chat.completions.create({ model: GPT, messages: userMessage('void'), ...gatewayOptions({ timeoutMs: 300 }) }), 504);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 3000, `504 after ${elapsed} ms`);
    assert.deepEqual(providersCalled(), ['openai', 'openai']);
    for (const hung of upstreamCalls()) {
      assert.ok(await emu.waitFor(() => hung.clientClosed, 3000).catch(() => false), `attempt #${hung.seq} aborted upstream`);
    }
    const attempts = (err.headers.get('x-switchyard-attempts') ?? '').split(',');
    assert.equal(attempts.length, 2, `attempts header on the 504: ${attempts}`);
    assert.ok(attempts.every((a) => /^openai:[a-z_-]+$/i.test(a)), `attempts: ${attempts}`);
    assertNoProviderOptionsUpstream();
  });

  test('totalTimeoutMs bounds the whole request: 504 in time, upstream aborted', async () => {
    emu.script({ match: { model: 'gpt-4o' }, delayMs: 3000, persistent: true });
    const started = Date.now();
    await apiError(
      client().chat.completions.create({ model: GPT, messages: userMessage('too slow'), ...gatewayOptions({ timeoutMs: 10_000, totalTimeoutMs: 700 }) }),
      504,
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 600 && elapsed < 2000, `504 after ${elapsed} ms (totalTimeoutMs 700, upstream answers after 3000)`);
    assert.ok(upstreamCalls().length >= 1);
    const first = upstreamCalls()[0];
    assert.ok(await emu.waitFor(() => first.clientClosed, 3000).catch(() => false), 'the slow attempt was aborted upstream');
  });
});

// ---------------------------------------------------------------------------------------------

describe('streaming fallback', () => {
  test('anthropic stream cut before the first token → vertex; the client sees one clean stream', async () => {
    // message_start and content_block_start (empty text) are sent, then the socket is destroyed.
    emu.script({ match: { path: ANTHROPIC_PATH }, cutAfter: 2, persistent: true });
    const { data: stream, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('stream fallback'), stream: true })
      .withResponse();
    const out = await drain(stream);
    assert.equal(out.error, null, `no error reached the client: ${out.error}`);
    assert.equal(out.text, 'Hello from emulator: stream fallback', 'the text once, from one provider');
    assert.ok(out.roles <= 1, `at most one role delta (got ${out.roles})`);
    assert.deepEqual(out.finishReasons, ['stop']);
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
    assert.ok(upstreamCalls().filter((r) => providerOf(r) === 'anthropic').every((r) => r.cut), 'both anthropic streams were cut');
    assert.match(upstreamCalls()[2].path, /:streamRawPredict$/);
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assert.match(response.headers.get('x-switchyard-attempts') ?? '', /^anthropic:[^,]+,anthropic:[^,]+,vertex:200$/);
  });

  test('google stream with an error event before any content → vertex (Gemini) serves cleanly', async () => {
    // The whole answer follows the error event: only the event itself says the stream failed.
    emu.script({ match: { path: GOOGLE_PATH }, errorAfter: 0, continueAfterError: true, persistent: true });
    const { data: stream, response } = await client()
      .chat.completions.create({ model: GEMINI, messages: userMessage('gemini fallback'), stream: true, ...gatewayOptions({ order: ['google', 'vertex'] }) })
      .withResponse();
    const out = await drain(stream);
    assert.equal(out.error, null, `no error reached the client: ${out.error}`);
    assert.equal(out.text, 'Hello from emulator: gemini fallback');
    assert.equal(out.finishReasons.length, 1, `one finish: ${out.finishReasons}`);
    assert.deepEqual(providersCalled(), ['google', 'google', 'vertex']);
    assert.match(upstreamCalls()[2].path, /\/publishers\/google\/models\/gemini-3\.1-pro-preview:streamGenerateContent/);
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assertNoProviderOptionsUpstream();
  });

  test('stream cut after content: the SDK throws, no fake finish, no fallback', async () => {
    // Events: message_start, content_block_start, ping, "Hello ", "from " — then the socket dies.
    emu.script({ match: { path: ANTHROPIC_PATH }, cutAfter: 5, persistent: true });
    const stream = await client().chat.completions.create({ model: CLAUDE, messages: userMessage('midway'), stream: true });
    const out = await drain(stream);
    assert.equal(out.text, 'Hello from ', 'the content sent before the cut reached the client');
    assert.ok(out.error instanceof OpenAI.APIError, `the SDK throws an APIError while iterating (got ${out.error?.constructor?.name}: ${out.error?.message})`);
    assert.deepEqual(out.finishReasons, [], 'never a fake finish');
    assert.deepEqual(providersCalled(), ['anthropic'], 'no retry and no fallback once content was sent');
  });

  test('error event after content, raw SSE: content, then data: {"error":…}, then [DONE]', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, errorAfter: 5, persistent: true });
    const res = await rawStream({ model: CLAUDE, messages: userMessage('midway raw') });
    assert.equal(res.status, 200);
    assert.equal(res.cut, null, `the gateway ended the stream cleanly, no cut (${res.cut?.message})`);
    const { events } = res;
    assert.equal(events.at(-1), '[DONE]', `the stream ends with [DONE]: ${res.text.slice(-300)}`);
    assert.equal(events.filter((e) => e === '[DONE]').length, 1);
    const errorIndex = events.findIndex((e) => e && typeof e === 'object' && e.error);
    assert.ok(errorIndex >= 0, `an error event was sent: ${res.text.slice(-500)}`);
    assert.equal(errorIndex, events.length - 2, 'the error event comes right before [DONE]');
    const routing = events[errorIndex - 1]?.providerMetadata?.gateway?.routing;
    assert.ok(routing, 'the routing chunk comes right before the error event');
    assert.deepEqual(
      routing.attempts.map((a) => [a.provider, a.status, a.errorKind]),
      [['anthropic', 200, 'stream_failed']],
      'the serving attempt is marked as failed after its content',
    );
    const err = events[errorIndex].error;
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0);
    const chunks = events.slice(0, errorIndex);
    assert.ok(chunks.every((c) => c && c.object === 'chat.completion.chunk'), 'only chunks before the error');
    assert.equal(chunks.filter((c) => c.providerMetadata).length, 1, 'one routing chunk');
    const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Hello from ');
    assert.ok(chunks.every((c) => !c.choices?.[0]?.finish_reason), 'no finish_reason before the error');
    assert.deepEqual(providersCalled(), ['anthropic'], 'vertex never called');
  });
});

// ---------------------------------------------------------------------------------------------

/** An OpenAI stream chunk as a provider sends it. */
const oaChunk = (delta, finish = null) => ({
  id: 'chatcmpl-emu',
  object: 'chat.completion.chunk',
  created: 1764201600,
  model: 'gpt-4o',
  choices: [{ index: 0, delta, finish_reason: finish }],
});

describe('stream faults', () => {
  test('a stream with no content within timeoutMs is abandoned for the next target; the client sees one clean stream', async () => {
    // The role chunk comes at once, the first text a second later.
    emu.script({ match: { model: 'gpt-4o' }, eventDelayMs: 1000, persistent: true });
    const started = Date.now();
    const { data: stream, response } = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('slow start'), stream: true, ...gatewayOptions({ timeoutMs: 300, models: [GROK] }) })
      .withResponse();
    const out = await drain(stream);
    assert.equal(out.error, null, String(out.error));
    assert.equal(out.text, 'Hello from emulator: slow start');
    assert.equal(out.roles, 1, 'one role delta: nothing of the abandoned stream reached the client');
    assert.deepEqual(out.finishReasons, ['stop']);
    assert.match(response.headers.get('x-switchyard-attempts') ?? '', /^openai:timeout,openai:timeout,xai:200$/);
    assert.ok(Date.now() - started < 3000, 'two 300 ms attempts, then xai');
    for (const slow of upstreamCalls().filter((r) => providerOf(r) === 'openai')) {
      assert.ok(await emu.waitFor(() => slow.clientClosed, 3000).catch(() => false), `attempt #${slow.seq} was cancelled upstream`);
    }
  });

  test('once content has started, the attempt and request timeouts no longer cut a slow stream', async () => {
    emu.script({
      match: { model: 'gpt-4o' },
      eventDelayMs: 600,
      stream: [oaChunk({ role: 'assistant', content: 'A' }), oaChunk({ content: 'B' }), oaChunk({ content: 'C' }), oaChunk({}, 'stop'), '[DONE]'],
    });
    const stream = await client().chat.completions.create({
      model: GPT,
      messages: userMessage('take your time'),
      stream: true,
      ...gatewayOptions({ timeoutMs: 300, totalTimeoutMs: 1000 }),
    });
    const out = await drain(stream);
    assert.equal(out.error, null, String(out.error));
    assert.equal(out.text, 'ABC', 'events 1.8 s apart in all, past both timeouts');
    assert.deepEqual(out.finishReasons, ['stop']);
    const [call] = upstreamCalls();
    assert.ok(call.finished && !call.clientClosed, 'the provider finished its stream');
  });

  test('a provider silent past STREAM_IDLE_TIMEOUT_MS after content: routing, a stream_interrupted error, [DONE]; its request cancelled', async () => {
    const idle = await startGateway({ emulatorUrl: emu.url, bindings: baseBindings({ STREAM_IDLE_TIMEOUT_MS: '700' }) });
    try {
      const k = await idle.createKey('idle');
      // Gaps under the limit pass, however long the stream takes in all.
      emu.script({
        match: { model: 'gpt-4o' },
        eventDelayMs: 400,
        stream: [oaChunk({ role: 'assistant', content: 'A' }), oaChunk({ content: 'B' }), oaChunk({ content: 'C' }), oaChunk({ content: 'D' }), oaChunk({}, 'stop'), '[DONE]'],
      });
      const slow = await drain(await client(idle, k).chat.completions.create({ model: GPT, messages: userMessage('steady'), stream: true }));
      assert.equal(slow.error, null, String(slow.error));
      assert.equal(slow.text, 'ABCD', 'five 400 ms gaps (2 s in all) under a 700 ms idle limit');
      assert.deepEqual(slow.finishReasons, ['stop']);

      // OpenAI-compatible: three events (role, two words), then nothing, the connection open.
      emu.reset();
      emu.script({ match: { model: 'gpt-4o' }, stallAfter: 3 });
      const started = Date.now();
      const res = await rawStream({ model: GPT, messages: userMessage('go quiet now please') }, { gateway: idle, apiKey: k });
      const waited = Date.now() - started;
      const { error, before } = failedAfterContent(res);
      assert.equal(error.code, 'stream_interrupted');
      assert.match(error.message, /STREAM_IDLE_TIMEOUT_MS/);
      assert.equal(before.map((e) => e.choices?.[0]?.delta?.content ?? '').join(''), 'Hello from ');
      assert.ok(waited >= 700, `not before the idle limit (${waited} ms)`);
      const [quiet] = upstreamCalls();
      assert.ok(quiet.stalled);
      assert.ok(await emu.waitFor(() => quiet.clientClosed, 3000).catch(() => false), 'the silent provider request was cancelled');

      // Translated (Anthropic): the SDK sees the text, then an error, never a finish.
      emu.reset();
      emu.script({ match: { path: ANTHROPIC_PATH }, stallAfter: 5 });
      const out = await drain(await client(idle, k).chat.completions.create({ model: CLAUDE, messages: userMessage('go quiet'), stream: true }));
      assert.equal(out.text, 'Hello from ');
      assert.ok(out.error instanceof OpenAI.APIError, `the SDK throws an APIError (got ${out.error?.constructor?.name}: ${out.error?.message})`);
      assert.match(out.error.message, /STREAM_IDLE_TIMEOUT_MS/);
      assert.deepEqual(out.finishReasons, []);
      assert.deepEqual(providersCalled(), ['anthropic'], 'no fallback once content was sent');
      const [anthropic] = upstreamCalls();
      assert.ok(await emu.waitFor(() => anthropic.clientClosed, 3000).catch(() => false), 'the silent provider request was cancelled');
    } finally {
      await idle.dispose();
    }
  });

  test('a provider that holds its connection open after the end: the client\'s stream ends at once, the provider let go', async () => {
    const anthropicEvents = [
      { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, usage: { input_tokens: 5, output_tokens: 1 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Done.' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } },
      { type: 'message_stop' },
    ];
    const oaEvents = [oaChunk({ role: 'assistant', content: 'Done.' }), oaChunk({}, 'stop'), '[DONE]'];
    // The same answers as one piece (a short answer's first read holds its end).
    const oaWhole = oaEvents.map((e) => (e === '[DONE]' ? 'data: [DONE]\n\n' : `data: ${JSON.stringify(e)}\n\n`)).join('');
    const anthropicWhole = anthropicEvents.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('');
    for (const [model, match, events] of [
      [GPT, { model: 'gpt-4o' }, oaEvents],
      [CLAUDE, { path: ANTHROPIC_PATH }, anthropicEvents],
      [GPT, { model: 'gpt-4o' }, [{ raw: oaWhole }]],
      [CLAUDE, { path: ANTHROPIC_PATH }, [{ raw: anthropicWhole }]],
    ]) {
      emu.reset();
      // The whole answer, then a keep-alive comment that never comes: the connection stays open.
      emu.script({ match, stream: [...events, { raw: ': keep-alive\n\n' }], stallAfter: events.length, eventDelayMs: events.length > 1 ? 20 : 0 });
      const started = Date.now();
      const stream = await client().chat.completions.create({ model, messages: userMessage('and hold'), stream: true });
      const out = await Promise.race([drain(stream), sleep(5000).then(() => 'still open after 5 s')]);
      assert.notEqual(out, 'still open after 5 s', model);
      assert.equal(out.error, null, String(out.error));
      assert.equal(out.text, 'Done.');
      assert.deepEqual(out.finishReasons, ['stop']);
      assert.ok(Date.now() - started < 5000);
      const [held] = upstreamCalls();
      assert.ok(held.stalled, 'the provider held its connection open');
      assert.ok(await emu.waitFor(() => held.clientClosed, 3000).catch(() => false), `${model}: the provider's request was let go`);
    }
  });

  test('OpenAI-compatible stream: an error event before content falls back; a cut after content ends with routing, error, one [DONE]', async () => {
    emu.script({ match: { model: 'gpt-4o' }, errorAfter: 0, continueAfterError: true, persistent: true });
    const out = await drain(
      await client().chat.completions.create({ model: GPT, messages: userMessage('fall back'), stream: true, ...gatewayOptions({ models: [GROK] }) }),
    );
    assert.equal(out.error, null, String(out.error));
    assert.equal(out.text, 'Hello from emulator: fall back');
    assert.deepEqual(providersCalled(), ['openai', 'openai', 'xai']);

    emu.reset();
    emu.script({ match: { model: 'gpt-4o' }, cutAfter: 3, persistent: true });
    const res = await rawStream({ model: GPT, messages: userMessage('cut me off please'), ...gatewayOptions({ models: [GROK] }) });
    const { error, before } = failedAfterContent(res);
    assert.equal(error.provider, 'openai');
    assert.equal(error.code, 'stream_interrupted');
    assert.ok(before.every((e) => !e.choices?.[0]?.finish_reason), 'no fake finish');
    assert.ok(before.map((e) => e.choices?.[0]?.delta?.content ?? '').join('').length > 0, 'the content sent is kept');
    assert.deepEqual(providersCalled(), ['openai'], 'no fallback once content was sent');
  });

  test('OpenAI-compatible stream: error events before content in the shapes providers send fall back (numeric codes, bare strings)', async () => {
    for (const [shape, error] of [
      ['OpenRouter', { code: 502, message: 'Provider returned error' }],
      ['vLLM', { object: 'error', message: 'engine died', type: 'InternalServerError', code: 500 }],
      ['Groq', 'Service Unavailable'],
    ]) {
      emu.reset();
      // The answer follows the error event: only the event itself says the stream failed.
      emu.script({
        match: { model: 'gpt-4o' },
        stream: [{ raw: `data: ${JSON.stringify({ error })}\n\n` }, { choices: [{ index: 0, delta: { content: 'LEAK' }, finish_reason: null }] }, { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }, '[DONE]'],
        persistent: true,
      });
      const out = await drain(
        await client().chat.completions.create({ model: GPT, messages: userMessage(shape), stream: true, ...gatewayOptions({ models: [GROK] }) }),
      );
      assert.equal(out.error, null, `${shape}: ${out.error}`);
      assert.equal(out.text, `Hello from emulator: ${shape}`);
      assert.deepEqual(providersCalled(), ['openai', 'openai', 'xai'], shape);
    }
  });

  test('a redirect from a provider is not followed: the key and the prompt stay home', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 307, headers: { location: `${emu.url}/elsewhere/v1/messages` }, body: '', persistent: true });
    const err = await apiError(client().chat.completions.create({ model: CLAUDE, messages: userMessage('redirect me'), ...gatewayOptions({ only: ['anthropic'] }) }), 502);
    assert.equal(err.code, 'upstream_redirect');
    assert.match(err.message, /ANTHROPIC_BASE_URL/);
    assert.ok(!emu.requests.some((r) => r.path.includes('/elsewhere')), 'the redirect was not followed');
  });

  test('a stream opening with an event that is not JSON falls back, on every protocol', async () => {
    // The whole answer follows the bad event: only judging the event fails the attempt.
    emu.script({ match: { model: 'gpt-4o' }, malformed: true, continueAfterError: true, persistent: true });
    emu.script({ match: { path: ANTHROPIC_PATH }, malformed: true, continueAfterError: true, persistent: true });
    emu.script({ match: { path: GOOGLE_PATH }, malformed: true, continueAfterError: true, persistent: true });
    for (const [model, fallback, expected] of [
      [GPT, { models: [GROK] }, ['openai', 'openai', 'xai']],
      [CLAUDE, {}, ['anthropic', 'anthropic', 'vertex']],
      [GEMINI, {}, ['google', 'google', 'vertex']],
    ]) {
      const from = emu.requests.length;
      const out = await drain(
        await client().chat.completions.create({ model, messages: userMessage(`garbage from ${model}`), stream: true, ...gatewayOptions(fallback) }),
      );
      assert.equal(out.error, null, `${model}: ${out.error}`);
      assert.equal(out.text, `Hello from emulator: garbage from ${model}`);
      assert.deepEqual(providersCalled(from), expected, model);
    }
  });

  test('a connection reset before the answer is retried, then the next provider serves (JSON and stream)', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, reset: true, persistent: true });
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('reset') })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: reset');
    assert.match(response.headers.get('x-switchyard-attempts') ?? '', /^anthropic:[a-z_]+,anthropic:[a-z_]+,vertex:200$/);
    assert.ok(routingOf(data).attempts[0].errorKind, 'the reset attempt names its error kind');
    const from = emu.requests.length;
    const out = await drain(await client().chat.completions.create({ model: CLAUDE, messages: userMessage('reset stream'), stream: true }));
    assert.equal(out.error, null, String(out.error));
    assert.equal(out.text, 'Hello from emulator: reset stream');
    assert.deepEqual(providersCalled(from), ['anthropic', 'anthropic', 'vertex']);
  });

  test('errors a retry cannot end are not retried by an SDK that retries (x-should-retry: false)', async () => {
    const retrying = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 2, timeout: 20_000 });
    const huge = `{"id":"huge","object":"chat.completion","pad":"${'x'.repeat(25 * 1024 * 1024)}"}`;
    emu.script({ match: { model: 'gpt-4o' }, body: huge, headers: { 'content-type': 'application/json' }, persistent: true });
    const err = await apiError(retrying.chat.completions.create({ model: GPT, messages: userMessage('too much') }), 502);
    assert.equal(err.code, 'upstream_response_too_large');
    assert.equal(upstreamCalls().length, 1, 'the SDK did not retry');
    // Control: a 503 everywhere is retried by the SDK (three requests, two attempts each).
    emu.reset();
    emu.script({ match: { model: 'gpt-4o' }, status: 503, persistent: true });
    await apiError(retrying.chat.completions.create({ model: GPT, messages: userMessage('busy') }), 503);
    assert.equal(upstreamCalls().length, 6, 'the SDK retried twice, the gateway tried twice each time');
  });
});

// ---------------------------------------------------------------------------------------------

describe('routing options', () => {
  test('order reverses the default: vertex first, anthropic only as fallback', async () => {
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('vertex first'), ...gatewayOptions({ order: ['vertex', 'anthropic'] }) })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: vertex first');
    assert.deepEqual(providersCalled(), ['vertex']);
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assert.equal(response.headers.get('x-switchyard-attempts'), 'vertex:200');
    assertNoProviderOptionsUpstream();

    emu.reset();
    emu.script({ match: { path: VERTEX_CLAUDE_PATH }, status: 503, persistent: true });
    const second = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('then anthropic'), ...gatewayOptions({ order: ['vertex'] }) })
      .withResponse();
    assert.equal(second.data.choices[0].message.content, 'Hello from emulator: then anthropic');
    assert.deepEqual(providersCalled(), ['vertex', 'vertex', 'anthropic'], 'order lists vertex only: the rest follow in default order');
    assert.equal(second.response.headers.get('x-switchyard-attempts'), 'vertex:503,vertex:503,anthropic:200');
    assertNoProviderOptionsUpstream();

    // Gemini too: order puts Vertex ahead of Google.
    emu.reset();
    const gemini = await client()
      .chat.completions.create({ model: GEMINI, messages: userMessage('gemini via vertex'), ...gatewayOptions({ order: ['vertex'] }) })
      .withResponse();
    assert.equal(gemini.data.choices[0].message.content, 'Hello from emulator: gemini via vertex');
    assert.deepEqual(providersCalled(), ['vertex']);
    assert.match(upstreamCalls()[0].path, /\/publishers\/google\/models\/gemini-3\.1-pro-preview:generateContent$/);
    assertNoProviderOptionsUpstream();
  });

  test('only is a strict allow-list: an excluded provider is never called, even when it is healthy', async () => {
    // Healthy anthropic, only vertex allowed.
    const ok = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('vertex only'), ...gatewayOptions({ only: ['vertex'] }) })
      .withResponse();
    assert.equal(ok.data.choices[0].message.content, 'Hello from emulator: vertex only');
    assert.deepEqual(providersCalled(), ['vertex']);
    assertNoProviderOptionsUpstream();

    // Vertex failing: the error comes back; healthy anthropic is still never called.
    emu.reset();
    emu.script({ match: { path: VERTEX_CLAUDE_PATH }, status: 503, persistent: true });
    const err = await apiError(
      client().chat.completions.create({ model: CLAUDE, messages: userMessage('vertex only, down'), ...gatewayOptions({ only: ['vertex'] }) }),
      503,
    );
    assert.deepEqual(providersCalled(), ['vertex', 'vertex'], 'anthropic, excluded by only, is never called');
    assert.equal(err.headers.get('x-switchyard-attempts'), 'vertex:503,vertex:503');
    assert.match(JSON.stringify(err.error), /vertex/i, 'the failing provider is named in the error');
    assertNoProviderOptionsUpstream();
  });

  test('models: openai/gpt-4o down → falls back to xai/grok-3; routing metadata names both', async () => {
    emu.script({ match: { model: 'gpt-4o' }, status: 503, persistent: true });
    const { data, response } = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('any model will do'), ...gatewayOptions({ models: [GROK] }) })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: any model will do');
    assert.deepEqual(providersCalled(), ['openai', 'openai', 'xai']);
    assert.deepEqual(upstreamCalls().map((r) => r.body.model), ['gpt-4o', 'gpt-4o', 'grok-3']);
    assert.equal(response.headers.get('x-switchyard-provider'), 'xai');
    assert.equal(response.headers.get('x-switchyard-attempts'), 'openai:503,openai:503,xai:200');
    const routing = routingOf(data);
    assert.equal(routing.originalModelId, GPT);
    assert.equal(routing.finalProvider, 'xai');
    assert.deepEqual(routing.attempts.map((a) => a.provider), ['openai', 'openai', 'xai']);
    assert.match(routing.attempts[0].model, /gpt-4o/);
    assert.match(routing.attempts[2].model, /grok-3/);
    assertNoProviderOptionsUpstream();

    // `only` applies to fallback models too: xai is not allowed, so it is never called.
    emu.reset();
    emu.script({ match: { model: 'gpt-4o' }, status: 503, persistent: true });
    await apiError(
      client().chat.completions.create({ model: GPT, messages: userMessage('openai only'), ...gatewayOptions({ models: [GROK], only: ['openai'] }) }),
      503,
    );
    assert.deepEqual(providersCalled(), ['openai', 'openai'], 'the fallback model’s provider is outside `only`: never called');
  });

  test('invalid options: 400 naming the field, nothing sent upstream', async () => {
    const cases = [
      [{ order: 'x' }, 'providerOptions.gateway.order'],
      [{ only: ['no-such-provider'] }, 'providerOptions.gateway.only'],
      [{ models: GROK }, 'providerOptions.gateway.models'],
      [{ timeoutMs: -5 }, 'providerOptions.gateway.timeoutMs'],
      [{ totalTimeoutMs: 'soon' }, 'providerOptions.gateway.totalTimeoutMs'],
    ];
    for (const [options, field] of cases) {
      const err = await apiError(client().chat.completions.create({ model: CLAUDE, messages: userMessage('x'), ...gatewayOptions(options) }), 400);
      assert.ok(
        err.error.param === field || err.error.message.includes(field),
        `${JSON.stringify(options)}: the error names ${field} (param ${err.error.param}, message ${err.error.message})`,
      );
    }
    assert.equal(emu.requests.length, 0, 'invalid options never reach a provider');
  });

  test('key-default routing, overridden by request options field by field', async () => {
    // order from the key: vertex first.
    const created = await gw.admin('POST', '/admin/keys', { name: 'routed', routing: { order: ['vertex'] } });
    assert.equal(created.status, 201, created.text);
    const routed = created.json.key;
    await client(gw, routed).chat.completions.create({ model: CLAUDE, messages: userMessage('key default') });
    assert.deepEqual(providersCalled(), ['vertex'], 'the key’s order applies');
    emu.reset();
    await client(gw, routed).chat.completions.create({ model: CLAUDE, messages: userMessage('override'), ...gatewayOptions({ order: ['anthropic'] }) });
    assert.deepEqual(providersCalled(), ['anthropic'], 'the request’s order overrides the key’s');
    assertNoProviderOptionsUpstream();

    // only from the key survives a request that sets only `order`.
    emu.reset();
    const strict = await gw.admin('POST', '/admin/keys', { name: 'vertex-only', routing: { only: ['vertex'] } });
    assert.equal(strict.status, 201, strict.text);
    const { response } = await client(gw, strict.json.key)
      .chat.completions.create({ model: CLAUDE, messages: userMessage('still vertex'), ...gatewayOptions({ order: ['anthropic', 'vertex'] }) })
      .withResponse();
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assert.deepEqual(providersCalled(), ['vertex'], 'the key’s only still excludes anthropic');

    // timeoutMs from the key (300 ms) vs. the request's (5000 ms), anthropic answering after 800 ms.
    emu.reset();
    const quick = await gw.admin('POST', '/admin/keys', { name: 'impatient', routing: { timeoutMs: 300 } });
    assert.equal(quick.status, 201, quick.text);
    emu.script({ match: { path: ANTHROPIC_PATH }, delayMs: 800, persistent: true });
    const impatient = await client(gw, quick.json.key)
      .chat.completions.create({ model: CLAUDE, messages: userMessage('slow anthropic') })
      .withResponse();
    assert.equal(impatient.response.headers.get('x-switchyard-provider'), 'vertex', 'the key’s 300 ms timeout gave up on anthropic');
    assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
    emu.reset();
    emu.script({ match: { path: ANTHROPIC_PATH }, delayMs: 800, persistent: true });
    const patient = await client(gw, quick.json.key)
      .chat.completions.create({ model: CLAUDE, messages: userMessage('slow anthropic'), ...gatewayOptions({ timeoutMs: 5000 }) })
      .withResponse();
    assert.equal(patient.response.headers.get('x-switchyard-provider'), 'anthropic', 'the request’s timeoutMs overrides the key’s');
    assert.deepEqual(providersCalled(), ['anthropic']);

    // PATCH sets routing on an existing key.
    emu.reset();
    const plain = await gw.admin('POST', '/admin/keys', { name: 'patched' });
    assert.equal(plain.status, 201, plain.text);
    const patched = await gw.admin('PATCH', `/admin/keys/${encodeURIComponent(plain.json.id)}`, { routing: { models: [GROK] } });
    assert.ok(patched.status >= 200 && patched.status < 300, `PATCH /admin/keys/{id}: ${patched.status} ${patched.text}`);
    emu.script({ match: { model: 'gpt-4o' }, status: 503, persistent: true });
    const fell = await client(gw, plain.json.key).chat.completions.create({ model: GPT, messages: userMessage('patched fallback') }).withResponse();
    assert.equal(fell.response.headers.get('x-switchyard-provider'), 'xai', 'the patched key’s models fallback applies');
    assert.deepEqual(providersCalled(), ['openai', 'openai', 'xai']);

    // Invalid routing on a key is refused like invalid request options.
    const bad = await gw.admin('POST', '/admin/keys', { name: 'bad', routing: { order: 'x' } });
    assert.equal(bad.status, 400, `invalid key routing: ${bad.status} ${bad.text}`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('visibility', () => {
  test('routing metadata in the non-streaming body, matching the attempts header', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 503, persistent: true });
    const { data, response } = await client()
      .chat.completions.create({ model: CLAUDE, messages: userMessage('metadata') })
      .withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices[0].message.content, 'Hello from emulator: metadata');
    assert.ok(data.usage.prompt_tokens > 0, 'usage still there');
    const routing = routingOf(data);
    assert.equal(routing.originalModelId, CLAUDE);
    assert.equal(routing.resolvedProvider, 'anthropic');
    assert.equal(routing.finalProvider, 'vertex');
    assert.ok(Array.isArray(routing.fallbacksAvailable), 'fallbacksAvailable is an array');
    assert.ok(routing.fallbacksAvailable.includes('vertex'), `fallbacksAvailable: ${JSON.stringify(routing.fallbacksAvailable)}`);
    assert.equal(routing.attempts.length, 3);
    assert.deepEqual(routing.attempts.map((a) => a.provider), ['anthropic', 'anthropic', 'vertex']);
    assert.deepEqual(routing.attempts.map((a) => a.status), [503, 503, 200]);
    for (const a of routing.attempts) {
      assert.equal(typeof a.model, 'string');
      assert.match(a.model, /claude-sonnet-4-6/);
      assert.equal(typeof a.latencyMs, 'number');
      assert.ok(a.latencyMs >= 0);
    }
    const fromBody = routing.attempts.map((a) => `${a.provider}:${a.status ?? a.errorKind}`).join(',');
    assert.equal(response.headers.get('x-switchyard-attempts'), fromBody, 'header and body agree');

    // The OpenAI-compatible fast path gets it too.
    emu.reset();
    const fast = await client().chat.completions.create({ model: GPT, messages: userMessage('fast path') });
    assert.equal(fast.choices[0].message.content, 'Hello from emulator: fast path');
    const r2 = routingOf(fast);
    assert.equal(r2.originalModelId, GPT);
    assert.equal(r2.finalProvider, 'openai');
    assert.deepEqual(r2.attempts.map((a) => [a.provider, a.status]), [['openai', 200]]);
  });

  test('routing metadata in the last streaming chunk (raw SSE), before [DONE]', async () => {
    emu.script({ match: { path: ANTHROPIC_PATH }, status: 503, persistent: true });
    const res = await rawStream({ model: CLAUDE, messages: userMessage('stream metadata'), stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.equal(res.cut, null);
    assert.equal(res.headers.get('x-switchyard-provider'), 'vertex');
    assert.equal(res.headers.get('x-switchyard-attempts'), 'anthropic:503,anthropic:503,vertex:200');
    const { events } = res;
    assert.equal(events.at(-1), '[DONE]');
    const last = events.at(-2);
    assert.ok(last && typeof last === 'object', `a chunk before [DONE]: ${res.text.slice(-400)}`);
    assert.deepEqual(last.choices, [], 'the metadata rides in the usage chunk (the last chunk)');
    assert.ok(last.usage && last.usage.prompt_tokens > 0, 'the usage chunk');
    const routing = last.providerMetadata?.gateway?.routing;
    assert.ok(routing, `the last chunk carries providerMetadata.gateway.routing: ${JSON.stringify(last)}`);
    assert.equal(routing.originalModelId, CLAUDE);
    assert.equal(routing.finalProvider, 'vertex');
    assert.deepEqual(routing.attempts.map((a) => [a.provider, a.status]), [['anthropic', 503], ['anthropic', 503], ['vertex', 200]]);
    const text = events.slice(0, -1).map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Hello from emulator: stream metadata');
    assert.ok(events.some((e) => e.usage && e.usage.prompt_tokens > 0), 'the usage chunk is still sent');
    assert.equal(events.filter((e) => e?.providerMetadata).length, 1, 'metadata is sent once');
  });
});

// ---------------------------------------------------------------------------------------------

describe('load balancing and circuit breaker', () => {
  test('ROUTING_WEIGHTS anthropic 3 : vertex 1 → about 75 % anthropic over 200 requests', async () => {
    const weighted = await startGateway({
      emulatorUrl: emu.url,
      bindings: baseBindings({ ROUTING_WEIGHTS: JSON.stringify({ [CLAUDE]: { anthropic: 3, vertex: 1 } }) }),
    });
    try {
      const k = await weighted.createKey('weighted');
      const sdk = client(weighted, k);
      const N = 200;
      const served = [];
      for (let i = 0; i < N; i += 20) {
        const batch = await Promise.all(
          Array.from({ length: 20 }, () => sdk.chat.completions.create({ model: CLAUDE, messages: userMessage('balance') }).withResponse()),
        );
        for (const { response } of batch) served.push(response.headers.get('x-switchyard-provider'));
      }
      const calls = providersCalled();
      assert.equal(calls.length, N, 'one upstream call per request (all healthy)');
      const anthropic = calls.filter((p) => p === 'anthropic').length;
      const vertex = calls.filter((p) => p === 'vertex').length;
      assert.equal(anthropic + vertex, N);
      assert.equal(served.filter((p) => p === 'anthropic').length, anthropic, 'headers agree with the emulator');
      // Binomial(200, 0.75): sd ≈ 0.031, so [0.6, 0.9] is about ±4.9 sd — not a timing bound.
      const share = anthropic / N;
      assert.ok(share >= 0.6 && share <= 0.9, `anthropic served ${anthropic}/${N} = ${share.toFixed(3)}; want 0.6–0.9 for weights 3:1`);

      // An explicit order overrides the weights.
      emu.reset();
      for (let i = 0; i < 10; i++) {
        await sdk.chat.completions.create({ model: CLAUDE, messages: userMessage('ordered'), ...gatewayOptions({ order: ['vertex'] }) });
      }
      assert.deepEqual(providersCalled(), Array(10).fill('vertex'), 'order beats weights');
    } finally {
      await weighted.dispose();
    }
  });

  test('several keys for one provider: load spread over both, a rate-limited key covered by the other', async () => {
    const SECOND = 'sk-second-openai-key';
    const keyed = await startGateway({
      emulatorUrl: emu.url,
      bindings: baseBindings({ OPENAI_API_KEY_2: SECOND, RETRY_MAX_ATTEMPTS: '1', BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '60000' }),
    });
    try {
      const k = await keyed.createKey('two-keys');
      const sdk = client(keyed, k);
      const usedKey = (r) => (r.headers.authorization === `Bearer ${SECOND}` ? 2 : r.headers.authorization === 'Bearer sk-test-openai' ? 1 : 0);

      // Healthy: over 60 requests both keys serve (Binomial(60, 0.5): [15, 45] is ±3.9 sd).
      for (let i = 0; i < 60; i += 20) {
        await Promise.all(Array.from({ length: 20 }, () => sdk.chat.completions.create({ model: GPT, messages: userMessage('spread') })));
      }
      const used = upstreamCalls().map(usedKey);
      assert.equal(used.length, 60, 'one upstream call per request');
      assert.ok(used.every((u) => u === 1 || u === 2), 'only the two configured keys are sent');
      const second = used.filter((u) => u === 2).length;
      assert.ok(second >= 15 && second <= 45, `the second key served ${second} of 60`);

      // The first key is rate-limited: every request is still served, by the second key, and the
      // routing names the credentials by number only.
      emu.reset();
      emu.script({ match: { headers: { authorization: 'Bearer sk-test-openai' } }, status: 429, headers: { 'retry-after': '30' }, persistent: true });
      // Keys are drawn at random per request: ask until the first key has failed twice (its
      // breaker's threshold; P(fewer than 2 draws in 40) ≈ 4e-11), then six more requests.
      const answers = [];
      const limitedCalls = () => upstreamCalls().filter((r) => usedKey(r) === 1).length;
      for (let i = 0; i < 40 && limitedCalls() < 2; i++) {
        answers.push(await sdk.chat.completions.create({ model: GPT, messages: userMessage('limited') }).withResponse());
      }
      assert.equal(limitedCalls(), 2, 'the rate-limited key was drawn twice');
      const opened = answers.length;
      for (let i = 0; i < 6; i++) {
        answers.push(await sdk.chat.completions.create({ model: GPT, messages: userMessage('limited') }).withResponse());
      }
      for (const { data, response } of answers) {
        assert.ok(data.choices[0].message.content.length > 0, 'every request was served');
        const attempts = response.headers.get('x-switchyard-attempts');
        assert.match(attempts, /^(openai#1:429,)?openai#2:200$/, attempts);
        const routing = routingOf(data);
        assert.equal(routing.attempts.at(-1).credential, 2);
        assert.ok(!JSON.stringify(data).includes(SECOND) && !attempts.includes('sk-'), 'no key in the answer');
      }
      // Two 429s opened the first key's breaker (cool-down 60 s): the next requests skip it.
      assert.equal(limitedCalls(), 2, 'the open key was not tried again');
      for (const { response } of answers.slice(opened)) {
        assert.equal(response.headers.get('x-switchyard-attempts'), 'openai#2:200');
      }
    } finally {
      await keyed.dispose();
    }
  });

  test('circuit breaker: opens after 2 failures, skips anthropic, half-open trial, closes on success', async () => {
    const COOLDOWN = 500;
    const breaker = await startGateway({
      emulatorUrl: emu.url,
      bindings: baseBindings({ BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: String(COOLDOWN) }),
    });
    try {
      const k = await breaker.createKey('breaker');
      const sdk = client(breaker, k);
      const ask = (text, extra = {}) => sdk.chat.completions.create({ model: CLAUDE, messages: userMessage(text), ...extra }).withResponse();
      emu.script({ match: { path: ANTHROPIC_PATH }, status: 503, persistent: true });

      // 1. Two consecutive failures: the breaker opens; vertex serves.
      let mark = emu.requests.length;
      let r = await ask('one');
      assert.equal(r.response.headers.get('x-switchyard-provider'), 'vertex');
      assert.deepEqual(providersCalled(mark), ['anthropic', 'anthropic', 'vertex']);

      // 2. Open: straight to vertex, anthropic not touched.
      for (const text of ['two', 'three']) {
        mark = emu.requests.length;
        r = await ask(text);
        assert.deepEqual(providersCalled(mark), ['vertex'], `request "${text}": anthropic is skipped while open`);
        assert.equal(r.response.headers.get('x-switchyard-attempts'), 'vertex:200');
      }

      // 3. After the cool-down one trial reaches anthropic; it fails, so the breaker reopens.
      await sleep(COOLDOWN + 150);
      mark = emu.requests.length;
      r = await ask('trial fails');
      const trial = providersCalled(mark);
      assert.equal(trial.at(-1), 'vertex', `vertex serves after the failed trial: ${trial}`);
      const tried = trial.filter((p) => p === 'anthropic').length;
      assert.ok(tried >= 1 && tried <= 2, `the half-open trial reached anthropic (${trial})`);
      mark = emu.requests.length;
      await ask('reopened');
      assert.deepEqual(providersCalled(mark), ['vertex'], 'the failed trial reopened the breaker');

      // 4. After another cool-down, anthropic is healthy (and slow). Two concurrent requests:
      //    only one is the trial; the other still goes to vertex. The trial's success closes it.
      await sleep(COOLDOWN + 150);
      emu.reset();
      emu.script({ match: { path: ANTHROPIC_PATH }, delayMs: 300, persistent: true });
      const first = ask('trial succeeds');
      await emu.waitFor(() => emu.requests.some((r) => providerOf(r) === 'anthropic'), 3000);
      const second = ask('during the trial');
      const [a, b] = await Promise.all([first, second]);
      assert.equal(a.response.headers.get('x-switchyard-provider'), 'anthropic', 'the trial request is served by anthropic');
      assert.equal(b.response.headers.get('x-switchyard-provider'), 'vertex', 'only one trial request is let through while half-open');
      assert.equal(providersCalled().filter((p) => p === 'anthropic').length, 1, 'anthropic saw exactly the one trial');

      // 5. Closed: anthropic serves again.
      emu.reset();
      for (const text of ['closed one', 'closed two']) {
        r = await ask(text);
        assert.equal(r.response.headers.get('x-switchyard-provider'), 'anthropic', `request "${text}" after the breaker closed`);
      }
      assert.deepEqual(providersCalled(), ['anthropic', 'anthropic']);
    } finally {
      await breaker.dispose();
    }
  });

  test('an open breaker does not skip a provider that is the only candidate', async () => {
    const breaker = await startGateway({
      emulatorUrl: emu.url,
      bindings: baseBindings({ BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '30000' }),
    });
    try {
      const k = await breaker.createKey('breaker-only');
      const sdk = client(breaker, k);
      emu.script({ match: { path: ANTHROPIC_PATH }, status: 503, times: 2 });
      await sdk.chat.completions.create({ model: CLAUDE, messages: userMessage('open it') });
      assert.deepEqual(providersCalled(), ['anthropic', 'anthropic', 'vertex']);
      // Open now (30 s cool-down). With `only: ['anthropic']` there is no other candidate.
      emu.reset();
      const { data, response } = await sdk.chat.completions
        .create({ model: CLAUDE, messages: userMessage('only anthropic'), ...gatewayOptions({ only: ['anthropic'] }) })
        .withResponse();
      assert.equal(data.choices[0].message.content, 'Hello from emulator: only anthropic');
      assert.equal(response.headers.get('x-switchyard-provider'), 'anthropic');
      assert.deepEqual(providersCalled(), ['anthropic']);
    } finally {
      await breaker.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('idempotency', () => {
  const idemHeaders = (k) => ({ headers: { 'Idempotency-Key': k } });

  test('replay: same key and body → stored answer, no provider call; different body → 409', async () => {
    const idem = `idem-${randomUUID()}`;
    const body = { model: GPT, messages: userMessage('charge once') };
    const first = await client().chat.completions.create(body, idemHeaders(idem)).withResponse();
    assert.equal(first.response.status, 200);
    assert.notEqual(first.response.headers.get('x-switchyard-idempotent-replay'), 'true');
    assert.equal(upstreamCalls().length, 1);

    const again = await client().chat.completions.create(body, idemHeaders(idem)).withResponse();
    assert.equal(again.response.status, 200);
    assert.equal(again.response.headers.get('x-switchyard-idempotent-replay'), 'true');
    assert.deepEqual(again.data, first.data, 'the stored body, same completion id');
    assert.equal(upstreamCalls().length, 1, 'the replay did not call a provider');

    const err = await apiError(client().chat.completions.create({ ...body, messages: userMessage('charge twice') }, idemHeaders(idem)), 409);
    assert.equal(err.code, 'idempotency_key_reused');
    assert.equal(upstreamCalls().length, 1, 'the conflict did not call a provider');

    // Stored per gateway key: another key with the same Idempotency-Key is a new request.
    const otherKey = await gw.createKey('idem-other');
    const other = await client(gw, otherKey).chat.completions.create(body, idemHeaders(idem)).withResponse();
    assert.notEqual(other.response.headers.get('x-switchyard-idempotent-replay'), 'true');
    assert.notEqual(other.data.id, first.data.id);
    assert.equal(upstreamCalls().length, 2, 'another gateway key reaches the provider');
  });

  test('a non-retryable 4xx is stored and replayed; a retryable failure is not', async () => {
    const idem400 = `idem-${randomUUID()}`;
    const body = { model: GPT, messages: userMessage('bad request') };
    emu.script({ match: { model: 'gpt-4o' }, status: 400, times: 1 });
    const e1 = await apiError(client().chat.completions.create(body, idemHeaders(idem400)), 400);
    const e2 = await apiError(client().chat.completions.create(body, idemHeaders(idem400)), 400);
    assert.equal(e2.headers.get('x-switchyard-idempotent-replay'), 'true');
    assert.equal(e2.error.message, e1.error.message, 'the stored error body');
    assert.equal(upstreamCalls().length, 1, 'the 400 was replayed, not re-sent (the emulator would now answer 200)');

    emu.reset();
    const idem503 = `idem-${randomUUID()}`;
    emu.script({ match: { model: 'gpt-4o' }, status: 503, times: 2 });
    await apiError(client().chat.completions.create({ model: GPT, messages: userMessage('flaky') }, idemHeaders(idem503)), 503);
    assert.equal(upstreamCalls().length, 2);
    const retried = await client()
      .chat.completions.create({ model: GPT, messages: userMessage('flaky') }, idemHeaders(idem503))
      .withResponse();
    assert.equal(retried.data.choices[0].message.content, 'Hello from emulator: flaky');
    assert.notEqual(retried.response.headers.get('x-switchyard-idempotent-replay'), 'true');
    assert.equal(upstreamCalls().length, 3, 'a 503 outcome is not stored: the retry reaches the provider');
  });
});
