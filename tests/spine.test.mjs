// Integration suite for the spine: admin keys, the model catalog, and OpenAI-compatible chat
// completions forwarded to the upstream emulator, all driven through the real `openai` SDK against
// the built worker running in workerd (see harness.mjs). Needs `npm run build` first.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { startEmulator, openaiError } from './emulator.mjs';
import { startGateway, PROVIDER_KEYS, ADMIN_TOKEN } from './harness.mjs';
import { recordingFetchInto, apiError, assertOpenAIError } from './clients.mjs';

const GEN_ID = /^gen_[0-9A-HJKMNP-TV-Z]{26}$/;
const MAX_REQUEST_BYTES = 64 * 1024;

let emu;
let gw;
let key; // the main gateway key
const gatewayKeys = []; // every gateway key issued in this file, revoked ones included
const responses = []; // every response the tests saw from the gateway, for the secrets check

const recordingFetch = recordingFetchInto(responses);

function client(apiKey = key) {
  return new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 20_000, fetch: recordingFetch });
}

/** Raw request to the gateway, recorded like the SDK's. */
async function raw(path, { method = 'POST', headers = {}, body, auth = key, ...rest } = {}) {
  const res = await recordingFetch(gw.url + path, {
    method,
    headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...headers },
    body,
    ...rest,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, text, json };
}



function lastRequest(pred = () => true) {
  return [...emu.requests].reverse().find(pred);
}

const userMessage = (content) => [{ role: 'user', content }];

before(async () => {
  emu = await startEmulator();
  // A port with nothing listening, for "connection refused".
  const probe = http.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const deadPort = probe.address().port;
  await new Promise((r) => probe.close(r));

  gw = await startGateway({
    emulatorUrl: emu.url,
    bindings: {
      MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
      // Groq's real base URL carries a path of its own: the gateway must append to it.
      GROQ_BASE_URL: `${emu.url}/openai/v1`,
      MISTRAL_BASE_URL: `http://127.0.0.1:${deadPort}/v1`,
      CORS_ORIGINS: 'https://app.example, https://other.example',
    },
  });
  key = await gw.createKey('spine-main');
  gatewayKeys.push(key);
});

after(async () => {
  await gw?.dispose();
  await emu?.close();
});

beforeEach(() => emu?.reset());

// ---------------------------------------------------------------------------------------------

