// Checks the upstream emulator itself: each protocol's shapes, scripting, and a few faults.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator } from './emulator.mjs';

let emu;
before(async () => {
  emu = await startEmulator();
});
after(async () => {
  await emu?.close();
});
beforeEach(() => emu.reset());

function post(path, body, headers = {}) {
  return fetch(emu.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const OPENAI_AUTH = { authorization: 'Bearer sk-test' };
const ANTHROPIC_AUTH = { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01' };
const GOOGLE_AUTH = { 'x-goog-api-key': 'goog-test' };

/** Parses an SSE body into [{event, data}] (data JSON-parsed where possible). */
function parseSse(text) {
  return text
    .split(/\r?\n\r?\n/)
    .filter((block) => block.trim())
    .map((block) => {
      const out = { event: null, data: '' };
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) out.event = line.slice(6).trim();
        else if (line.startsWith('data:')) out.data += line.slice(5).trimStart();
      }
      try {
        out.data = JSON.parse(out.data);
      } catch {}
      return out;
    });
}

test('openai: non-streaming echo with usage, request recorded', async () => {
  const res = await post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'ping pong' }], extra: { a: 1 } }, { ...OPENAI_AUTH, 'X-Request-Id': 'abc' });
  assert.equal(res.status, 200);
  const json = await res.json();
  assert.equal(json.object, 'chat.completion');
  assert.match(json.id, /^chatcmpl-/);
  assert.equal(json.model, 'gpt-4o');
  assert.equal(json.choices[0].message.content, 'Hello from emulator: ping pong');
  assert.equal(json.choices[0].finish_reason, 'stop');
  assert.ok(json.usage.prompt_tokens > 0);
  assert.equal(json.usage.total_tokens, json.usage.prompt_tokens + json.usage.completion_tokens);
  const seen = emu.requests[0];
  assert.equal(seen.method, 'POST');
  assert.equal(seen.path, '/v1/chat/completions');
  assert.equal(seen.headers['x-request-id'], 'abc');
  assert.equal(seen.headers.authorization, 'Bearer sk-test');
  assert.deepEqual(seen.body.extra, { a: 1 });
  assert.equal(seen.protocol, 'openai');
});

test('openai: streaming with include_usage ends with a usage chunk and [DONE]', async () => {
  const res = await post('/v1/chat/completions', { model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'stream me please' }] }, OPENAI_AUTH);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const events = parseSse(await res.text());
  assert.equal(events.at(-1).data, '[DONE]');
  const usage = events.at(-2).data;
  assert.deepEqual(usage.choices, []);
  assert.ok(usage.usage.completion_tokens > 0);
  const chunks = events.slice(0, -2).map((e) => e.data);
  assert.ok(chunks.length >= 4);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), 'Hello from emulator: stream me please');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  for (const c of chunks) assert.equal(c.usage, null);
});

