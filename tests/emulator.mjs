// Upstream emulator for Switchyard's integration tests and benchmarks.
//
// One loopback node:http server that speaks, closely enough to exercise a gateway:
//   - OpenAI Chat Completions   POST …/chat/completions (JSON and SSE), GET …/models[/{id}]
//   - Anthropic Messages        POST …/messages (JSON and SSE), POST …/messages/count_tokens,
//                               Vertex form POST …/publishers/anthropic/models/{m}:rawPredict|:streamRawPredict
//   - Gemini                    POST …/models/{m}:generateContent | :streamGenerateContent[?alt=sse]
//                               (also under Vertex's /v1/projects/…/publishers/google/models/{m}:…)
//   - OAuth2 token endpoint     POST /token (jwt-bearer grant, for Vertex service accounts)
// Paths are matched by suffix, so any base path (/v1, /openai/v1, /inference/v1 …) works.
//
// Default behaviour is a deterministic echo: "Hello from emulator: <last user message>", with usage
// numbers estimated from the input (about four characters per token). Tests change behaviour per
// request with script(rule); see the Rule fields documented on `script` below.
//
// In-process:   const emu = await startEmulator(); … emu.script({...}); … await emu.close();
// Standalone:   node tests/emulator.mjs --port 9100 [--host 127.0.0.1] [--no-record]
//               prints the URL; control it over HTTP with GET /__emulator/requests,
//               POST /__emulator/reset and POST /__emulator/script (JSON rule or array of rules;
//               use "times": -1 or "persistent": true for a rule that never runs out).

import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomId(length) {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += ALNUM[bytes[i] % ALNUM.length];
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rough token estimate: about four characters per token, at least one. */
export function estimateTokens(text) {
  if (!text) return 0;
  return Math.max(1, Math.ceil(String(text).length / 4));
}

/** Splits text into stream pieces: words (with their trailing space), at least `min` pieces. */
export function splitText(text, pieces) {
  if (!text) return [''];
  if (pieces && pieces > 0) {
    const size = Math.max(1, Math.ceil(text.length / pieces));
    const out = [];
    for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
    return out;
  }
  const words = text.match(/\S+\s*|\s+/g) ?? [text];
  if (words.length >= 3) return words;
  return splitText(text, Math.min(3, text.length));
}

function splitArguments(json) {
  // A realistic fragmenting of a JSON argument string across several deltas.
  if (json.length <= 4) return [json];
  const parts = [];
  const size = Math.max(2, Math.ceil(json.length / 4));
  for (let i = 0; i < json.length; i += size) parts.push(json.slice(i, i + size));
  return parts;
}

function toolArgumentsString(call) {
  const args = call.arguments ?? call.args ?? call.input ?? {};
  return typeof args === 'string' ? args : JSON.stringify(args);
}

function toolArgumentsObject(call) {
  const args = call.arguments ?? call.args ?? call.input ?? {};
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Text extraction (for the echo reply and the token estimates)

function partsText(content) {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => {
        if (typeof part === 'string') return part;
        if (part?.type === 'text' || typeof part?.text === 'string') return part.text ?? '';
        if (part?.type === 'tool_result') return partsText(part.content);
        return '';
      })
      .filter(Boolean)
      .join(' ');
  }
  if (typeof content === 'object' && typeof content.text === 'string') return content.text;
  return '';
}

function countNonTextParts(content) {
  if (!Array.isArray(content)) return 0;
  return content.filter((p) => p && typeof p === 'object' && !('text' in p) && p.type !== 'text').length;
}

function openaiInput(body) {
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  let lastUser = '';
  let tokens = 3;
  for (const m of messages) {
    const text = partsText(m?.content);
    tokens += 4 + estimateTokens(text) + 85 * countNonTextParts(m?.content);
    if (m?.tool_calls) tokens += estimateTokens(JSON.stringify(m.tool_calls));
    if (m?.role === 'user') lastUser = text;
  }
  if (body?.tools) tokens += estimateTokens(JSON.stringify(body.tools));
  return { lastUser, tokens };
}

function anthropicInput(body) {
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  let lastUser = '';
  let tokens = 3 + estimateTokens(partsText(body?.system));
  for (const m of messages) {
    const text = partsText(m?.content);
    tokens += 4 + estimateTokens(text) + 85 * countNonTextParts(m?.content);
    if (m?.role === 'user' && text) lastUser = text;
  }
  if (body?.tools) tokens += estimateTokens(JSON.stringify(body.tools));
  return { lastUser, tokens };
}

function geminiInput(body) {
  const contents = Array.isArray(body?.contents) ? body.contents : [];
  let lastUser = '';
  let tokens = estimateTokens(partsText(body?.systemInstruction?.parts));
  for (const c of contents) {
    const text = partsText(c?.parts);
    tokens += estimateTokens(text) + 258 * countNonTextParts(c?.parts);
    if ((c?.role ?? 'user') === 'user' && text) lastUser = text;
  }
  if (body?.tools) tokens += estimateTokens(JSON.stringify(body.tools));
  return { lastUser, tokens: Math.max(1, tokens) };
}

// ---------------------------------------------------------------------------------------------
// Error bodies, in each provider's own shape