describe('admin keys', () => {
  test('admin routes refuse a missing or wrong admin token with 401', async () => {
    for (const token of [null, 'wrong-token', `${ADMIN_TOKEN}x`]) {
      const created = await gw.admin('POST', '/admin/keys', { name: 'nope' }, { token });
      assert.equal(created.status, 401, `POST /admin/keys with token ${token}`);
      const listed = await gw.admin('GET', '/admin/keys', undefined, { token });
      assert.equal(listed.status, 401, `GET /admin/keys with token ${token}`);
      const deleted = await gw.admin('DELETE', '/admin/keys/whatever', undefined, { token });
      assert.equal(deleted.status, 401, `DELETE /admin/keys/{id} with token ${token}`);
      for (const r of [created, listed, deleted]) responses.push({ url: 'admin', status: r.status, headers: [...r.headers], body: r.text });
    }
    // A gateway key is no admin token.
    const asKey = await gw.admin('GET', '/admin/keys', undefined, { token: key });
    assert.equal(asKey.status, 401);
  });

  test('create, list (no secret, no hash), use, delete, then refused', async () => {
    const created = await gw.admin('POST', '/admin/keys', { name: 'alice' });
    assert.equal(created.status, 201, created.text);
    const { id, key: secret, name, created_at } = created.json;
    gatewayKeys.push(secret);
    assert.equal(typeof id, 'string');
    assert.ok(id.length > 0);
    assert.match(secret, /^sk-sy-/);
    assert.ok(secret.length >= 32, 'the key carries enough entropy');
    assert.equal(name, 'alice');
    assert.ok(created_at !== undefined && created_at !== null, 'created_at is present');

    const other = await gw.admin('POST', '/admin/keys', { name: 'bob' });
    assert.equal(other.status, 201);
    gatewayKeys.push(other.json.key);
    assert.notEqual(other.json.key, secret);
    assert.notEqual(other.json.id, id);

    const listed = await gw.admin('GET', '/admin/keys');
    assert.equal(listed.status, 200);
    responses.push({ url: 'admin list', status: listed.status, headers: [...listed.headers], body: listed.text });
    assert.equal(listed.json.object, 'list');
    assert.ok(Array.isArray(listed.json.data));
    const item = listed.json.data.find((k) => k.id === id);
    assert.ok(item, 'the new key is listed');
    assert.equal(item.name, 'alice');
    assert.ok('created_at' in item);
    const digest = createHash('sha256').update(secret).digest();
    for (const forbidden of [secret, secret.slice('sk-sy-'.length), digest.toString('hex'), digest.toString('base64'), digest.toString('base64url')]) {
      assert.ok(!listed.text.includes(forbidden), `the key list must not contain the secret or its hash (${forbidden.slice(0, 12)}…)`);
    }
    for (const k of gatewayKeys) assert.ok(!listed.text.includes(k), 'no secret of any key is listed');

    // The new key works…
    const models = await client(secret).models.list();
    assert.ok(models.data.length > 0);

    // …until it is deleted.
    const deleted = await gw.admin('DELETE', `/admin/keys/${encodeURIComponent(id)}`);
    assert.equal(deleted.status, 200, deleted.text);
    assert.equal(deleted.json.id, id);
    assert.equal(deleted.json.deleted, true);

    await apiError(client(secret).models.list(), 401);
    await apiError(client(secret).chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('hi') }), 401);
    assert.equal(emu.requests.length, 0, 'a revoked key never reaches a provider');
    // The other key is untouched.
    assert.ok((await client(other.json.key).models.list()).data.length > 0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('models', () => {
  test('list: catalog entries with pricing, limits and providers', async () => {
    const page = await client().models.list();
    const models = page.data;
    assert.ok(models.length > 1);
    for (const m of models) {
      assert.equal(m.object, 'model', `${m.id}: object`);
      assert.match(m.id, /^[a-z0-9-]+\/.+/, `${m.id}: id is provider/model`);
      assert.equal(typeof m.created, 'number', `${m.id}: created`);
      assert.equal(typeof m.owned_by, 'string', `${m.id}: owned_by`);
    }
    // The contract's example is anthropic/claude-sonnet-4; the shared price data has no direct
    // Anthropic entry for it, so its successor (served by Anthropic and by Vertex) stands in.
    const claude = models.find((m) => m.id === 'anthropic/claude-sonnet-4-6');
    assert.ok(claude, 'anthropic/claude-sonnet-4-6 is listed');
    assert.equal(claude.owned_by, 'anthropic');
    assert.ok(Number.isInteger(claude.context_window) && claude.context_window > 0, 'context_window');
    assert.ok(Number.isInteger(claude.max_tokens) && claude.max_tokens > 0, 'max_tokens');
    const decimal = /^\d+(\.\d+)?$/;
    for (const field of ['input', 'output', 'cache_read', 'cache_write']) {
      assert.equal(typeof claude.pricing?.[field], 'string', `pricing.${field} is a decimal string`);
      assert.match(claude.pricing[field], decimal, `pricing.${field}`);
    }
    assert.equal(Number(claude.pricing.input), 0.000003, 'Claude Sonnet 4.5 input price per token');
    assert.ok(Array.isArray(claude.providers));
    assert.ok(claude.providers.includes('anthropic') && claude.providers.includes('vertex'), `providers: ${claude.providers}`);
    const gpt = models.find((m) => m.id === 'openai/gpt-4o');
    assert.ok(gpt, 'openai/gpt-4o is listed');
    assert.equal(gpt.owned_by, 'openai');
    assert.ok(gpt.providers.includes('openai'));
  });

  test('retrieve a model whose id contains a slash', async () => {
    // The SDK percent-encodes the slash: GET /v1/models/openai%2Fgpt-4o
    const m = await client().models.retrieve('openai/gpt-4o');
    assert.equal(m.id, 'openai/gpt-4o');
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'openai');
    assert.ok(m.pricing && m.context_window > 0);
    // …and the plain form from the contract: GET /v1/models/{provider}/{model}
    const plain = await raw('/v1/models/anthropic/claude-sonnet-4-6', { method: 'GET' });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.json.id, 'anthropic/claude-sonnet-4-6');
  });

  test('retrieve an unknown model: 404 model_not_found', async () => {
    const err = await apiError(client().models.retrieve('openai/no-such-model-xyz'), 404);
    assert.equal(err.code, 'model_not_found');
    const other = await apiError(client().models.retrieve('nope/x'), 404);
    assert.equal(other.code, 'model_not_found');
  });
});

// ---------------------------------------------------------------------------------------------

describe('chat completions: forwarding', () => {
  test('openai/gpt-4o: body forwarded unchanged except the model, provider key used', async () => {
    const body = {
      model: 'openai/gpt-4o',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'describe these' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', detail: 'low' } },
            { type: 'file', file: { filename: 'note.pdf', file_data: 'data:application/pdf;base64,JVBERi0xLjQK' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
        { role: 'user', content: 'describe these' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Current weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
            strict: true,
          },
        },
      ],
      tool_choice: 'auto',
      parallel_tool_calls: true,
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: false } },
      seed: 42,
      logprobs: true,
      top_logprobs: 2,
      n: 2,
      temperature: 0.25,
      top_p: 0.9,
      max_completion_tokens: 300,
      stop: ['\n\nEND'],
      user: 'user-1234',
      metadata: { purpose: 'spine' },
      some_vendor_field: { a: 1 },
      another_unknown: [1, 'two', { three: null }],
      unicode_field: 'héllo — 日本 🚀',
      big_number: 12345678901234,
      float_number: 0.1,
    };
    const { data, response } = await client().chat.completions.create(body).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices.length, 2, 'n: 2 honoured upstream and passed back');
    assert.equal(data.choices[0].message.content, 'Hello from emulator: describe these');
    assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
    assert.match(response.headers.get('x-generation-id') ?? '', GEN_ID);
    assert.equal(response.headers.get('x-switchyard-provider'), 'openai');

    assert.equal(emu.requests.length, 1, 'exactly one upstream request');
    const seen = emu.requests[0];
    assert.equal(seen.method, 'POST');
    assert.equal(seen.path, '/v1/chat/completions');
    assert.equal(seen.headers.authorization, `Bearer ${PROVIDER_KEYS.openai}`);
    assert.deepEqual(seen.body, { ...body, model: 'gpt-4o' });
    for (const [name, value] of Object.entries(seen.headers)) {
      for (const k of gatewayKeys) assert.ok(!value.includes(k), `the gateway key must not be forwarded upstream (header ${name})`);
    }
  });

  for (const [model, provider, native, path] of [
    ['xai/grok-3', 'xai', 'grok-3', '/v1/chat/completions'],
    ['groq/llama-3.3-70b-versatile', 'groq', 'llama-3.3-70b-versatile', '/openai/v1/chat/completions'],
  ]) {
    test(`${model}: routed to ${provider} with its own key and base URL`, async () => {
      const { data, response } = await client()
        .chat.completions.create({ model, messages: userMessage('hello provider'), temperature: 0 })
        .withResponse();
      assert.equal(data.choices[0].message.content, 'Hello from emulator: hello provider');
      assert.equal(response.headers.get('x-switchyard-provider'), provider);
      assert.match(response.headers.get('x-generation-id') ?? '', GEN_ID);
      const seen = emu.requests[0];
      assert.equal(seen.path, path, 'base URL + /chat/completions');
      assert.equal(seen.headers.authorization, `Bearer ${PROVIDER_KEYS[provider]}`);
      assert.deepEqual(seen.body, { model: native, messages: userMessage('hello provider'), temperature: 0 });
    });
  }

  test('a model not in the catalog, with a known provider, is forwarded as is', async () => {
    const { data, response } = await client()
      .chat.completions.create({ model: 'openai/gpt-emulator-custom-1', messages: userMessage('custom') })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Hello from emulator: custom');
    assert.equal(response.headers.get('x-switchyard-provider'), 'openai');
    assert.equal(emu.requests[0].body.model, 'gpt-emulator-custom-1');
    assert.equal(emu.requests[0].headers.authorization, `Bearer ${PROVIDER_KEYS.openai}`);
  });

  test('x-request-id is echoed and forwarded; one is generated when absent', async () => {
    const { response } = await client()
      .chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('rid') }, { headers: { 'x-request-id': 'spine-req-0001' } })
      .withResponse();
    assert.equal(response.headers.get('x-request-id'), 'spine-req-0001');
    assert.equal(emu.requests[0].headers['x-request-id'], 'spine-req-0001', 'forwarded upstream');

    const second = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('rid') }).withResponse();
    const generated = second.response.headers.get('x-request-id');
    assert.ok(generated && generated.length >= 8, `a request id is generated (got ${generated})`);
    assert.notEqual(generated, 'spine-req-0001');
    assert.equal(emu.requests[1].headers['x-request-id'], generated, 'the generated id is forwarded too');
    assert.notEqual(second.response.headers.get('x-generation-id'), response.headers.get('x-generation-id'), 'generation ids are unique');
  });
});