test('openai: parallel tool calls, streamed as fragments and non-streamed', async () => {
  const calls = [
    { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } },
    { name: 'get_time', arguments: { tz: 'Europe/Paris' } },
  ];
  emu.script({ toolCalls: calls, times: 2 });
  const plain = await (await post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }, OPENAI_AUTH)).json();
  assert.equal(plain.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(
    plain.choices[0].message.tool_calls.map((t) => [t.type, t.function.name, JSON.parse(t.function.arguments)]),
    calls.map((c) => ['function', c.name, c.arguments]),
  );

  const res = await post('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'x' }] }, OPENAI_AUTH);
  const chunks = parseSse(await res.text()).filter((e) => e.data !== '[DONE]').map((e) => e.data);
  const assembled = [];
  let fragments = 0;
  for (const c of chunks) {
    for (const tc of c.choices[0]?.delta?.tool_calls ?? []) {
      assembled[tc.index] ??= { name: '', args: '' };
      if (tc.id) assembled[tc.index].id = tc.id;
      if (tc.function?.name) assembled[tc.index].name += tc.function.name;
      if (tc.function?.arguments) {
        assembled[tc.index].args += tc.function.arguments;
        fragments++;
      }
    }
  }
  assert.ok(fragments > calls.length, 'arguments arrive in several fragments');
  assert.deepEqual(assembled.map((a) => [a.name, JSON.parse(a.args)]), calls.map((c) => [c.name, c.arguments]));
  assert.ok(assembled.every((a) => /^call_/.test(a.id)));
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('openai: models list, missing auth and error shapes', async () => {
  const list = await (await fetch(emu.url + '/v1/models', { headers: OPENAI_AUTH })).json();
  assert.equal(list.object, 'list');
  assert.ok(list.data.some((m) => m.id === 'gpt-4o' && m.object === 'model'));

  const noAuth = await post('/v1/chat/completions', { model: 'gpt-4o', messages: [] });
  assert.equal(noAuth.status, 401);
  const err = (await noAuth.json()).error;
  assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'param', 'type']);

  emu.script({ match: { model: 'gpt-4o' }, status: 429, headers: { 'retry-after': '1' } });
  const limited = await post('/v1/chat/completions', { model: 'gpt-4o', messages: [] }, OPENAI_AUTH);
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get('retry-after'), '1');
  assert.equal((await limited.json()).error.code, 'rate_limit_exceeded');
  // the rule was one-shot
  assert.equal((await post('/v1/chat/completions', { model: 'gpt-4o', messages: [] }, OPENAI_AUTH)).status, 200);
});

test('anthropic: non-streaming message with tool_use, headers recorded', async () => {
  emu.script({ match: { path: '/v1/messages' }, toolCalls: [{ name: 'lookup', arguments: { q: 'x' } }] });
  const res = await post('/v1/messages', { model: 'claude-sonnet-4-20250514', max_tokens: 64, messages: [{ role: 'user', content: 'hey' }] }, ANTHROPIC_AUTH);
  assert.equal(res.status, 200);
  const msg = await res.json();
  assert.equal(msg.type, 'message');
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.stop_reason, 'tool_use');
  assert.deepEqual(msg.content[0], { type: 'tool_use', id: msg.content[0].id, name: 'lookup', input: { q: 'x' } });
  assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0);
  assert.equal(emu.requests[0].headers['x-api-key'], 'sk-ant-test');
  assert.equal(emu.requests[0].headers['anthropic-version'], '2023-06-01');
});

test('anthropic: streaming events in order, with thinking and signature deltas', async () => {
  const res = await post('/v1/messages', { model: 'claude-sonnet-4', max_tokens: 64, stream: true, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'think' }] }, ANTHROPIC_AUTH);
  const events = parseSse(await res.text());
  for (const e of events) assert.equal(e.event, e.data.type, 'event name matches data.type');
  const names = events.map((e) => e.event);
  assert.equal(names[0], 'message_start');
  assert.ok(names.includes('ping'));
  assert.deepEqual(names.slice(-2), ['message_delta', 'message_stop']);
  const deltas = events.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta.type);
  assert.ok(deltas.includes('thinking_delta') && deltas.includes('signature_delta') && deltas.includes('text_delta'));
  const text = events.filter((e) => e.data.delta?.type === 'text_delta').map((e) => e.data.delta.text).join('');
  assert.equal(text, 'Hello from emulator: think');
  const md = events.find((e) => e.event === 'message_delta').data;
  assert.equal(md.delta.stop_reason, 'end_turn');
  assert.ok(md.usage.output_tokens > 0);
});

test('anthropic: 529 overloaded error body and mid-stream error event', async () => {
  emu.script({ status: 529 });
  const res = await post('/v1/messages', { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'a' }] }, ANTHROPIC_AUTH);
  assert.equal(res.status, 529);
  const body = await res.json();
  assert.equal(body.type, 'error');
  assert.equal(body.error.type, 'overloaded_error');

  emu.script({ errorAfter: 2 });
  const streamed = await post('/v1/messages', { model: 'm', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'a' }] }, ANTHROPIC_AUTH);
  const events = parseSse(await streamed.text());
  assert.equal(events.length, 3);
  assert.equal(events[2].event, 'error');
  assert.equal(events[2].data.error.type, 'overloaded_error');
});