const OPENAI_ERROR = {
  400: ['invalid_request_error', null],
  401: ['invalid_request_error', 'invalid_api_key'],
  403: ['permission_denied', 'unsupported_country_region_territory'],
  404: ['invalid_request_error', 'model_not_found'],
  413: ['invalid_request_error', 'request_too_large'],
  429: ['requests', 'rate_limit_exceeded'],
  500: ['server_error', null],
  503: ['server_error', null],
};
const OPENAI_MESSAGE = {
  400: 'Invalid request.',
  401: 'Incorrect API key provided.',
  404: 'The model does not exist or you do not have access to it.',
  429: 'Rate limit reached for requests. Please try again in 1s.',
  500: 'The server had an error while processing your request. Sorry about that!',
  503: 'The engine is currently overloaded, please try again later.',
};

export function openaiError(status, message, overrides = {}) {
  const [type, code] = OPENAI_ERROR[status] ?? (status >= 500 ? ['server_error', null] : ['invalid_request_error', null]);
  return {
    error: {
      message: message ?? OPENAI_MESSAGE[status] ?? `Emulated error ${status}.`,
      type,
      param: null,
      code,
      ...overrides,
    },
  };
}

const ANTHROPIC_ERROR = {
  400: ['invalid_request_error', 'Invalid request.'],
  401: ['authentication_error', 'invalid x-api-key'],
  403: ['permission_error', 'Your API key does not have permission to use the specified resource.'],
  404: ['not_found_error', 'The requested resource could not be found.'],
  413: ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'],
  429: ['rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit.'],
  500: ['api_error', 'Internal server error'],
  529: ['overloaded_error', 'Overloaded'],
};

export function anthropicError(status, message, type) {
  const [defType, defMessage] = ANTHROPIC_ERROR[status] ?? (status >= 500 ? ['api_error', 'Internal server error'] : ['invalid_request_error', 'Invalid request.']);
  return {
    type: 'error',
    error: { type: type ?? defType, message: message ?? defMessage },
    request_id: `req_011${randomId(21)}`,
  };
}

const GOOGLE_STATUS = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', 'Request had invalid authentication credentials.'],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  429: ['RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'],
  500: ['INTERNAL', 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting'],
  503: ['UNAVAILABLE', 'The model is overloaded. Please try again later.'],
  504: ['DEADLINE_EXCEEDED', 'Deadline exceeded.'],
};

export function googleError(status, message, statusName) {
  const [defStatus, defMessage] = GOOGLE_STATUS[status] ?? (status >= 500 ? ['INTERNAL', 'Internal error.'] : ['INVALID_ARGUMENT', 'Invalid argument.']);
  return { error: { code: status, message: message ?? defMessage, status: statusName ?? defStatus } };
}

function errorFor(protocol, status, message, type) {
  if (protocol === 'anthropic') return anthropicError(status, message, type);
  if (protocol === 'gemini') return googleError(status, message, type);
  if (protocol === 'token') return { error: type ?? 'invalid_grant', error_description: message ?? 'Emulated token error.' };
  return openaiError(status, message, type ? { type } : {});
}

// Frames one stream event in the protocol's SSE form. Strings are written as they are ('[DONE]'
// becomes OpenAI's terminator), { raw } objects too; any other object is JSON in a data line.
function frameEvent(protocol, event, ctx) {
  const eol = ctx?.lineEnding ?? (protocol === 'gemini' ? '\r\n' : '\n');
  if (typeof event === 'string') return event === '[DONE]' ? `data: [DONE]${eol}${eol}` : event;
  if (event && typeof event === 'object' && typeof event.raw === 'string' && Object.keys(event).length === 1) return event.raw;
  const json = JSON.stringify(event);
  if (protocol === 'anthropic') return `event: ${event.type ?? 'message'}\ndata: ${json}\n\n`;
  if (protocol === 'gemini') {
    if (ctx?.geminiArray) return json; // joined by the array writer
    return `data: ${json}${eol}${eol}`;
  }
  return `data: ${json}${eol}${eol}`;
}

