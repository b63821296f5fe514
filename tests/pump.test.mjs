// src/edge/pump.js (the stream pump the gateway's wasm hands provider streams to) on its own in
// workerd: the cases the whole gateway cannot easily reach.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Miniflare } from 'miniflare';
import { createServer } from 'node:http';

const PUMP = readFileSync(new URL('../src/edge/pump.js', import.meta.url), 'utf8');

// A Worker that pumps a stream it makes itself: `?case=locked` hands the pump a source another
// reader holds (its setup fails), `?case=ok` three chunks through an identity `onChunk`.
const WORKER = `
import { pump } from './pump.js';
const enc = new TextEncoder();
// How many quiet streams were given an end (\`?case=ends\`): none whose client left.
let ends = 0;
export default {
  async fetch(request, env, ctx) {
    const which = new URL(request.url).searchParams.get('case');
    if (which === 'ends') return new Response(String(ends));
    if (which === 'done' || which === 'cut') {
      // A provider whose first chunk completes the client's stream and that then says nothing
      // more, its connection open: read on for a while (\`done\`), or let go at once when the
      // gateway cut the stream short (\`cut\`).
      const upstream = await fetch(new URL(request.url).searchParams.get('upstream'));
      const last = () => [enc.encode('data: [DONE]\\n\\n'), which === 'cut'];
      const [body, finished] = pump(upstream.body, enc.encode(''), last, () => enc.encode(''), () => {}, request.signal);
      ctx.waitUntil(finished);
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    }
    if (which === 'quiet') {
      // A provider that sends one event, then says nothing more until it is let go.
      const upstream = await fetch(new URL(request.url).searchParams.get('upstream'));
      // The client's going away, as the request's signal reports it: workerd's local dev
      // runtime never fires that signal, so this one fires 300 ms in, the provider quiet.
      const gone = new AbortController();
      const leave = () => gone.abort(new Error('the client went away'));
      // (\`&gone=before\`: gone before the pump starts, as when the provider answered late.)
      if (new URL(request.url).searchParams.get('gone') === 'before') leave();
      else setTimeout(leave, 300);
      const [body, finished] = pump(upstream.body, enc.encode(''), () => undefined, () => (ends++, enc.encode('data: [DONE]\\n\\n')), () => {}, gone.signal);
      ctx.waitUntil(finished);
      // (An event stream, as the gateway answers: not compressed, so each event goes at once.)
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    }
    const source = new ReadableStream({
      start(c) { for (const s of ['data: 1\\n\\n', 'data: 2\\n\\n', 'data: 3\\n\\n']) c.enqueue(enc.encode(s)); c.close(); },
    });
    if (which.startsWith('locked')) source.getReader();
    const prefix = which === 'locked-done' ? 'data: prefix\\n\\ndata: [DONE]\\n\\n' : 'data: prefix\\n\\n';
    let done = 0;
    // \`last\`: the second chunk completes the client's stream (what the core says after [DONE]).
    let n = 0;
    const onChunk = which === 'last' ? () => (++n === 2 ? [enc.encode('data: 2\\n\\ndata: [DONE]\\n\\n')] : undefined) : () => undefined;
    const [body, finished] = pump(
      source,
      enc.encode(prefix),
      onChunk,
      (error) => enc.encode(error ? 'data: cut\\n\\n' : 'data: [DONE]\\n\\n'),
      () => { done++; },
      request.signal,
    );
    // The body is read by the client as the pump writes it: only a pump that never started is
    // done before the response goes out.
    ctx.waitUntil(finished);
    return new Response(body, { headers: { 'x-done-before-answer': String(done) } });
  },
};`;

let mf;
let url;

before(async () => {
  mf = new Miniflare({
    modules: [
      { type: 'ESModule', path: 'worker.js', contents: WORKER },
      { type: 'ESModule', path: 'pump.js', contents: PUMP },
    ],
    compatibilityDate: '2026-04-01',
    compatibilityFlags: ['enable_request_signal'],
    host: '127.0.0.1',
    port: 0,
  });
  url = (await mf.ready).origin;
});