test('gemini: generateContent and SSE stream with thought parts and usageMetadata', async () => {
  const body = { contents: [{ role: 'user', parts: [{ text: 'gem' }] }], generationConfig: { thinkingConfig: { includeThoughts: true } } };
  const res = await post('/v1beta/models/gemini-2.5-flash:generateContent', body, GOOGLE_AUTH);
  const json = await res.json();
  const parts = json.candidates[0].content.parts;
  assert.equal(parts[0].thought, true);
  assert.equal(parts.at(-1).text, 'Hello from emulator: gem');
  assert.equal(json.candidates[0].finishReason, 'STOP');
  const u = json.usageMetadata;
  assert.equal(u.totalTokenCount, u.promptTokenCount + u.candidatesTokenCount + u.thoughtsTokenCount);
  assert.equal(emu.requests[0].model, 'gemini-2.5-flash');
  assert.equal(emu.requests[0].headers['x-goog-api-key'], 'goog-test');

  const sres = await post('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse', body, GOOGLE_AUTH);
  const raw = await sres.text();
  assert.ok(raw.includes('\r\n\r\n'));
  const events = parseSse(raw).map((e) => e.data);
  const answer = events.flatMap((e) => e.candidates[0].content.parts).filter((p) => !p.thought).map((p) => p.text).join('');
  assert.equal(answer, 'Hello from emulator: gem');
  assert.equal(events.at(-1).candidates[0].finishReason, 'STOP');
  assert.ok(events.every((e) => e.usageMetadata.promptTokenCount > 0));

  emu.script({ toolCalls: [{ name: 'f', arguments: { x: 1 } }], cachedTokens: 7 });
  const fc = await (await post('/v1beta/models/gemini-2.5-pro:generateContent', { contents: [{ parts: [{ text: 'q' }] }] }, GOOGLE_AUTH)).json();
  assert.deepEqual(fc.candidates[0].content.parts[0].functionCall, { name: 'f', args: { x: 1 } });
  assert.equal(fc.usageMetadata.cachedContentTokenCount, 7);
});

test('gemini: Google error shape', async () => {
  emu.script({ match: { model: 'gemini-2.5-pro' }, status: 429 });
  const res = await post('/v1beta/models/gemini-2.5-pro:generateContent', { contents: [{ parts: [{ text: 'q' }] }] }, GOOGLE_AUTH);
  assert.equal(res.status, 429);
  assert.deepEqual(Object.keys((await res.json()).error).sort(), ['code', 'message', 'status']);
  const noKey = await post('/v1beta/models/gemini-2.5-pro:generateContent', { contents: [{ parts: [{ text: 'q' }] }] });
  assert.equal(noKey.status, 403);
  assert.equal((await noKey.json()).error.status, 'PERMISSION_DENIED');
});

