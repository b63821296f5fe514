// Lean fixed-response upstream for the benchmarks: every answer is prebuilt once, so the upstream
// costs the same tiny amount on every path and is a fair floor. It speaks just enough of:
//   POST …/chat/completions   OpenAI: JSON, or SSE when the body has "stream":true
//   POST …/messages           Anthropic: JSON, or SSE when the body has "stream":true
//   POST …:streamGenerateContent?alt=sse   Gemini SSE;  …:generateContent  Gemini JSON
// Stream events are written one by one (one HTTP chunk each, no delay, Nagle off), as providers
// send them. The number of content events is BENCH_STREAM_EVENTS (default 32).
//
// Standalone: node bench/upstream.mjs --port N   (prints "listening <url>")
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const WORDS = ['The ', 'quick ', 'brown ', 'fox ', 'jumps ', 'over ', 'the ', 'lazy ', 'dog. '];

export function bodies(events = Number(process.env.BENCH_STREAM_EVENTS ?? 32)) {
  const pieces = Array.from({ length: events }, (_, i) => WORDS[i % WORDS.length]);
  const text = pieces.join('');
  const created = 1764201600;
  const oaBase = { id: 'chatcmpl-bench0000000000000000000000', created, model: 'gpt-4o', service_tier: 'default', system_fingerprint: 'fp_bench' };
  const usage = { prompt_tokens: 9, completion_tokens: events, total_tokens: 9 + events };
  const openaiJson = JSON.stringify({
    ...oaBase,
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage,
  });
  const chunk = (choices) => JSON.stringify({ ...oaBase, object: 'chat.completion.chunk', choices });
  const openaiSse = [
    chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]),
    ...pieces.map((p) => chunk([{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }])),
    chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]),
    '[DONE]',
  ].map((d) => `data: ${d}\n\n`);

  const msgId = 'msg_01Bench000000000000000000';
  const aUsage = { input_tokens: 9, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: events, service_tier: 'standard' };
  const anthropicJson = JSON.stringify({
    id: msgId, type: 'message', role: 'assistant', model: 'claude-sonnet-4-6',
    content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: aUsage,
  });
  const ev = (type, obj) => `event: ${type}\ndata: ${JSON.stringify({ type, ...obj })}\n\n`;
  const anthropicSse = [
    ev('message_start', { message: { id: msgId, type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, stop_sequence: null, usage: { ...aUsage, output_tokens: 1 } } }),
    ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    ev('ping', {}),
    ...pieces.map((p) => ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } })),
    ev('content_block_stop', { index: 0 }),
    ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: events } }),
    ev('message_stop', {}),
  ];

  const gUsage = { promptTokenCount: 9, candidatesTokenCount: events, totalTokenCount: 9 + events };
  const gChunk = (p, last) => JSON.stringify({
    candidates: [{ content: { parts: [{ text: p }], role: 'model' }, ...(last ? { finishReason: 'STOP' } : {}), index: 0 }],
    usageMetadata: last ? gUsage : { promptTokenCount: 9, totalTokenCount: 9 },
    modelVersion: 'gemini-2.5-flash', responseId: 'benchResponseId0',
  });
  const geminiSse = pieces.map((p, i) => `data: ${gChunk(p, i === pieces.length - 1)}\r\n\r\n`);
  const geminiJson = JSON.stringify({
    candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }],
    usageMetadata: gUsage, modelVersion: 'gemini-2.5-flash', responseId: 'benchResponseId0',
  });
  const buf = (s) => Buffer.from(s);
  return {
    events,
    openai: { json: buf(openaiJson), sse: openaiSse.map(buf) },
    anthropic: { json: buf(anthropicJson), sse: anthropicSse.map(buf) },
    gemini: { json: buf(geminiJson), sse: geminiSse.map(buf) },
  };
}

export function startUpstream({ port = 0, host = '127.0.0.1' } = {}) {
  const b = bodies();
  const JSON_HEADERS = (len) => ({ 'content-type': 'application/json', 'content-length': len });
  const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const url = req.url;
      const body = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      const streamWanted = body.includes('"stream":true');
      let kind;
      if (url.endsWith('/chat/completions')) kind = b.openai;
      else if (url.endsWith('/messages')) kind = b.anthropic;
      else if (url.includes(':streamGenerateContent')) kind = { sse: b.gemini.sse, alwaysStream: true };
      else if (url.includes(':generateContent')) kind = { json: b.gemini.json };
      else {
        res.writeHead(404, { 'content-type': 'application/json' });
        return res.end('{"error":{"message":"unknown path","type":"invalid_request_error"}}');
      }
      if ((streamWanted || kind.alwaysStream) && kind.sse) {
        res.writeHead(200, SSE_HEADERS);
        for (const e of kind.sse) res.write(e);
        res.end();
      } else {
        res.writeHead(200, JSON_HEADERS(kind.json.length));
        res.end(kind.json);
      }
    });
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  server.requestTimeout = 0;
  server.on('connection', (s) => s.setNoDelay(true));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve({ server, url: `http://${host}:${server.address().port}`, port: server.address().port }));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--port');
  const { url, server } = await startUpstream({ port: i > 0 ? Number(process.argv[i + 1]) : 0 });
  console.log(`listening ${url}`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