after(async () => {
  await mf?.dispose();
});

test('pump: the prefix, every chunk, then the end', async () => {
  const res = await fetch(`${url}/?case=ok`);
  const text = await res.text();
  assert.equal(text, 'data: prefix\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n');
});

test('pump: bytes that complete the stream end it, whatever the provider still sends', async () => {
  const res = await fetch(`${url}/?case=last`);
  assert.equal(await res.text(), 'data: prefix\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n');
});

test('pump: a source it cannot read still ends with what was read, an error event and [DONE], and frees the callbacks', async () => {
  const res = await fetch(`${url}/?case=locked`);
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.ok(text.startsWith('data: prefix\n\n'), text);
  assert.match(text, /data: \{"error":\{[^\n]*"type":"server_error"/);
  assert.ok(text.endsWith('data: [DONE]\n\n'), text);
  assert.equal(res.headers.get('x-done-before-answer'), '1', 'onDone ran, at once');
});

test('pump: a source it cannot read after an answer that already ended adds nothing', async () => {
  const res = await fetch(`${url}/?case=locked-done`);
  assert.equal(await res.text(), 'data: prefix\n\ndata: [DONE]\n\n');
});

/**
 * Runs `body(upstream, closedAt)` against a provider that sends one event and then nothing, its
 * connection open until let go; `closedAt()` is when that happened (null until then).
 */
async function withQuietProvider(body) {
  let closed = null;
  const provider = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: 1\n\n');
    res.on('close', () => (closed = Date.now()));
  });
  await new Promise((r) => provider.listen(0, '127.0.0.1', r));
  try {
    await body(`http://127.0.0.1:${provider.address().port}/`, () => closed);
  } finally {
    provider.closeAllConnections?.();
    await new Promise((r) => provider.close(r));
  }
}

const waitUntilClosed = async (closedAt, tries) => {
  for (let i = 0; i < tries && closedAt() === null; i++) await new Promise((r) => setTimeout(r, 50));
};

for (const gone of ['later', 'before']) test(`pump: a client that leaves (${gone}) while the provider is quiet lets the provider go at once (its signal)`, () =>
  withQuietProvider(async (upstream, closedAt) => {
    const res = await fetch(`${url}/?case=quiet&gone=${gone}&upstream=${encodeURIComponent(upstream)}`);
    const reader = res.body.getReader();
    const read = Date.now();
    if (gone === 'later') {
      const first = await reader.read();
      assert.equal(new TextDecoder().decode(first.value), 'data: 1\n\n');
    }
    // No further event will come to make a write fail: only the signal can tell the pump.
    await waitUntilClosed(closedAt, 40);
    assert.ok(closedAt() !== null, 'the provider was let go within 2 s of the client leaving');
    assert.ok(closedAt() - read < 2000);
    // The client's side ends too (its stream is closed, not left hanging), and no end was
    // made for a client that left.
    for (;;) if ((await reader.read()).done) break;
    assert.equal(await (await fetch(`${url}/?case=ends`)).text(), '0');
  }),
);

for (const which of ['done', 'cut']) test(`pump: a stream complete at its first chunk (${which}): the client's ends at once, the provider's body is ${which === 'done' ? 'read on for a second, then let go' : 'let go at once'}`, () =>
  withQuietProvider(async (upstream, closedAt) => {
    const started = Date.now();
    const res = await fetch(`${url}/?case=${which}&upstream=${encodeURIComponent(upstream)}`);
    assert.equal(await res.text(), 'data: [DONE]\n\n');
    const answered = Date.now();
    await waitUntilClosed(closedAt, 60);
    assert.ok(closedAt() !== null, 'the provider was let go');
    if (which === 'done') {
      assert.ok(closedAt() - started >= 900, `the rest of its body was waited for (${closedAt() - started} ms)`);
    } else {
      assert.ok(closedAt() - answered < 800, `let go without the drain's wait (${closedAt() - answered} ms)`);
    }
  }),
);