// ---------------------------------------------------------------------------------------------

describe('chat completions: streaming', () => {
  test('stream with include_usage: text deltas, finish, usage chunk, headers', async () => {
    const { data: stream, response } = await client()
      .chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('stream please'), stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.match(response.headers.get('x-generation-id') ?? '', GEN_ID);
    assert.equal(response.headers.get('x-switchyard-provider'), 'openai');
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length >= 5, `several chunks (got ${chunks.length})`);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Hello from emulator: stream please');
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    assert.equal(finish.choices[0].finish_reason, 'stop');
    const usageChunks = chunks.filter((c) => c.usage);
    assert.equal(usageChunks.length, 1, 'one usage chunk');
    const { usage } = usageChunks[0];
    assert.deepEqual(usageChunks[0].choices, []);
    assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    // The usage chunk is the last chunk, and the gateway's routing metadata rides in it (no
    // extra chunk: usage is sent once, and stream helpers keep it).
    const last = chunks.at(-1);
    assert.equal(last, usageChunks[0]);
    assert.equal(last.providerMetadata.gateway.routing.finalProvider, 'openai');

    const seen = emu.requests[0];
    assert.equal(seen.body.stream, true);
    assert.deepEqual(seen.body.stream_options, { include_usage: true });
    assert.equal(seen.body.model, 'gpt-4o');
  });

  test("the SDK's stream helper ends with the provider's id and model, the routing chunk included", async () => {
    const stream = client().chat.completions.stream({ model: 'openai/gpt-4o', messages: userMessage('helper') });
    const chunks = [];
    stream.on('chunk', (c) => chunks.push(c));
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0].message.content, 'Hello from emulator: helper');
    const routing = chunks.at(-1).providerMetadata?.gateway?.routing;
    assert.equal(routing?.finalProvider, 'openai', 'the last chunk is the routing chunk');
    // One completion's chunks share id, model and created (the helper keeps the last chunk's).
    assert.match(final.id, /^chatcmpl-/);
    assert.equal(final.model, 'gpt-4o');
    assert.equal(new Set(chunks.map((c) => `${c.id} ${c.model} ${c.created}`)).size, 1);
  });

  test('streamed parallel tool calls reassemble exactly', async () => {
    const calls = [
      { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } },
      { name: 'get_time', arguments: { timezone: 'Europe/Paris', format: '24h' } },
    ];
    emu.script({ match: { model: 'gpt-4o' }, toolCalls: calls });
    const stream = await client().chat.completions.create({
      model: 'openai/gpt-4o',
      messages: userMessage('weather and time?'),
      tools: calls.map((c) => ({ type: 'function', function: { name: c.name, parameters: { type: 'object' } } })),
      stream: true,
    });
    const assembled = [];
    let finishReason = null;
    let fragments = 0;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (!choice) continue;
      for (const tc of choice.delta?.tool_calls ?? []) {
        assembled[tc.index] ??= { id: null, name: '', args: '' };
        if (tc.id) assembled[tc.index].id = tc.id;
        if (tc.function?.name) assembled[tc.index].name += tc.function.name;
        if (tc.function?.arguments) {
          assembled[tc.index].args += tc.function.arguments;
          fragments++;
        }
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    assert.ok(fragments > calls.length, 'arguments arrived in fragments');
    assert.equal(assembled.length, 2);
    assert.deepEqual(assembled.map((a) => ({ name: a.name, arguments: JSON.parse(a.args) })), calls);
    assert.ok(assembled.every((a) => /^call_/.test(a.id)));
    assert.equal(finishReason, 'tool_calls');
  });

  test('non-streamed tool calls pass through', async () => {
    emu.script({ match: { model: 'grok-3' }, toolCalls: [{ name: 'lookup', arguments: { q: 'switchyard' } }] });
    const res = await client().chat.completions.create({
      model: 'xai/grok-3',
      messages: userMessage('look it up'),
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
      tool_choice: { type: 'function', function: { name: 'lookup' } },
    });
    assert.equal(res.choices[0].finish_reason, 'tool_calls');
    const call = res.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'lookup');
    assert.deepEqual(JSON.parse(call.function.arguments), { q: 'switchyard' });
    assert.deepEqual(emu.requests[0].body.tool_choice, { type: 'function', function: { name: 'lookup' } });
  });

  test('streaming is incremental: the first chunk arrives long before the upstream finishes (LF and CRLF streams)', async () => {
    for (const lineEnding of ['\n', '\r\n']) {
      emu.reset();
      emu.script({ match: { model: 'gpt-4o' }, eventDelayMs: 200, lineEnding, text: 'one two three four five six seven eight' });
      const stream = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('slow'), stream: true });
      let firstAt = null;
      let text = '';
      for await (const chunk of stream) {
        firstAt ??= Date.now();
        text += chunk.choices[0]?.delta?.content ?? '';
      }
      assert.equal(text, 'one two three four five six seven eight');
      const upstream = emu.requests[0];
      assert.ok(upstream.eventsSent >= 10);
      const lastSentAt = upstream.eventTimes.at(-1);
      assert.ok(
        firstAt < lastSentAt - 1000,
        `${JSON.stringify(lineEnding)}: first chunk reached the client ${lastSentAt - firstAt} ms before the emulator sent its last event (want > 1000 ms; upstream took ${lastSentAt - upstream.eventTimes[0]} ms)`,
      );
    }
  });

  test('streams with CRLF or CR line endings keep their bytes, trailer before [DONE]', async () => {
    // SSE allows LF, CRLF or CR line endings (the test above checks that such events go on as
    // they complete); the routing trailer still goes just before the terminator.
    for (const lineEnding of ['\r\n', '\r']) {
      emu.reset();
      emu.script({ match: { model: 'gpt-4o' }, eventDelayMs: 200, lineEnding, text: 'one two three four five six' });
      const res = await raw('/v1/chat/completions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('crlf'), stream: true }),
      });
      assert.equal(res.status, 200);
      const events = res.text.split(`${lineEnding}${lineEnding}`).filter((e) => e.trim());
      // The gateway's own terminator (LF) closes the stream; everything before it is the
      // provider's bytes in the provider's framing, then the routing chunk.
      assert.ok(res.text.endsWith('data: [DONE]\n\n'), JSON.stringify(res.text.slice(-80)));
      assert.equal(res.text.match(/\[DONE\]/g).length, 1, 'one [DONE]');
      const routing = events.at(-1).replace(/\n?data: \[DONE\]\n*$/, '');
      assert.equal(JSON.parse(routing.replace(/^data: /, '')).providerMetadata.gateway.routing.finalProvider, 'openai');
      const text = events
        .slice(0, -1)
        .map((e) => JSON.parse(e.replace(/^data: /, '')).choices[0]?.delta?.content ?? '')
        .join('');
      assert.equal(text, 'one two three four five six', JSON.stringify(lineEnding));
    }
  });

  test('a whole short stream in one write still ends with the routing chunk before [DONE]', async () => {
    // The provider's entire answer arrives in the gateway's first read, while it still judges the
    // attempt: the stream's end must wait for the routing chunk.
    const chunk = (delta, finish = null) =>
      `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const whole = chunk({ role: 'assistant', content: '' }) + chunk({ content: 'short' }) + chunk({}, 'stop') + 'data: [DONE]\n\n';
    emu.script({ match: { model: 'gpt-4o' }, stream: [{ raw: whole }] });
    const stream = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('short'), stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'short');
    const last = chunks.at(-1);
    assert.equal(last.choices[0].delta.content, undefined);
    assert.equal(last.providerMetadata?.gateway?.routing?.finalProvider, 'openai', JSON.stringify(last));
  });

  test('an event over 16 MiB ends the stream with a clear error and cancels the provider', async () => {
    const chunk = (delta, finish = null) => ({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: finish }] });
    const later = Array.from({ length: 30 }, () => chunk({ content: ' more' }));
    emu.script({
      match: { model: 'gpt-4o' },
      eventDelayMs: 100,
      stream: [
        chunk({ role: 'assistant', content: '' }),
        chunk({ content: 'Hello' }),
        { raw: `data: {"choices":[{"index":0,"delta":{"content":"${'x'.repeat(17 * 1024 * 1024)}` },
        { raw: '"}}]}\n\n' },
        ...later,
        chunk({}, 'stop'),
        '[DONE]',
      ],
    });
    const res = await raw('/v1/chat/completions', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('huge'), stream: true }),
    });
    assert.equal(res.status, 200);
    assert.ok(res.text.length < 64 * 1024, `the oversized event was not forwarded (${res.text.length} bytes)`);
    const data = res.text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.equal(data.at(-1), '[DONE]');
    assert.equal(data.filter((d) => d === '[DONE]').length, 1);
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    assert.equal(chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join(''), 'Hello');
    // The routing chunk (the last chunk), then the error event right before [DONE].
    const error = chunks.at(-1);
    assert.equal(error.error.code, 'stream_event_too_large');
    assert.match(error.error.message, /larger than 16 MiB/);
    assert.equal(chunks.at(-2).providerMetadata.gateway.routing.finalProvider, 'openai');
    const upstream = await emu.waitForRequest((r) => r.clientClosed, 5000).catch(() => null);
    assert.ok(upstream, 'the provider request was cancelled');
    assert.ok(upstream.eventsSent < 36, `upstream stopped early (sent ${upstream.eventsSent} of 36 events)`);
  });

  test('client abort mid-stream cancels the upstream request', async () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    emu.script({ match: { model: 'gpt-4o' }, eventDelayMs: 150, text: words });
    const stream = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('long'), stream: true });
    let received = 0;
    try {
      for await (const chunk of stream) {
        received++;
        if (chunk.choices[0]?.delta?.content) {
          stream.controller.abort();
        }
      }
    } catch (err) {
      assert.ok(err instanceof OpenAI.APIUserAbortError || err.name === 'AbortError', `abort surfaces as an abort: ${err}`);
    }
    assert.ok(received >= 1);
    const upstream = await emu.waitForRequest((r) => r.clientClosed, 5000).catch(() => null);
    assert.ok(upstream, `the emulator saw its socket closed before the stream ended (sent ${emu.requests[0]?.eventsSent} events, finished: ${emu.requests[0]?.finished})`);
    assert.ok(upstream.eventsSent < 40, `upstream stopped early (sent ${upstream.eventsSent} of 43 events)`);
  });

  test('a client that leaves while the provider is quiet: the provider is let go by its next event', async () => {
    // Under wrangler dev the disconnect reaches the Worker only with the next chunk (its
    // request signal does not fire while the provider is quiet), so here the provider is let
    // go at the first event after the abort. That the pump lets a quiet provider go as soon
    // as the signal fires (as workerd at the edge fires it) is tested in pump.test.mjs.
    const gap = 2000;
    emu.script({ match: { model: 'gpt-4o' }, eventDelayMs: gap, text: 'a b c d e f' });
    const stream = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('quiet'), stream: true });
    let abortedAt;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) {
          abortedAt = Date.now();
          stream.controller.abort();
        }
      }
    } catch {}
    const upstream = await emu.waitForRequest((r) => r.clientClosed, 10_000).catch(() => null);
    assert.ok(upstream, 'the provider request was closed');
    const after = upstream.eventTimes.filter((t) => t > abortedAt).length;
    assert.ok(after <= 1, `closed by the first provider event after the abort (${after} events were sent after it)`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('errors', () => {
  test('missing or bad gateway key: 401 in OpenAI shape', async () => {
    const missing = await raw('/v1/chat/completions', {
      auth: null,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('x') }),
    });
    assert.equal(missing.status, 401);
    assertOpenAIError(missing.json, 401);

    const bad = await apiError(client('sk-sy-not-a-real-key-000000000000000000').chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('x') }), 401);
    assert.ok(bad.message.length > 0);
    const badModels = await raw('/v1/models', { method: 'GET', auth: 'sk-sy-bogus' });
    assert.equal(badModels.status, 401);
    assertOpenAIError(badModels.json, 401);
    assert.equal(emu.requests.length, 0, 'nothing reached a provider');
  });

  test('unknown provider or unknown model: 404 model_not_found', async () => {
    const e1 = await apiError(client().chat.completions.create({ model: 'nope/x', messages: userMessage('x') }), 404);
    assert.equal(e1.code, 'model_not_found');
    const e2 = await apiError(client().chat.completions.create({ model: 'definitely-not-a-model', messages: userMessage('x') }), 404);
    assert.equal(e2.code, 'model_not_found');
    assert.equal(emu.requests.length, 0);
  });

  test('malformed JSON: 400', async () => {
    const res = await raw('/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: '{"model": "openai/gpt-4o", "messages": [' });
    assert.equal(res.status, 400);
    assertOpenAIError(res.json, 400);
    assert.equal(emu.requests.length, 0);
  });

  test('missing model or messages: 400 naming the param', async () => {
    const noModel = await apiError(client().chat.completions.create({ messages: userMessage('x') }), 400);
    assert.equal(noModel.param, 'model');
    const noMessages = await apiError(client().chat.completions.create({ model: 'openai/gpt-4o' }), 400);
    assert.equal(noMessages.param, 'messages');
    assert.equal(emu.requests.length, 0);
  });

  test('body over MAX_REQUEST_BYTES: 413 (with and without content-length)', async () => {
    const big = JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('x'.repeat(MAX_REQUEST_BYTES + 1024)) });
    const sized = await raw('/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: big });
    assert.equal(sized.status, 413);
    assertOpenAIError(sized.json, 413);

    const bytes = new TextEncoder().encode(big);
    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.slice(i, i + 8192));
        controller.close();
      },
    });
    const streamed = await raw('/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chunked, duplex: 'half' });
    assert.equal(streamed.status, 413, 'a chunked body without content-length is limited too');
    assertOpenAIError(streamed.json, 413);
    assert.equal(emu.requests.length, 0);

    // Just under the limit still goes through, with a length or chunked (read up to the limit).
    const fits = await client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('y'.repeat(MAX_REQUEST_BYTES - 2048)) });
    assert.equal(fits.object, 'chat.completion');
    const under = new TextEncoder().encode(JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('z'.repeat(MAX_REQUEST_BYTES - 2048)) }));
    const chunkedUnder = new ReadableStream({
      start(controller) {
        for (let i = 0; i < under.length; i += 8192) controller.enqueue(under.slice(i, i + 8192));
        controller.close();
      },
    });
    const streamedUnder = await raw('/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chunkedUnder, duplex: 'half' });
    assert.equal(streamedUnder.status, 200, JSON.stringify(streamedUnder.json)?.slice(0, 300));
    assert.equal(emu.requests.at(-1).bodyBytes, under.length - 'openai/'.length, 'the whole chunked body reached the provider (model rewritten)');
  });

  test('CORS: a browser preflight from an allowed origin gets the headers the SDKs send; others get nothing', async () => {
    // What a browser asks before the OpenAI SDK's `chat.completions.stream()` (user-agent is
    // script-set in Firefox and Safari; the helper header comes with .stream() and .parse()).
    const asked = 'authorization,content-type,user-agent,x-stainless-helper-method,x-stainless-os';
    const pre = await raw('/v1/chat/completions', {
      method: 'OPTIONS',
      auth: null,
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
    });
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(pre.headers.get('access-control-allow-headers'), asked);
    assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(pre.headers.get('vary') ?? '', /Origin/);

    // The actual request (and an error) carry the allow-origin and the exposed headers.
    const ok = await raw('/v1/models', { method: 'GET', headers: { origin: 'https://app.example' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
    // The SDKs' retry switch must be readable too, or a browser client retries final errors.
    assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-should-retry/);
    const denied = await raw('/v1/models', { method: 'GET', auth: 'sk-sy-wrong', headers: { origin: 'https://app.example' } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), 'https://app.example', 'a browser can read the error');

    const evil = await raw('/v1/models', { method: 'GET', headers: { origin: 'https://evil.example' } });
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    assert.equal(evil.headers.get('vary'), 'Origin');
  });

  test('vars as wrangler.toml writes them (a number, a list) are read; a base URL with the version path twice still works', async () => {
    const typed = await startGateway({
      emulatorUrl: emu.url,
      bindings: {
        MAX_REQUEST_BYTES: 4096,
        CORS_ORIGINS: ['https://typed.example'],
        // The Anthropic SDK's variable is a bare origin; `/v1` given by mistake is dropped.
        ANTHROPIC_BASE_URL: `${emu.url}/v1`,
        // groq-sdk reads GROQ_BASE_URL as a bare origin and adds /openai/v1 itself.
        GROQ_BASE_URL: emu.url,
      },
    });
    try {
      const k = await typed.createKey('typed-vars');
      gatewayKeys.push(k);
      const big = await fetch(`${typed.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'openai/gpt-4o', messages: userMessage('x'.repeat(5000)) }),
      });
      assert.equal(big.status, 413, 'MAX_REQUEST_BYTES given as a number is honoured');
      const preflight = await fetch(`${typed.url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: 'https://typed.example', 'access-control-request-method': 'POST' },
      });
      assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://typed.example');
      const c = new OpenAI({ apiKey: k, baseURL: `${typed.url}/v1`, maxRetries: 0 });
      const answer = await c.chat.completions.create({ model: 'anthropic/claude-sonnet-4-6', messages: userMessage('once') });
      assert.equal(answer.choices[0].message.content, 'Hello from emulator: once');
      assert.equal(lastRequest((r) => r.protocol === 'anthropic').pathname, '/v1/messages');
      const groq = await c.chat.completions.create({ model: 'groq/llama-3.3-70b-versatile', messages: userMessage('origin') });
      assert.equal(groq.choices[0].message.content, 'Hello from emulator: origin');
      assert.equal(lastRequest((r) => r.protocol === 'openai').pathname, '/openai/v1/chat/completions');
    } finally {
      await typed.dispose();
    }
  });

  test('wrong method: 405', async () => {
    const res = await raw('/v1/chat/completions', { method: 'GET' });
    assert.equal(res.status, 405);
    assertOpenAIError(res.json, 405);
  });

  test('upstream 429 and 400: same status, upstream message kept, provider named', async () => {
    const upstream429 = 'Rate limit reached for gpt-4o in organization org-emulator on requests per min (RPM): Limit 3, Used 3.';
    emu.script({ match: { model: 'gpt-4o' }, persistent: true, status: 429, headers: { 'retry-after': '1' }, body: openaiError(429, upstream429) });
    const e429 = await apiError(
      client().chat.completions.create({ model: 'openai/gpt-4o', messages: userMessage('x') }, { headers: { 'x-request-id': 'spine-err-429' } }),
      429,
    );
    assert.ok(e429 instanceof OpenAI.RateLimitError, `got ${e429}`);
    assert.ok(e429.error.message.includes(upstream429), `upstream message kept: ${e429.error.message}`);
    assert.match(JSON.stringify(e429.error), /openai/i, 'provider named in the message or a field');
    assert.equal(emu.requests.length, 2, 'retried once on the same provider (the default), then given up');
    assert.ok(emu.requests[1].receivedAt - emu.requests[0].receivedAt >= 1000, 'Retry-After honoured between the two');

    const upstream400 = "Invalid value for 'temperature': expected a number between 0 and 2.";
    emu.script({
      match: { model: 'grok-3' },
      status: 400,
      body: { error: { message: upstream400, type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' } },
    });
    const e400 = await apiError(client().chat.completions.create({ model: 'xai/grok-3', messages: userMessage('x'), temperature: 5 }), 400);
    assert.ok(e400.error.message.includes(upstream400), `upstream message kept: ${e400.error.message}`);
    assert.match(JSON.stringify(e400.error), /xai/i, 'provider named in the message or a field');

    // Headers last, so the body checks above report first.
    assert.equal(e429.headers.get('x-request-id'), 'spine-err-429');
    assert.equal(e429.headers.get('x-switchyard-provider'), 'openai');
    assert.equal(e400.headers.get('x-switchyard-provider'), 'xai');
    assert.match(e429.headers.get('x-generation-id') ?? '', GEN_ID, 'x-generation-id on an upstream error response');
    assert.match(e400.headers.get('x-generation-id') ?? '', GEN_ID, 'x-generation-id on an upstream error response');
  });

  test('upstream connection refused: 502', async () => {
    const err = await apiError(client().chat.completions.create({ model: 'mistral/mistral-large-latest', messages: userMessage('x') }), 502);
    assert.ok(err.message.length > 0);
    assert.match(JSON.stringify(err.error), /mistral/i, 'the unreachable provider is named');
    assert.equal(err.headers.get('x-switchyard-provider'), 'mistral');
    assert.match(err.headers.get('x-generation-id') ?? '', GEN_ID, 'x-generation-id on a 502 response');
  });

  test('a provider that echoes its key in an error: the key is scrubbed from what the client gets', async () => {
    for (const [model, native, provider] of [
      ['xai/grok-3', 'grok-3', 'xai'],
      ['anthropic/claude-sonnet-4-6', 'claude-sonnet-4-6', 'anthropic'],
    ]) {
      emu.reset();
      const key = PROVIDER_KEYS[provider];
      const message = `The model is not available to the account of ${key}; ask for another.`;
      emu.script({
        match: { model: native },
        status: 400,
        body:
          provider === 'anthropic'
            ? { type: 'error', error: { type: 'invalid_request_error', message } }
            : { error: { message, type: 'invalid_request_error', param: null, code: 'model_not_available' } },
      });
      const err = await client()
        .chat.completions.create({ model, messages: userMessage('x') })
        .catch((e) => e);
      assert.ok(err instanceof OpenAI.APIError && err.status >= 400, `${model}: ${err}`);
      const shown = JSON.stringify(err.error) + [...err.headers.entries()].join('\n');
      assert.ok(!shown.includes(key), `${model}: the key was echoed: ${shown}`);
      assert.match(err.error.message, /not available to the account of \[redacted\]; ask/, `${model}: the rest of the message is kept`);
    }
  });

  test('no secret appears in any response body or header', async () => {
    const secrets = [
      ['admin token', gw.adminToken],
      ...Object.entries(PROVIDER_KEYS).map(([p, k]) => [`${p} provider key`, k]),
      ...gatewayKeys.map((k, i) => [`gateway key #${i}`, k]),
    ];
    assert.ok(responses.length > 30, `responses were recorded (${responses.length})`);
    for (const r of responses) {
      const haystack = `${r.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}\n${r.body}`;
      for (const [label, secret] of secrets) {
        assert.ok(!haystack.includes(secret), `${label} leaked in the response to ${r.url} (HTTP ${r.status})`);
      }
    }
  });
});