test('token endpoint: jwt-bearer grant recorded and answered', async () => {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const assertion = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc({ iss: 'sa@p.iam.gserviceaccount.com', aud: 'x' })}.c2ln`;
  const res = await fetch(emu.url + '/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
  });
  const json = await res.json();
  assert.equal(json.token_type, 'Bearer');
  assert.ok(json.access_token && json.expires_in > 0);
  assert.equal(emu.requests[0].body.assertion, assertion);
  assert.equal(emu.requests[0].jwt.claims.iss, 'sa@p.iam.gserviceaccount.com');
  const bad = await fetch(emu.url + '/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=password' });
  assert.equal(bad.status, 400);
});

test('faults: reset, malformed, cutAfter, stallAfter, hang, and client abort is observed', async () => {
  const req = { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] };
  emu.script({ reset: true });
  await assert.rejects(post('/v1/chat/completions', req, OPENAI_AUTH));

  emu.script({ malformed: true });
  const bad = await post('/v1/chat/completions', req, OPENAI_AUTH);
  assert.equal(bad.status, 200);
  await assert.rejects(bad.json());

  emu.script({ cutAfter: 2 });
  const cut = await post('/v1/chat/completions', { ...req, stream: true }, OPENAI_AUTH);
  await assert.rejects(cut.text());
  assert.equal(emu.requests.at(-1).eventsSent, 2);

  emu.script({ stallAfter: 2 });
  const stalledResponse = await fetch(emu.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { ...OPENAI_AUTH, 'content-type': 'application/json' },
    body: JSON.stringify({ ...req, stream: true }),
    signal: AbortSignal.timeout(500),
  });
  let stalledText = '';
  const stallDecoder = new TextDecoder();
  await assert.rejects(async () => {
    for await (const piece of stalledResponse.body) stalledText += stallDecoder.decode(piece, { stream: true });
  }, { name: 'TimeoutError' });
  assert.equal(stalledText.split('\n\n').filter((e) => e.startsWith('data:')).length, 2, stalledText);
  const stalled = await emu.waitForRequest((r) => r.stalled && r.clientClosed);
  assert.equal(stalled.eventsSent, 2);
  assert.equal(stalled.finished, false);

  emu.script({ hang: true });
  const hungRequest = fetch(emu.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { ...OPENAI_AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(req),
    signal: AbortSignal.timeout(300),
  });
  await assert.rejects(hungRequest, { name: 'TimeoutError' });
  const hung = await emu.waitForRequest((r) => r.hung && r.clientClosed);
  assert.equal(hung.finished, false);

  emu.script({ eventDelayMs: 100, text: 'one two three four five six seven eight' });
  const ac2 = new AbortController();
  const streaming = await fetch(emu.url + '/v1/chat/completions', { method: 'POST', headers: { ...OPENAI_AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ ...req, stream: true }), signal: ac2.signal });
  const reader = streaming.body.getReader();
  await reader.read();
  const abortedSeq = emu.requests.at(-1).seq; // (the stalled request above was aborted too)
  assert.equal(emu.requests.at(-1).stream, true);
  ac2.abort();
  const aborted = await emu.waitForRequest((r) => r.seq === abortedSeq && r.clientClosed);
  assert.ok(aborted.eventsSent >= 1 && aborted.eventsSent < 10, `emulator stopped sending after the client left (${aborted.eventsSent} sent)`);
  assert.equal(aborted.finished, false);
});

test('scripted custom stream and persistent rules; HTTP control routes', async () => {
  emu.script({ persistent: true, match: { model: 'custom' }, stream: [{ choices: [{ index: 0, delta: { content: 'A' } }] }, '[DONE]'] });
  for (let i = 0; i < 2; i++) {
    const res = await post('/v1/chat/completions', { model: 'custom', messages: [] }, OPENAI_AUTH);
    assert.equal(await res.text(), 'data: {"choices":[{"index":0,"delta":{"content":"A"}}]}\n\ndata: [DONE]\n\n');
  }
  const scripted = await post('/__emulator/script', { match: { path: '/v1/chat' }, status: 400, body: { error: { message: 'nope', type: 'invalid_request_error', param: null, code: null } } });
  assert.equal(scripted.status, 200);
  const res = await post('/v1/chat/completions', { model: 'other', messages: [] }, OPENAI_AUTH);
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.message, 'nope');
  const listed = await (await fetch(emu.url + '/__emulator/requests')).json();
  assert.equal(listed.length, 3);
  await post('/__emulator/reset', {});
  assert.equal(emu.requests.length, 0);
});

test('streaming writes each event separately (incremental delivery)', async () => {
  emu.script({ eventDelayMs: 150 });
  const t0 = Date.now();
  const res = await post('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'a b c d' }] }, OPENAI_AUTH);
  const reader = res.body.getReader();
  const first = await reader.read();
  const tFirst = Date.now() - t0;
  assert.ok(first.value.length > 0);
  while (!(await reader.read()).done);
  const total = Date.now() - t0;
  assert.ok(tFirst < total - 500, `first chunk at ${tFirst} ms, end at ${total} ms`);
});