function midStreamError(protocol, rule) {
  if (protocol === 'anthropic') {
    return { type: 'error', error: { type: rule.errorType ?? 'overloaded_error', message: rule.errorMessage ?? 'Overloaded' } };
  }
  if (protocol === 'gemini') return googleError(rule.errorStatus ?? 503, rule.errorMessage);
  return openaiError(rule.errorStatus ?? 500, rule.errorMessage);
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions

function openaiLogprobs(text) {
  return {
    content: splitText(text).map((token) => ({
      token,
      logprob: -0.0123,
      bytes: [...Buffer.from(token)],
      top_logprobs: [],
    })),
    refusal: null,
  };
}

function openaiChat(entry, rule) {
  const body = entry.body;
  if (!entry.headers.authorization) {
    return {
      status: 401,
      json: openaiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        { code: null },
      ),
    };
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return { status: 400, json: openaiError(400, 'We could not parse the JSON body of your request.') };
  }
  if (!body.model) return { status: 400, json: openaiError(400, 'you must provide a model parameter') };
  if (!Array.isArray(body.messages)) {
    return {
      status: 400,
      json: openaiError(400, "Missing required parameter: 'messages'.", { param: 'messages', code: 'missing_required_parameter' }),
    };
  }

  const { lastUser, tokens: promptTokens } = openaiInput(body);
  const text = rule.text ?? `Hello from emulator: ${lastUser}`;
  const toolCalls = (rule.toolCalls ?? []).map((call, i) => ({
    id: call.id ?? `call_${randomId(24)}`,
    name: call.name,
    args: toolArgumentsString(call),
    index: i,
  }));
  const n = Number.isInteger(body.n) && body.n > 1 ? body.n : 1;
  const finish = rule.finishReason ?? (toolCalls.length ? 'tool_calls' : 'stop');
  const reasoningTokens = rule.reasoningTokens ?? 0;
  const perChoice = toolCalls.length
    ? toolCalls.reduce((sum, c) => sum + estimateTokens(c.name) + estimateTokens(c.args) + 3, 0)
    : estimateTokens(text);
  const completionTokens = perChoice * n + reasoningTokens;
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: rule.cachedTokens ?? 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: reasoningTokens,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
    ...(rule.usage ?? {}),
  };
  const id = `chatcmpl-${randomId(29)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = rule.responseModel ?? body.model;
  const base = { id, created, model, service_tier: 'default', system_fingerprint: 'fp_emulator' };

  if (!entry.stream) {
    const choices = [];
    for (let index = 0; index < n; index++) {
      const message = toolCalls.length
        ? {
            role: 'assistant',
            content: null,
            tool_calls: toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })),
            refusal: null,
            annotations: [],
          }
        : { role: 'assistant', content: text, refusal: null, annotations: [] };
      choices.push({ index, message, logprobs: body.logprobs && !toolCalls.length ? openaiLogprobs(text) : null, finish_reason: finish });
    }
    return { status: 200, json: { ...base, object: 'chat.completion', choices, usage } };
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const chunk = (choices, extra = {}) => ({
    ...base,
    object: 'chat.completion.chunk',
    choices,
    ...(includeUsage ? { usage: null } : {}),
    ...extra,
  });
  const events = [];
  for (let index = 0; index < n; index++) {
    if (toolCalls.length) {
      toolCalls.forEach((c, i) => {
        const header = { index: c.index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } };
        const delta = i === 0 ? { role: 'assistant', content: null, tool_calls: [header], refusal: null } : { tool_calls: [header] };
        events.push(chunk([{ index, delta, logprobs: null, finish_reason: null }]));
        for (const fragment of splitArguments(c.args)) {
          events.push(chunk([{ index, delta: { tool_calls: [{ index: c.index, function: { arguments: fragment } }] }, logprobs: null, finish_reason: null }]));
        }
      });
    } else {
      events.push(chunk([{ index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]));
      for (const piece of splitText(text, rule.chunks)) {
        const logprobs = body.logprobs ? openaiLogprobs(piece) : null;
        events.push(chunk([{ index, delta: { content: piece }, logprobs, finish_reason: null }]));
      }
    }
    events.push(chunk([{ index, delta: {}, logprobs: null, finish_reason: finish }]));
  }
  if (includeUsage) events.push(chunk([], { usage }));
  events.push('[DONE]');
  return { status: 200, events, contentType: 'text/event-stream; charset=utf-8' };
}

const EMULATED_OPENAI_MODELS = ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'o3-mini', 'text-embedding-3-small'];

function openaiModels(entry, rule) {
  if (!entry.headers.authorization && !entry.headers['x-api-key']) {
    return { status: 401, json: openaiError(401, "You didn't provide an API key.", { code: null }) };
  }
  const created = 1715367049;
  const ids = rule.models ?? EMULATED_OPENAI_MODELS;
  if (entry.headers['anthropic-version']) {
    const data = ids.map((id) => ({ type: 'model', id, display_name: id, created_at: '2025-05-14T00:00:00Z' }));
    return { status: 200, json: { data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null } };
  }
  const m = entry.pathname.match(/\/models\/(.+)$/);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (!ids.includes(id)) {
      return { status: 404, json: openaiError(404, `The model '${id}' does not exist`, { param: 'model' }) };
    }
    return { status: 200, json: { id, object: 'model', created, owned_by: 'system' } };
  }
  return { status: 200, json: { object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: 'system' })) } };
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages

function anthropicValidate(entry) {
  const body = entry.body;
  if (entry.vertex) {
    if (!entry.headers.authorization) return { status: 401, json: anthropicError(401, 'Missing bearer token.') };
  } else {
    if (!entry.headers['x-api-key'] && !entry.headers.authorization) {
      return { status: 401, json: anthropicError(401, 'x-api-key header is required') };
    }
    if (!entry.headers['anthropic-version']) {
      return { status: 400, json: anthropicError(400, 'anthropic-version: header is required') };
    }
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return { status: 400, json: anthropicError(400, 'There was an issue with your request body: invalid JSON') };
  }
  if (entry.vertex && !body.anthropic_version) return { status: 400, json: anthropicError(400, 'anthropic_version: Field required') };
  if (!entry.vertex && !body.model) return { status: 400, json: anthropicError(400, 'model: Field required') };
  if (!Array.isArray(body.messages)) return { status: 400, json: anthropicError(400, 'messages: Field required') };
  return null;
}

function anthropicMessages(entry, rule) {
  const invalid = anthropicValidate(entry);
  if (invalid) return invalid;
  const body = entry.body;
  if (entry.countTokens) return { status: 200, json: { input_tokens: anthropicInput(body).tokens } };
  if (!Number.isInteger(body.max_tokens)) return { status: 400, json: anthropicError(400, 'max_tokens: Field required') };

  const { lastUser, tokens: inputTokens } = anthropicInput(body);
  const text = rule.text ?? `Hello from emulator: ${lastUser}`;
  const thinkingText = rule.thinking ?? (body.thinking?.type === 'enabled' ? `Thinking about: ${lastUser}` : null);
  const toolCalls = (rule.toolCalls ?? []).map((call) => ({
    id: call.id ?? `toolu_01${randomId(22)}`,
    name: call.name,
    input: toolArgumentsObject(call),
    json: toolArgumentsString(call),
  }));
  const signature = rule.signature ?? Buffer.from(`emulator-signature:${thinkingText ?? ''}`).toString('base64');
  const blocks = [];
  if (thinkingText) blocks.push({ type: 'thinking', thinking: thinkingText, signature });
  if (rule.text !== undefined || !toolCalls.length) blocks.push({ type: 'text', text });
  for (const c of toolCalls) blocks.push({ type: 'tool_use', id: c.id, name: c.name, input: c.input });

  const outputTokens =
    (thinkingText ? estimateTokens(thinkingText) : 0) +
    blocks.reduce((sum, b) => sum + (b.type === 'text' ? estimateTokens(b.text) : b.type === 'tool_use' ? estimateTokens(JSON.stringify(b.input)) + 3 : 0), 0);
  const stopReason = rule.finishReason ?? (toolCalls.length ? 'tool_use' : 'end_turn');
  const cacheRead = rule.cachedTokens ?? 0;
  const cacheWrite = rule.cacheWriteTokens ?? 0;
  const usage = {
    input_tokens: inputTokens,
    cache_creation_input_tokens: cacheWrite,
    cache_read_input_tokens: cacheRead,
    cache_creation: { ephemeral_5m_input_tokens: cacheWrite, ephemeral_1h_input_tokens: 0 },
    output_tokens: outputTokens,
    service_tier: 'standard',
    ...(rule.usage ?? {}),
  };
  const message = {
    id: `msg_01${randomId(22)}`,
    type: 'message',
    role: 'assistant',
    model: rule.responseModel ?? body.model ?? entry.model,
    content: blocks,
    stop_reason: stopReason,
    stop_sequence: null,
    usage,
  };
  if (!entry.stream) return { status: 200, json: message, headers: { 'request-id': `req_011${randomId(21)}` } };

  const events = [
    { type: 'message_start', message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } },
  ];
  blocks.forEach((block, index) => {
    if (block.type === 'thinking') {
      events.push({ type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } });
      for (const piece of splitText(block.thinking, rule.chunks)) {
        events.push({ type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: piece } });
      }
      events.push({ type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: block.signature } });
    } else if (block.type === 'text') {
      events.push({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
      for (const piece of splitText(block.text, rule.chunks)) {
        events.push({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } });
      }
    } else {
      events.push({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } });
      const json = toolCalls.find((c) => c.id === block.id).json;
      for (const fragment of ['', ...splitArguments(json)]) {
        events.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: fragment } });
      }
    }
    events.push({ type: 'content_block_stop', index });
  });
  // Anthropic sends its first ping right after the first content_block_start.
  const firstStart = events.findIndex((e) => e.type === 'content_block_start');
  if (firstStart >= 0) events.splice(firstStart + 1, 0, { type: 'ping' });
  events.push({ type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: outputTokens } });
  events.push({ type: 'message_stop' });
  return {
    status: 200,
    events,
    contentType: 'text/event-stream; charset=utf-8',
    headers: { 'request-id': `req_011${randomId(21)}` },
  };
}

// ---------------------------------------------------------------------------------------------
// Gemini

function geminiGenerate(entry, rule) {
  const body = entry.body;
  const hasKey = entry.headers['x-goog-api-key'] || entry.query.get('key') || entry.headers.authorization;
  if (!hasKey) {
    return {
      status: 403,
      json: googleError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
      ),
    };
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return { status: 400, json: googleError(400, 'Invalid JSON payload received.') };
  }
  if (!Array.isArray(body.contents) || body.contents.length === 0) {
    return { status: 400, json: googleError(400, '* GenerateContentRequest.contents: contents is not specified\n') };
  }

  const { lastUser, tokens: promptTokens } = geminiInput(body);
  const text = rule.text ?? `Hello from emulator: ${lastUser}`;
  const includeThoughts = body.generationConfig?.thinkingConfig?.includeThoughts === true;
  const thought = rule.thinking ?? (includeThoughts ? `Thinking about: ${lastUser}` : null);
  const toolCalls = rule.toolCalls ?? [];
  const thoughtsTokens = rule.reasoningTokens ?? (thought ? estimateTokens(thought) : 0);
  const cached = rule.cachedTokens ?? 0;
  const finishReason = rule.finishReason ?? 'STOP';
  const signature = rule.signature ?? Buffer.from(`emulator-thought-signature:${lastUser}`).toString('base64');
  // Gemini names its calls only sometimes (Gemini 3, Vertex): an `id` is sent only when the rule gives one.
  const functionParts = toolCalls.map((call) => ({
    functionCall: { name: call.name, args: toolArgumentsObject(call), ...(call.id !== undefined ? { id: call.id } : {}) },
  }));
  const answerTokens = toolCalls.length
    ? functionParts.reduce((s, p) => s + estimateTokens(JSON.stringify(p.functionCall)), 0)
    : estimateTokens(text);

  const usageFor = (candidates) => ({
    promptTokenCount: promptTokens,
    candidatesTokenCount: candidates,
    totalTokenCount: promptTokens + candidates + thoughtsTokens,
    ...(cached ? { cachedContentTokenCount: cached } : {}),
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }],
    ...(cached ? { cacheTokensDetails: [{ modality: 'TEXT', tokenCount: cached }] } : {}),
    ...(thoughtsTokens ? { thoughtsTokenCount: thoughtsTokens } : {}),
    ...(rule.usage ?? {}),
  });
  const responseId = randomId(22);
  const modelVersion = rule.responseModel ?? entry.model;

  if (!entry.stream) {
    const parts = [];
    if (thought) parts.push({ text: thought, thought: true });
    if (toolCalls.length) parts.push(...functionParts.map((p, i) => (i === 0 ? { ...p, thoughtSignature: signature } : p)));
    else parts.push(thought ? { text, thoughtSignature: signature } : { text });
    return {
      status: 200,
      json: {
        candidates: [{ content: { parts, role: 'model' }, finishReason, index: 0 }],
        usageMetadata: usageFor(answerTokens),
        modelVersion,
        responseId,
      },
    };
  }

  const events = [];
  const chunkOf = (parts, candidates, last) => ({
    candidates: [{ content: { parts, role: 'model' }, ...(last ? { finishReason } : {}), index: 0 }],
    usageMetadata: usageFor(candidates),
    modelVersion,
    responseId,
  });
  if (thought) {
    for (const piece of splitText(thought, rule.chunks)) events.push(chunkOf([{ text: piece, thought: true }], 0, false));
  }
  if (toolCalls.length) {
    events.push(chunkOf(functionParts.map((p, i) => (i === 0 ? { ...p, thoughtSignature: signature } : p)), answerTokens, true));
  } else {
    const pieces = splitText(text, rule.chunks);
    let sent = '';
    pieces.forEach((piece, i) => {
      sent += piece;
      const part = i === 0 && thought ? { text: piece, thoughtSignature: signature } : { text: piece };
      const last = i === pieces.length - 1;
      events.push(chunkOf([part], last ? answerTokens : estimateTokens(sent), last));
    });
  }
  const sse = entry.query.get('alt') === 'sse';
  return {
    status: 200,
    events,
    geminiArray: !sse,
    contentType: sse ? 'text/event-stream' : 'application/json; charset=UTF-8',
  };
}

function geminiModels(entry, rule) {
  const ids = rule.models ?? ['gemini-2.5-flash', 'gemini-2.5-pro'];
  return {
    status: 200,
    json: {
      models: ids.map((id) => ({
        name: `models/${id}`,
        version: '001',
        displayName: id,
        inputTokenLimit: 1048576,
        outputTokenLimit: 65536,
        supportedGenerationMethods: ['generateContent', 'countTokens'],
      })),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// OAuth2 token endpoint (service-account JWT bearer grant)

function decodeJwt(assertion) {
  try {
    const [h, p] = assertion.split('.');
    const dec = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    return { header: dec(h), claims: dec(p) };
  } catch {
    return null;
  }
}

function oauthToken(entry, rule, state) {
  const form = entry.body ?? {};
  if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    return { status: 400, json: { error: 'unsupported_grant_type', error_description: 'Invalid grant_type.' } };
  }
  if (!form.assertion) return { status: 400, json: { error: 'invalid_request', error_description: 'Missing required parameter: assertion' } };
  entry.jwt = decodeJwt(form.assertion);
  if (!entry.jwt) return { status: 400, json: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' } };
  const token = rule.accessToken ?? `ya29.emulator-${randomId(40)}`;
  state.tokens.push({ token, assertion: form.assertion, jwt: entry.jwt });
  return { status: 200, json: { access_token: token, expires_in: rule.expiresIn ?? 3599, token_type: 'Bearer' } };
}

// ---------------------------------------------------------------------------------------------
// Request classification

function classify(entry) {
  const p = entry.pathname;
  const method = entry.method;
  let m;
  if (method === 'POST' && p.endsWith('/chat/completions')) return 'openai';
  if (method === 'POST' && p.endsWith('/messages/count_tokens')) {
    entry.countTokens = true;
    return 'anthropic';
  }
  if (method === 'POST' && p.endsWith('/messages')) return 'anthropic';
  if ((m = p.match(/\/publishers\/anthropic\/models\/([^/:]+):(rawPredict|streamRawPredict)$/))) {
    entry.vertex = true;
    entry.model = decodeURIComponent(m[1]);
    entry.stream = m[2] === 'streamRawPredict';
    return 'anthropic';
  }
  if ((m = p.match(/\/models\/([^/:]+):(generateContent|streamGenerateContent)$/))) {
    entry.model = decodeURIComponent(m[1]);
    entry.stream = m[2] === 'streamGenerateContent';
    if (p.includes('/projects/')) entry.vertex = true;
    return 'gemini';
  }
  if (method === 'GET' && p.startsWith('/v1beta/models')) return 'gemini-models';
  if (method === 'GET' && /\/models(\/.+)?$/.test(p)) return 'openai-models';
  if (method === 'POST' && (p === '/token' || p.endsWith('/oauth2/v4/token'))) return 'token';
  return 'unknown';
}

function matches(rule, entry) {
  const m = rule.match ?? {};
  const test = (want, got) => (want instanceof RegExp ? want.test(got ?? '') : want === got);
  if (m.path !== undefined && !(m.path instanceof RegExp ? m.path.test(entry.path) : entry.path.includes(m.path))) return false;
  if (m.model !== undefined && !test(m.model, entry.model)) return false;
  if (m.method !== undefined && entry.method !== String(m.method).toUpperCase()) return false;
  if (m.protocol !== undefined && entry.protocol !== m.protocol) return false;
  if (m.stream !== undefined && Boolean(entry.stream) !== Boolean(m.stream)) return false;
  if (m.headers) {
    for (const [k, v] of Object.entries(m.headers)) {
      const got = entry.headers[k.toLowerCase()];
      if (got === undefined || !(v instanceof RegExp ? v.test(got) : got.includes(v))) return false;
    }
  }
  return true;
}

function parseBody(raw, contentType) {
  if (raw.length === 0) return undefined;
  const text = raw.toString('utf8');
  // curl and some clients label JSON as a form: JSON-looking bodies are read as JSON.
  if ((contentType ?? '').includes('application/x-www-form-urlencoded') && !/^\s*[[{]/.test(text)) {
    return Object.fromEntries(new URLSearchParams(text));
  }
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function snapshot(entry) {
  const { query, ...rest } = entry;
  return rest;
}

// ---------------------------------------------------------------------------------------------
// The server

/**
 * Starts the emulator on loopback.
 * @param {{port?: number, host?: string, record?: boolean}} [options]
 * @returns {Promise<{url: string, port: number, requests: object[], tokens: object[],
 *   script: (...rules: object[]) => object|object[], reset: () => void, close: () => Promise<void>,
 *   waitFor: (predicate: () => any, timeoutMs?: number) => Promise<any>,
 *   waitForRequest: (predicate?: (r: object) => boolean, timeoutMs?: number) => Promise<object>}>}
 */
export async function startEmulator({ port = 0, host = '127.0.0.1', record = true } = {}) {
  const requests = [];
  const tokens = [];
  let rules = [];
  let seq = 0;
  const sockets = new Set();

  /**
   * Queues a behaviour. The first queued rule whose `match` fits a request is used and consumed
   * (`times`, default 1; Infinity, -1 or `persistent: true` for a rule that never runs out).
   * Rule fields:
   *   match: { path (substring or RegExp of path+query), model, method, protocol
   *            ('openai'|'anthropic'|'gemini'|'token'|…), stream (bool), headers: {name: substring} }
   *   delayMs        wait before answering
   *   hang: true     never answer (socket kept open until the client gives up or close())
   *   reset: true    destroy the socket without answering
   *   status, body, headers   answer with that status; body object → JSON, string → as is; a status
   *                  ≥ 400 without a body gets the protocol's own error body (`message`, `errorType`)
   *   bodyEncoding   how `body` is sent: 'chunked' (no Content-Length) or 'gzip' (compressed)
   *   malformed: true   200 with invalid JSON (or an invalid SSE data line when streaming; with
   *                  continueAfterError: true the whole answer follows that line)
   *   respond        an object (JSON, with `status`) or an array of stream events
   *   stream         array of stream events: objects are framed per protocol, strings written as is
   *                  ('[DONE]' → 'data: [DONE]\n\n'), { raw } written as is
   *   cutAfter: N    send N events then destroy the socket (with `stream`, or the default stream)
   *   stallAfter: N  send N events then nothing more, the connection kept open (until the client
   *                  goes away or close()); `entry.stalled` says it happened
   *   errorAfter: N  send N events then the protocol's mid-stream error event and end
   *                  (with continueAfterError: true, the rest of the answer follows the error)
   *   eventDelayMs   pause between stream events
   *   lineEnding     SSE line ending of OpenAI and Gemini streams: '\n', '\r\n' or '\r'
   *                  (defaults: '\n' for OpenAI; '\r\n' for Gemini, as Google sends)
   *   text, chunks (split into N pieces), toolCalls: [{name, arguments, id?}] (Gemini: `id` sent only
   *                  when given), thinking (text),
   *   finishReason, cachedTokens, cacheWriteTokens, reasoningTokens, usage (fields merged),
   *   responseModel, signature, accessToken, expiresIn, models (ids for model lists)
   */
  function script(...input) {
    const added = input.flat().map((rule) => {
      const times = rule.persistent || rule.times === -1 || rule.times === null ? Infinity : (rule.times ?? 1);
      const stored = { ...rule, times, hits: 0 };
      rules.push(stored);
      return stored;
    });
    return added.length === 1 ? added[0] : added;
  }

  function reset() {
    requests.length = 0;
    tokens.length = 0;
    rules = [];
  }

  function takeRule(entry) {
    const index = rules.findIndex((r) => r.times > 0 && matches(r, entry));
    if (index < 0) return {};
    const rule = rules[index];
    rule.hits++;
    rule.times--;
    if (rule.times <= 0) rules.splice(index, 1);
    return rule;
  }

  async function waitFor(predicate, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`emulator.waitFor: condition not met within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  const waitForRequest = (predicate = () => true, timeoutMs = 5000) =>
    waitFor(() => requests.find(predicate), timeoutMs);

  async function control(req, res, entry) {
    const send = (status, obj) => {
      const data = JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
      res.end(data);
    };
    if (entry.pathname === '/__emulator/requests' && req.method === 'GET') return send(200, requests.map(snapshot));
    if (entry.pathname === '/__emulator/reset' && req.method === 'POST') {
      reset();
      return send(200, { ok: true });
    }
    if (entry.pathname === '/__emulator/script' && req.method === 'POST') {
      if (!entry.body || typeof entry.body !== 'object') return send(400, { error: 'expected a JSON rule or array of rules' });
      const added = script(...[entry.body].flat());
      return send(200, { ok: true, rules: [added].flat().length });
    }
    return send(404, { error: 'unknown emulator control route' });
  }

  async function writeStream(res, entry, protocol, events, opts) {
    const { status = 200, headers = {}, contentType = 'text/event-stream; charset=utf-8', eventDelayMs = 0, cutAfter, errorAfter, geminiArray } = opts;
    res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-cache', ...headers });
    res.flushHeaders();
    entry.status = status;
    let list = events;
    if (errorAfter !== undefined) {
      // With `continueAfterError`, the rest of the answer follows the error event (only a
      // gateway that heeds the event itself can tell the stream failed).
      const rest = opts.rule?.continueAfterError ? events.slice(errorAfter) : [];
      list = [...events.slice(0, errorAfter), midStreamError(protocol, opts.rule), ...rest];
    }
    let flushed = Promise.resolve();
    for (let i = 0; i < list.length; i++) {
      if (cutAfter !== undefined && i >= cutAfter) break;
      if (opts.rule?.stallAfter !== undefined && i >= opts.rule.stallAfter) {
        entry.stalled = true;
        return; // the response stays open; close() or the client's going away ends it
      }
      if (i > 0 && eventDelayMs > 0) await sleep(eventDelayMs);
      if (entry.clientClosed || res.destroyed) return;
      let frame = frameEvent(protocol, list[i], { geminiArray, lineEnding: opts.rule?.lineEnding });
      if (geminiArray) frame = (i === 0 ? '[' : ',\r\n') + frame;
      flushed = new Promise((resolve) => res.write(frame, () => resolve()));
      entry.eventsSent++;
      entry.eventTimes.push(Date.now());
    }
    if (cutAfter !== undefined) {
      // Node corks the writes of one tick: destroying the socket at once would drop the events
      // just written (all of them without eventDelayMs). Cut only once they have left.
      await Promise.race([flushed, sleep(1000)]);
      entry.cut = true;
      entry.serverClosed = true;
      res.socket?.destroy();
      return;
    }
    if (geminiArray) res.write(list.length ? ']' : '[]');
    res.end();
  }

  // `encoding`: undefined (Content-Length), 'chunked' (no length announced, sent in 64 KiB
  // pieces) or 'gzip' (compressed, Content-Length of the compressed bytes).
  function sendJson(res, entry, status, json, headers = {}, encoding = undefined) {
    let data = Buffer.from(typeof json === 'string' ? json : JSON.stringify(json));
    const isJson = typeof json !== 'string';
    if (encoding === 'gzip') data = gzipSync(data);
    res.writeHead(status, {
      ...(isJson || !headers['content-type'] ? { 'content-type': 'application/json' } : {}),
      ...(encoding === 'chunked' ? {} : { 'content-length': data.length }),
      ...(encoding === 'gzip' ? { 'content-encoding': 'gzip' } : {}),
      ...headers,
    });
    entry.status = status;
    if (encoding !== 'chunked') return res.end(data);
    for (let at = 0; at < data.length; at += 65536) res.write(data.subarray(at, at + 65536));
    res.end();
  }

  async function handle(req, res, raw) {
    const url = new URL(req.url, 'http://emulator.invalid');
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    const body = parseBody(raw, headers['content-type']);
    const entry = {
      seq: ++seq,
      method: req.method,
      path: url.pathname + url.search,
      pathname: url.pathname,
      query: url.searchParams,
      headers,
      body,
      rawBody: raw.toString('utf8'),
      bodyBytes: raw.length,
      protocol: null,
      model: body && typeof body === 'object' ? body.model : undefined,
      stream: body && typeof body === 'object' ? body.stream === true : false,
      receivedAt: Date.now(),
      status: null,
      eventsSent: 0,
      eventTimes: [],
      finished: false,
      finishedAt: null,
      clientClosed: false,
      closedAt: null,
      serverClosed: false,
      stalled: false,
    };
    if (url.pathname.startsWith('/__emulator/')) return control(req, res, entry);

    entry.protocol = classify(entry);
    if (record) requests.push(entry);
    res.on('finish', () => {
      entry.finished = true;
      entry.finishedAt = Date.now();
    });
    res.on('close', () => {
      if (!entry.finished && !entry.serverClosed) {
        entry.clientClosed = true;
        entry.closedAt = Date.now();
      }
    });

    const rule = takeRule(entry);
    entry.rule = rule.name ?? (rule.hits ? 'scripted' : null);
    if (rule.delayMs) await sleep(rule.delayMs);
    if (entry.clientClosed) return;
    if (rule.reset) {
      entry.serverClosed = true;
      req.socket.destroy();
      return;
    }
    if (rule.hang) {
      entry.hung = true;
      return;
    }
    const protocol = entry.protocol === 'openai-models' ? 'openai' : entry.protocol === 'gemini-models' ? 'gemini' : entry.protocol;
    const extraHeaders = { ...(rule.headers ?? {}) };

    if (rule.malformed) {
      if (entry.stream) {
        const garbage = { raw: protocol === 'anthropic' ? 'event: content_block_delta\ndata: {"type":"content_block_delta",\n\n' : 'data: {"choices":[{"delta":\n\n' };
        if (rule.continueAfterError) {
          // The whole answer follows the garbage: only a gateway that judges the event fails it.
          const answer = { openai: openaiChat, anthropic: anthropicMessages, gemini: geminiGenerate }[entry.protocol](entry, rule);
          return writeStream(res, entry, protocol, [garbage, ...answer.events], { headers: extraHeaders, contentType: answer.contentType, rule });
        }
        const events = [garbage];
        if (protocol === 'openai') events.push('[DONE]');
        return writeStream(res, entry, protocol, events, { headers: extraHeaders, rule });
      }
      return sendJson(res, entry, rule.status ?? 200, '{"id":"broken","choices":[{"message":', { 'content-type': 'application/json', ...extraHeaders });
    }

    const streamed = Array.isArray(rule.respond) ? rule.respond : rule.stream;
    if (Array.isArray(streamed)) {
      const geminiArray = protocol === 'gemini' && entry.query.get('alt') !== 'sse';
      return writeStream(res, entry, protocol, streamed, {
        status: rule.status ?? 200,
        headers: extraHeaders,
        contentType: geminiArray ? 'application/json; charset=UTF-8' : undefined,
        eventDelayMs: rule.eventDelayMs,
        cutAfter: rule.cutAfter,
        errorAfter: rule.errorAfter,
        geminiArray,
        rule,
      });
    }
    if (rule.respond !== undefined) return sendJson(res, entry, rule.status ?? 200, rule.respond, extraHeaders);
    if (rule.body !== undefined) return sendJson(res, entry, rule.status ?? 200, rule.body, extraHeaders, rule.bodyEncoding);
    if (rule.status !== undefined && rule.status >= 400) {
      return sendJson(res, entry, rule.status, errorFor(protocol ?? 'openai', rule.status, rule.message, rule.errorType), extraHeaders);
    }

    let result;
    switch (entry.protocol) {
      case 'openai':
        result = openaiChat(entry, rule);
        break;
      case 'anthropic':
        result = anthropicMessages(entry, rule);
        break;
      case 'gemini':
        result = geminiGenerate(entry, rule);
        break;
      case 'openai-models':
        result = openaiModels(entry, rule);
        break;
      case 'gemini-models':
        result = geminiModels(entry, rule);
        break;
      case 'token':
        result = oauthToken(entry, rule, { tokens });
        break;
      default:
        result = {
          status: 404,
          json: openaiError(404, `Unknown request URL: ${entry.method} ${entry.pathname}. Please check the URL for typos.`, { code: 'unknown_url' }),
        };
    }
    const status = rule.status ?? result.status;
    const responseHeaders = { ...(result.headers ?? {}), ...extraHeaders };
    if (protocol === 'openai') responseHeaders['x-request-id'] ??= `req_${randomId(32)}`;
    if (result.events) {
      return writeStream(res, entry, protocol, result.events, {
        status,
        headers: responseHeaders,
        contentType: result.contentType,
        eventDelayMs: rule.eventDelayMs,
        cutAfter: rule.cutAfter,
        errorAfter: rule.errorAfter,
        geminiArray: result.geminiArray,
        rule,
      });
    }
    return sendJson(res, entry, status, result.json, responseHeaders);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((err) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify(openaiError(500, `emulator failure: ${err.message}`)));
        } else {
          res.destroy(err);
        }
      });
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  server.on('connection', (socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;

  async function close() {
    for (const s of sockets) s.destroy();
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(() => resolve()));
  }

  return { url, port: actualPort, requests, tokens, script, reset, close, waitFor, waitForRequest, id: randomUUID() };
}

// ---------------------------------------------------------------------------------------------
// Standalone: node tests/emulator.mjs --port N [--host H] [--no-record]

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
  };
  const emulator = await startEmulator({
    port: Number(opt('--port', 0)),
    host: opt('--host', '127.0.0.1'),
    record: !args.includes('--no-record'),
  });
  console.log(emulator.url);
  const stop = async () => {
    await emulator.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
