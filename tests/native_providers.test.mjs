// Integration suite for the translated providers: Anthropic Messages, Google Gemini and Vertex AI
// (Claude and Gemini on Vertex), driven through the real `openai` SDK against the built worker in
// workerd (see harness.mjs), with the upstream emulator standing in for the providers. Each test
// checks both sides: what the SDK got back, and what the provider was sent. Needs `npm run build`.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import OpenAI from 'openai';
import { startEmulator, anthropicError, googleError } from './emulator.mjs';
import { startGateway, PROVIDER_KEYS, ADMIN_TOKEN } from './harness.mjs';
import { recordingFetchInto, apiError } from './clients.mjs';

const GEN_ID = /^gen_[0-9A-HJKMNP-TV-Z]{26}$/;
const SERVICE_ACCOUNT_JSON = readFileSync(new URL('./fixtures/vertex/test_service_account.json', import.meta.url), 'utf8');
const SERVICE_ACCOUNT = JSON.parse(SERVICE_ACCOUNT_JSON);

const CLAUDE = { model: 'anthropic/claude-sonnet-4-6', native: 'claude-sonnet-4-6', provider: 'anthropic' };
const GEMINI = { model: 'google/gemini-3.1-pro-preview', native: 'gemini-3.1-pro-preview', provider: 'google' };
const FLASH = { model: 'google/gemini-2.5-flash', native: 'gemini-2.5-flash', provider: 'google' };

const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const PDF_B64 = 'JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK';

const WEATHER_PARAMS = {
  type: 'object',
  properties: { city: { type: 'string', description: 'City name' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
  required: ['city'],
  additionalProperties: false,
};
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather for a city', parameters: WEATHER_PARAMS } },
  { type: 'function', function: { name: 'get_time', description: 'Local time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];

let emu;
let gw;
let key;
const responses = []; // every response seen from a gateway, for the secrets check at the end
const secrets = []; // [label, value] that must never reach a client

const recordingFetch = recordingFetchInto(responses);

function client(gateway = gw, apiKey = key) {
  return new OpenAI({ apiKey, baseURL: `${gateway.url}/v1`, maxRetries: 0, timeout: 20_000, fetch: recordingFetch });
}

const user = (content) => [{ role: 'user', content }];

/** The upstream (non-token) requests the emulator saw. */
const upstream = () => emu.requests.filter((r) => r.protocol !== 'token');

/** The one upstream request of a test. */
function onlyUpstream() {
  const seen = upstream();
  assert.equal(seen.length, 1, `exactly one upstream request (got ${seen.map((r) => r.path).join(', ')})`);
  return seen[0];
}

/** Creates a completion (streamed or not) and returns {data|chunks, response}. */
async function chat(params, { gateway = gw, stream = false } = {}) {
  const { data, response } = await client(gateway)
    .chat.completions.create({ ...params, ...(stream ? { stream: true } : {}) })
    .withResponse();
  if (!stream) return { data, response };
  const chunks = [];
  for await (const chunk of data) chunks.push(chunk);
  return { chunks, response };
}

/**
 * Folds stream chunks into what a client assembles, checking the invariants every chunk keeps.
 * The gateway's routing metadata (`providerMetadata.gateway.routing`) is in the last chunk: the
 * usage chunk when there is one, else a chunk of its own with one empty choice, which is set
 * apart as `trailer`; `body` is every other chunk.
 */
function assemble(chunks, { response, model, provider } = {}) {
  const out = { text: '', reasoning: '', finish: [], tools: [], usageChunks: [], role: null, trailer: null, body: chunks };
  const genId = response?.headers.get('x-generation-id');
  const last = chunks.at(-1);
  if (last?.providerMetadata) {
    out.trailer = last;
    if (!last.usage) {
      out.body = chunks.slice(0, -1);
      assert.deepEqual(
        last.choices.map((c) => [c.index, c.delta, c.finish_reason]),
        [[0, {}, null]],
        'the routing chunk has one empty choice (choices[0] works in every chunk)',
      );
    }
    if (genId) assert.equal(last.id, genId, 'trailer: id is the x-generation-id');
    if (provider) assert.equal(last.providerMetadata.gateway.routing.finalProvider, provider, 'trailer: final provider');
  }
  assert.ok(!chunks.slice(0, -1).some((c) => c.providerMetadata), 'routing metadata only in the last chunk');
  for (const [i, c] of out.body.entries()) {
    assert.equal(c.object, 'chat.completion.chunk', `chunk ${i}: object`);
    if (genId) assert.equal(c.id, genId, `chunk ${i}: id is the x-generation-id`);
    if (model) assert.equal(c.model, model, `chunk ${i}: model is the gateway model id`);
    if (c.usage) out.usageChunks.push({ i, usage: c.usage });
    for (const choice of c.choices) {
      assert.equal(choice.index, 0, `chunk ${i}: one choice`);
      const d = choice.delta ?? {};
      if (d.role) out.role = d.role;
      out.text += d.content ?? '';
      out.reasoning += d.reasoning ?? '';
      for (const tc of d.tool_calls ?? []) {
        const slot = (out.tools[tc.index] ??= { index: tc.index, id: null, name: '', args: '', type: null, starts: 0, fragments: 0 });
        if (tc.id) {
          slot.id = tc.id;
          slot.starts++;
        }
        if (tc.type) slot.type = tc.type;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) {
          slot.args += tc.function.arguments;
          slot.fragments++;
        }
      }
      if (choice.finish_reason) out.finish.push(choice.finish_reason);
    }
  }
  return out;
}


/** Consumes a stream expected to fail midway: returns the chunks before the error and the error. */
async function streamError(params) {
  const stream = await client().chat.completions.create({ ...params, stream: true });
  const chunks = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
  } catch (err) {
    return { chunks, err };
  }
  assert.fail(`the stream ended cleanly; chunks: ${JSON.stringify(chunks.map((c) => c.choices[0]))}`);
}

before(async () => {
  emu = await startEmulator();
  gw = await startGateway({
    emulatorUrl: emu.url,
    bindings: {
      // One provider per model here (no fallback to Vertex, which has its own gateway below), so
      // each test sees one provider's translation; retries keep their defaults.
      VERTEX_API_KEY: '',
      // Breakers are isolate state: the error tests below must not open one for later tests.
      BREAKER_THRESHOLD: '1000',
    },
  });
  key = await gw.createKey('native-providers');
  secrets.push(['admin token', ADMIN_TOKEN], ['gateway key', key]);
  for (const [p, k] of Object.entries(PROVIDER_KEYS)) secrets.push([`${p} provider key`, k]);
  secrets.push(['service account private key', SERVICE_ACCOUNT.private_key.split('\n')[1]]);
});

after(async () => {
  await gw?.dispose();
  await emu?.close();
});

beforeEach(() => emu?.reset());

const MODES = [false, true];
const mode = (stream) => (stream ? 'stream' : 'json');

// ---------------------------------------------------------------------------------------------

describe('text', () => {
  const params = (m) => ({
    model: m.model,
    messages: user('Say hi'),
    temperature: 0.5,
    max_completion_tokens: 200,
    stop: ['END'],
  });

  for (const stream of MODES) {
    test(`anthropic: text, ${mode(stream)}`, async () => {
      const res = await chat(params(CLAUDE), { stream });
      const genId = res.response.headers.get('x-generation-id');
      assert.match(genId ?? '', GEN_ID);
      assert.equal(res.response.headers.get('x-switchyard-provider'), 'anthropic');
      if (stream) {
        assert.match(res.response.headers.get('content-type') ?? '', /^text\/event-stream/);
        const a = assemble(res.chunks, { response: res.response, model: CLAUDE.model, provider: 'anthropic' });
        assert.equal(a.role, 'assistant');
        assert.equal(a.text, 'Hello from emulator: Say hi');
        assert.equal(a.reasoning, '');
        assert.deepEqual(a.finish, ['stop']);
        assert.ok(a.trailer, 'the routing trailer ends the stream');
        assert.equal(a.body.findLastIndex((c) => c.choices[0]?.finish_reason), a.body.length - 1, 'the finish chunk is the last before the trailer');
        assert.deepEqual(a.usageChunks, [], 'no usage without stream_options.include_usage');
        assert.ok(res.chunks.every((c) => c.usage == null), 'no usage field without include_usage');
        assert.ok(a.body.length >= 4, `text arrives in several chunks (${a.body.length})`);
      } else {
        const { data } = res;
        assert.match(res.response.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(data.object, 'chat.completion');
        assert.equal(data.id, genId, 'id is the x-generation-id');
        assert.equal(data.model, CLAUDE.model, 'model is the gateway model id');
        assert.ok(Math.abs(data.created - Date.now() / 1000) < 300, `created is now (${data.created})`);
        assert.equal(data.choices.length, 1);
        assert.equal(data.choices[0].index, 0);
        assert.equal(data.choices[0].message.role, 'assistant');
        assert.equal(data.choices[0].message.content, 'Hello from emulator: Say hi');
        assert.equal(data.choices[0].message.tool_calls, undefined);
        assert.equal(data.choices[0].finish_reason, 'stop');
        assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
        assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
      }
      const seen = onlyUpstream();
      assert.equal(seen.method, 'POST');
      assert.equal(seen.path, '/v1/messages');
      assert.equal(seen.headers['x-api-key'], PROVIDER_KEYS.anthropic);
      assert.equal(seen.headers['anthropic-version'], '2023-06-01');
      assert.match(seen.headers['content-type'] ?? '', /^application\/json/);
      assert.equal(seen.headers.authorization, undefined, 'no bearer token to Anthropic');
      assert.equal(seen.headers['x-request-id'], res.response.headers.get('x-request-id'), 'the request id is forwarded');
      assert.ok(!JSON.stringify(seen.headers).includes(key), 'the gateway key is not forwarded');
      assert.deepEqual(seen.body, {
        model: 'claude-sonnet-4-6',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hi' }] }],
        max_tokens: 200,
        temperature: 0.5,
        stop_sequences: ['END'],
        ...(stream ? { stream: true } : {}),
      });
    });

    test(`gemini: text, ${mode(stream)}`, async () => {
      const res = await chat(params(GEMINI), { stream });
      const genId = res.response.headers.get('x-generation-id');
      assert.match(genId ?? '', GEN_ID);
      assert.equal(res.response.headers.get('x-switchyard-provider'), 'google');
      if (stream) {
        assert.match(res.response.headers.get('content-type') ?? '', /^text\/event-stream/);
        const a = assemble(res.chunks, { response: res.response, model: GEMINI.model, provider: 'google' });
        assert.equal(a.role, 'assistant');
        assert.equal(a.text, 'Hello from emulator: Say hi');
        assert.deepEqual(a.finish, ['stop']);
        assert.ok(a.trailer, 'the routing trailer ends the stream');
        assert.equal(a.body.findLastIndex((c) => c.choices[0]?.finish_reason), a.body.length - 1, 'the finish chunk is the last before the trailer');
        assert.deepEqual(a.usageChunks, [], 'no usage without stream_options.include_usage');
      } else {
        const { data } = res;
        assert.equal(data.object, 'chat.completion');
        assert.equal(data.id, genId, 'id is the x-generation-id');
        assert.equal(data.model, GEMINI.model, 'model is the gateway model id');
        assert.ok(Math.abs(data.created - Date.now() / 1000) < 300, `created is now (${data.created})`);
        assert.equal(data.choices.length, 1);
        assert.equal(data.choices[0].message.role, 'assistant');
        assert.equal(data.choices[0].message.content, 'Hello from emulator: Say hi');
        assert.equal(data.choices[0].finish_reason, 'stop');
        assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
      }
      const seen = onlyUpstream();
      assert.equal(seen.method, 'POST');
      assert.equal(
        seen.path,
        stream ? '/v1beta/models/gemini-3.1-pro-preview:streamGenerateContent?alt=sse' : '/v1beta/models/gemini-3.1-pro-preview:generateContent',
      );
      assert.equal(seen.headers['x-goog-api-key'], PROVIDER_KEYS.google);
      assert.equal(seen.headers.authorization, undefined, 'no bearer token to the Gemini API');
      assert.equal(seen.headers['x-request-id'], res.response.headers.get('x-request-id'), 'the request id is forwarded');
      assert.ok(!seen.path.includes('key='), 'the API key is not in the URL');
      assert.deepEqual(seen.body, {
        contents: [{ role: 'user', parts: [{ text: 'Say hi' }] }],
        generationConfig: { temperature: 0.5, maxOutputTokens: 200, stopSequences: ['END'] },
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('system messages and multi-turn mapping', () => {
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello! How can I help?' },
    { role: 'developer', content: 'Answer in words.' },
    { role: 'user', content: 'What is 2+2?' },
    { role: 'user', content: [{ type: 'text', text: 'Think first.' }] },
  ];

  for (const stream of MODES) {
    test(`anthropic: system blocks, alternating roles, ${mode(stream)}`, async () => {
      const res = await chat({ model: CLAUDE.model, messages }, { stream });
      const text = stream ? assemble(res.chunks).text : res.data.choices[0].message.content;
      assert.equal(text, 'Hello from emulator: What is 2+2? Think first.');
      const { body } = onlyUpstream();
      assert.deepEqual(body.system, [
        { type: 'text', text: 'Be brief.' },
        { type: 'text', text: 'Answer in words.' },
      ]);
      assert.deepEqual(body.messages, [
        { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'Hello! How can I help?' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is 2+2?' },
            { type: 'text', text: 'Think first.' },
          ],
        },
      ]);
      body.messages.forEach((m, i) => assert.equal(m.role, i % 2 ? 'assistant' : 'user', `messages[${i}] alternates`));
      assert.ok(!body.messages.some((m) => m.role === 'system' || m.role === 'developer'), 'no system role inside messages');
    });

    test(`gemini: systemInstruction, user/model roles, ${mode(stream)}`, async () => {
      const res = await chat({ model: GEMINI.model, messages }, { stream });
      const text = stream ? assemble(res.chunks).text : res.data.choices[0].message.content;
      assert.equal(text, 'Hello from emulator: What is 2+2? Think first.');
      const { body } = onlyUpstream();
      assert.deepEqual(body.systemInstruction, { parts: [{ text: 'Be brief.' }, { text: 'Answer in words.' }] });
      assert.deepEqual(body.contents, [
        { role: 'user', parts: [{ text: 'Hi' }] },
        { role: 'model', parts: [{ text: 'Hello! How can I help?' }] },
        { role: 'user', parts: [{ text: 'What is 2+2?' }, { text: 'Think first.' }] },
      ]);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('images and files', () => {
  const content = [
    { type: 'text', text: 'Describe these.' },
    { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_B64}`, detail: 'high' } },
    { type: 'image_url', image_url: { url: 'https://example.com/photos/cat.jpg' } },
    { type: 'image_url', image_url: { url: 'https://example.com/diagram.png?size=large' } },
    { type: 'file', file: { filename: 'report.pdf', file_data: `data:application/pdf;base64,${PDF_B64}` } },
  ];

  for (const stream of MODES) {
    test(`anthropic: base64 and url image sources, PDF document block, ${mode(stream)}`, async () => {
      const res = await chat({ model: CLAUDE.model, messages: user(content) }, { stream });
      assert.equal(stream ? assemble(res.chunks).text : res.data.choices[0].message.content, 'Hello from emulator: Describe these.');
      assert.deepEqual(onlyUpstream().body.messages, [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe these.' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_B64 } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/photos/cat.jpg' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/diagram.png?size=large' } },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: PDF_B64 }, title: 'report.pdf' },
          ],
        },
      ]);
    });

    test(`gemini: inlineData and fileData parts, PDF inline, ${mode(stream)}`, async () => {
      const res = await chat({ model: GEMINI.model, messages: user(content) }, { stream });
      assert.equal(stream ? assemble(res.chunks).text : res.data.choices[0].message.content, 'Hello from emulator: Describe these.');
      assert.deepEqual(onlyUpstream().body.contents, [
        {
          role: 'user',
          parts: [
            { text: 'Describe these.' },
            { inlineData: { mimeType: 'image/png', data: PNG_B64 } },
            { fileData: { mimeType: 'image/jpeg', fileUri: 'https://example.com/photos/cat.jpg' } },
            { fileData: { mimeType: 'image/png', fileUri: 'https://example.com/diagram.png?size=large' } },
            { inlineData: { mimeType: 'application/pdf', data: PDF_B64 } },
          ],
        },
      ]);
    });
  }

  test('a non-PDF file for Anthropic is refused with 400 naming the part; nothing sent', async () => {
    const err = await apiError(
      client().chat.completions.create({
        model: CLAUDE.model,
        messages: user([{ type: 'text', text: 'x' }, { type: 'file', file: { file_data: 'data:text/csv;base64,YSxiCg==' } }]),
      }),
      400,
    );
    assert.equal(err.param, 'messages[0].content[1]');
    assert.equal(upstream().length, 0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('tools', () => {
  const CHOICES = [
    ['auto', { type: 'auto' }, { mode: 'AUTO' }],
    ['none', { type: 'none' }, { mode: 'NONE' }],
    ['required', { type: 'any' }, { mode: 'ANY' }],
    [{ type: 'function', function: { name: 'get_weather' } }, { type: 'tool', name: 'get_weather' }, { mode: 'ANY', allowedFunctionNames: ['get_weather'] }],
  ];

  test('anthropic: tools and every tool_choice mapped', async () => {
    for (const stream of MODES) {
      for (const [choice, anthropicChoice] of CHOICES) {
        emu.reset();
        await chat({ model: CLAUDE.model, messages: user('Weather in Paris?'), tools: TOOLS, tool_choice: choice }, { stream });
        const { body } = onlyUpstream();
        const label = `${JSON.stringify(choice)} ${mode(stream)}`;
        assert.deepEqual(body.tool_choice, anthropicChoice, `tool_choice ${label}`);
        assert.deepEqual(
          body.tools.map(({ name, description, input_schema }) => ({ name, description, input_schema })),
          [
            { name: 'get_weather', description: 'Current weather for a city', input_schema: WEATHER_PARAMS },
            { name: 'get_time', description: 'Local time', input_schema: TOOLS[1].function.parameters },
          ],
          `tools ${label}`,
        );
      }
    }
  });

  test('gemini: functionDeclarations and every tool_choice mapped to functionCallingConfig', async () => {
    for (const stream of MODES) {
      for (const [choice, , geminiConfig] of CHOICES) {
        emu.reset();
        await chat({ model: GEMINI.model, messages: user('Weather in Paris?'), tools: TOOLS, tool_choice: choice }, { stream });
        const { body } = onlyUpstream();
        const label = `${JSON.stringify(choice)} ${mode(stream)}`;
        assert.deepEqual(body.toolConfig, { functionCallingConfig: geminiConfig }, `toolConfig ${label}`);
        assert.deepEqual(
          body.tools,
          [
            {
              functionDeclarations: [
                { name: 'get_weather', description: 'Current weather for a city', parametersJsonSchema: WEATHER_PARAMS },
                { name: 'get_time', description: 'Local time', parametersJsonSchema: TOOLS[1].function.parameters },
              ],
            },
          ],
          `tools ${label}`,
        );
      }
    }
  });

  // Keys deliberately not in alphabetical order: the client must see the model's own order.
  const ARGS = { unit: 'celsius', city: 'Paris' };

  /** First turn: the model calls get_weather. Returns the tool call the client saw. */
  // The reasoning_details of the last first turn (what a client keeps to give back).
  let firstTurnDetails = [];

  async function firstTurn(m, stream, toolCall) {
    emu.script({ match: { model: m.native }, toolCalls: [toolCall] });
    const res = await chat({ model: m.model, messages: user('Weather in Paris?'), tools: TOOLS }, { stream });
    firstTurnDetails = stream
      ? res.chunks.flatMap((c) => c.choices[0]?.delta?.reasoning_details ?? [])
      : (res.data.choices[0].message.reasoning_details ?? []);
    if (stream) {
      const a = assemble(res.chunks, { response: res.response, model: m.model });
      assert.deepEqual(a.finish, ['tool_calls']);
      assert.equal(a.text, '');
      assert.equal(a.tools.length, 1);
      const [t] = a.tools;
      assert.equal(t.starts, 1, 'the id is sent once');
      assert.equal(t.type, 'function');
      return { id: t.id, type: 'function', function: { name: t.name, arguments: t.args } };
    }
    const choice = res.data.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    return choice.message.tool_calls[0];
  }

  function secondTurnMessages(call) {
    return [
      ...user('Weather in Paris?'),
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '{"temp_c":21,"sky":"clear"}' },
    ];
  }

  for (const stream of MODES) {
    test(`anthropic: tool call answered, tool_result sent back, ${mode(stream)}`, async () => {
      const call = await firstTurn(CLAUDE, stream, { id: 'toolu_01WeatherParis000000001', name: 'get_weather', arguments: ARGS });
      assert.equal(call.id, 'toolu_01WeatherParis000000001');
      assert.equal(call.type, 'function');
      assert.equal(call.function.name, 'get_weather');
      assert.equal(call.function.arguments, JSON.stringify(ARGS), 'the arguments exactly as the model wrote them');

      emu.reset();
      const res = await chat({ model: CLAUDE.model, messages: secondTurnMessages(call), tools: TOOLS }, { stream });
      const text = stream ? assemble(res.chunks).text : res.data.choices[0].message.content;
      assert.equal(text, 'Hello from emulator: {"temp_c":21,"sky":"clear"}', 'the emulator echoes the tool result, the last user content');
      assert.deepEqual(onlyUpstream().body.messages, [
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01WeatherParis000000001', name: 'get_weather', input: ARGS }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01WeatherParis000000001', content: '{"temp_c":21,"sky":"clear"}' }] },
      ]);
    });

    test(`gemini: functionCall answered, functionResponse sent back by NAME, ${mode(stream)}`, async () => {
      const call = await firstTurn(GEMINI, stream, { name: 'get_weather', arguments: ARGS });
      assert.equal(typeof call.id, 'string');
      assert.ok(call.id.length > 0, 'a generated id when Gemini gives none');
      assert.equal(call.function.name, 'get_weather');
      assert.equal(call.function.arguments, JSON.stringify(ARGS), 'the arguments exactly as the model wrote them');

      emu.reset();
      const res = await chat({ model: GEMINI.model, messages: secondTurnMessages(call), tools: TOOLS }, { stream });
      const text = stream ? assemble(res.chunks).text : res.data.choices[0].message.content;
      assert.equal(text, 'Hello from emulator: Weather in Paris?');
      const { contents } = onlyUpstream().body;
      assert.equal(contents.length, 3);
      assert.deepEqual(contents[0], { role: 'user', parts: [{ text: 'Weather in Paris?' }] });
      assert.equal(contents[1].role, 'model');
      assert.equal(contents[1].parts.length, 1);
      assert.deepEqual(contents[1].parts[0].functionCall, { name: 'get_weather', args: ARGS });
      assert.equal(contents[1].parts[0].thoughtSignature, 'skip_thought_signature_validator', 'a call replayed without its signature carries the placeholder');
      assert.deepEqual(contents[2], {
        role: 'user',
        parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21, sky: 'clear' } } }],
      });

      // Its own signature went out as a reasoning_details item naming the call; given back, it
      // goes back with the call.
      const signature = Buffer.from('emulator-thought-signature:Weather in Paris?').toString('base64');
      assert.deepEqual(firstTurnDetails, [{ type: 'reasoning.encrypted', data: signature, id: call.id, format: 'google-gemini-v1', index: 0 }]);
      emu.reset();
      const [question, turn, result] = secondTurnMessages(call);
      await chat({ model: GEMINI.model, messages: [question, { ...turn, reasoning_details: firstTurnDetails }, result], tools: TOOLS }, { stream });
      assert.equal(onlyUpstream().body.contents[1].parts[0].thoughtSignature, signature);
    });
  }

  test('gemini: generated call ids differ between turns, so the history replays to Claude with unique tool_use ids', async () => {
    const history = [...user('Weather in Paris, then Rome?')];
    const calls = [];
    for (const city of ['Paris', 'Rome']) {
      emu.script({ match: { model: GEMINI.native }, toolCalls: [{ name: 'get_weather', arguments: { city } }] });
      const { data } = await chat({ model: GEMINI.model, messages: history, tools: TOOLS });
      const [call] = data.choices[0].message.tool_calls;
      calls.push(call);
      history.push({ role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: `{"city":"${city}","temp_c":20}` });
    }
    assert.notEqual(calls[0].id, calls[1].id, `ids are unique across turns: ${calls.map((c) => c.id)}`);
    // The second Gemini turn named each result after its own call.
    const geminiContents = upstream()[1].body.contents;
    assert.deepEqual(geminiContents[2].parts, [{ functionResponse: { name: 'get_weather', response: { city: 'Paris', temp_c: 20 } } }]);

    emu.reset();
    await chat({ model: CLAUDE.model, messages: history, tools: TOOLS });
    const blocks = onlyUpstream().body.messages.flatMap((m) => m.content);
    const uses = blocks.filter((b) => b.type === 'tool_use').map((b) => b.id);
    const results = blocks.filter((b) => b.type === 'tool_result').map((b) => b.tool_use_id);
    assert.deepEqual(uses, calls.map((c) => c.id));
    assert.deepEqual(results, uses);
    assert.equal(new Set(uses).size, uses.length, 'Anthropic requires unique tool_use ids');
  });

  test('gemini: a tool result that is not a JSON object is wrapped, name still looked up', async () => {
    const call = { id: 'call_x1', type: 'function', function: { name: 'get_time', arguments: '{"tz":"UTC"}' } };
    await chat({ model: GEMINI.model, messages: [...user('Time?'), { role: 'assistant', content: 'Checking.', tool_calls: [call] }, { role: 'tool', tool_call_id: 'call_x1', content: '12:00' }], tools: TOOLS });
    const { contents } = onlyUpstream().body;
    assert.deepEqual(contents[1].parts[0], { text: 'Checking.' });
    assert.deepEqual(contents[1].parts[1].functionCall, { name: 'get_time', args: { tz: 'UTC' } });
    assert.deepEqual(contents[2].parts, [{ functionResponse: { name: 'get_time', response: { output: '12:00' } } }]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('parallel tool calls, streamed', () => {
  const CALLS = [
    { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } },
    { name: 'get_time', arguments: { tz: 'Europe/Paris' } },
    { name: 'get_weather', arguments: { city: 'Tokyo', unit: 'fahrenheit', note: 'quotes " and \\ and ünïcødé 🚀' } },
  ];

  /** Streams through the SDK's own assembler and through a hand fold; both must agree. */
  async function streamCalls(m) {
    const stream = client().chat.completions.stream({ model: m.model, messages: user('Weather and time?'), tools: TOOLS });
    const chunks = [];
    stream.on('chunk', (c) => chunks.push(c));
    const final = await stream.finalChatCompletion();
    return { final, chunks, a: assemble(chunks, { model: m.model }) };
  }

  test('anthropic: three tool_use blocks after text arrive as indexes 0..2 with exact ids, names and arguments', async () => {
    const sent = CALLS.map((c, i) => ({ ...c, id: `toolu_01Parallel00000000000${i}` }));
    emu.script({ match: { model: CLAUDE.native }, text: 'Let me check.', toolCalls: sent });
    const { final, a } = await streamCalls(CLAUDE);
    assert.equal(a.text, 'Let me check.');
    assert.deepEqual(a.finish, ['tool_calls']);
    assert.deepEqual(
      a.tools.map((t) => ({ index: t.index, id: t.id, name: t.name, args: JSON.parse(t.args), starts: t.starts, type: t.type })),
      sent.map((c, i) => ({ index: i, id: c.id, name: c.name, args: c.arguments, starts: 1, type: 'function' })),
    );
    assert.ok(a.tools.every((t) => t.fragments > 1), 'arguments arrive in fragments');
    // What the SDK's ChatCompletionStream assembled.
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.equal(final.choices[0].message.content, 'Let me check.');
    assert.deepEqual(
      final.choices[0].message.tool_calls.map((t) => ({ id: t.id, type: t.type, name: t.function.name, args: JSON.parse(t.function.arguments) })),
      sent.map((c) => ({ id: c.id, type: 'function', name: c.name, args: c.arguments })),
    );
    // The arguments strings are exactly what the emulator sent (its JSON.stringify of the input).
    assert.deepEqual(
      final.choices[0].message.tool_calls.map((t) => t.function.arguments),
      sent.map((c) => JSON.stringify(c.arguments)),
    );
  });

  test('gemini: three functionCall parts arrive as indexes 0..2 with distinct ids, names and exact arguments', async () => {
    emu.script({ match: { model: GEMINI.native }, toolCalls: CALLS });
    const { final, a } = await streamCalls(GEMINI);
    assert.deepEqual(a.finish, ['tool_calls']);
    assert.deepEqual(
      a.tools.map((t) => ({ index: t.index, name: t.name, args: JSON.parse(t.args), starts: t.starts, type: t.type })),
      CALLS.map((c, i) => ({ index: i, name: c.name, args: c.arguments, starts: 1, type: 'function' })),
    );
    const ids = a.tools.map((t) => t.id);
    assert.ok(ids.every((id) => typeof id === 'string' && id.length > 0), `ids: ${ids}`);
    assert.equal(new Set(ids).size, 3, `ids are distinct: ${ids}`);
    assert.deepEqual(
      final.choices[0].message.tool_calls.map((t) => ({ id: t.id, name: t.function.name, args: t.function.arguments })),
      CALLS.map((c, i) => ({ id: ids[i], name: c.name, args: JSON.stringify(c.arguments) })),
    );
  });

  test("gemini: Gemini's own call ids are kept", async () => {
    const sent = CALLS.map((c, i) => ({ ...c, id: `fc-${i}-abc` }));
    emu.script({ match: { model: GEMINI.native }, toolCalls: sent });
    const { final } = await streamCalls(GEMINI);
    assert.deepEqual(
      final.choices[0].message.tool_calls.map((t) => t.id),
      sent.map((c) => c.id),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('reasoning', () => {
  for (const stream of MODES) {
    test(`anthropic: reasoning_effort high → adaptive thinking (Claude 4.6+), thinking surfaced, ${mode(stream)}`, async () => {
      emu.script({ match: { model: CLAUDE.native }, thinking: 'Two plus two is four.', text: 'Four.' });
      const res = await chat({ model: CLAUDE.model, messages: user('What is 2+2?'), reasoning_effort: 'high' }, { stream });
      if (stream) {
        const a = assemble(res.chunks, { response: res.response, model: CLAUDE.model });
        assert.equal(a.reasoning, 'Two plus two is four.');
        assert.equal(a.text, 'Four.');
        assert.deepEqual(a.finish, ['stop']);
        const firstText = res.chunks.findIndex((c) => c.choices[0]?.delta?.content);
        const lastReasoning = res.chunks.findLastIndex((c) => c.choices[0]?.delta?.reasoning);
        assert.ok(lastReasoning < firstText, 'reasoning comes before the answer');
      } else {
        const { message } = res.data.choices[0];
        assert.equal(message.reasoning, 'Two plus two is four.');
        assert.equal(message.content, 'Four.');
      }
      const { body } = onlyUpstream();
      assert.deepEqual(body.thinking, { type: 'adaptive', display: 'summarized' });
      assert.deepEqual(body.output_config, { effort: 'high' });
      assert.ok(body.max_tokens > 16384, `max_tokens ${body.max_tokens} leaves room for thinking`);
      assert.equal(body.temperature, undefined);
    });

    test(`anthropic: reasoning_effort high on Claude 4.5 → thinking budget, ${mode(stream)}`, async () => {
      emu.script({ match: { model: 'claude-sonnet-4-5-20250929' }, thinking: 'Two plus two is four.', text: 'Four.' });
      const res = await chat({ model: 'anthropic/claude-sonnet-4-5', messages: user('What is 2+2?'), reasoning_effort: 'high' }, { stream });
      const text = stream ? assemble(res.chunks, { response: res.response, model: 'anthropic/claude-sonnet-4-5' }).text : res.data.choices[0].message.content;
      assert.equal(text, 'Four.');
      const { body } = onlyUpstream();
      assert.deepEqual(body.thinking, { type: 'enabled', budget_tokens: 16384 });
      assert.ok(body.max_tokens > body.thinking.budget_tokens, `max_tokens ${body.max_tokens} leaves room above the budget`);
      assert.equal(body.output_config, undefined);
    });

    test(`anthropic: signed thinking goes out as reasoning_details and, given back, keeps a tool loop thinking (Claude 4.5), ${mode(stream)}`, async () => {
      const SONNET = { model: 'anthropic/claude-sonnet-4-5', native: 'claude-sonnet-4-5-20250929' };
      const thinking = 'The user wants the weather: call get_weather.';
      const signature = Buffer.from(`emulator-signature:${thinking}`).toString('base64');
      emu.script({ match: { model: SONNET.native }, thinking, toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] });
      const first = await chat({ model: SONNET.model, messages: user('Weather in Paris?'), tools: TOOLS, reasoning_effort: 'high' }, { stream });
      // The assistant turn as a client keeps it: reasoning_details included.
      let turn;
      if (stream) {
        const a = assemble(first.chunks, { response: first.response, model: SONNET.model });
        // Each reasoning piece comes as `reasoning` and as its block's item in the same chunk
        // (clients read one or the other); the signature last, under the same index. Kept as
        // streamed, unmerged, as a naive client would.
        const details = first.chunks.flatMap((c) => c.choices[0]?.delta?.reasoning_details ?? []);
        for (const c of first.chunks) {
          const d = c.choices[0]?.delta;
          if (d?.reasoning) assert.deepEqual(d.reasoning_details, [{ type: 'reasoning.text', text: d.reasoning, format: 'anthropic-claude-v1', index: 0 }]);
        }
        assert.equal(details.map((d) => d.text ?? '').join(''), thinking);
        assert.deepEqual(details.at(-1), { type: 'reasoning.text', text: '', signature, format: 'anthropic-claude-v1', index: 0 });
        turn = {
          role: 'assistant',
          content: null,
          reasoning_details: details,
          tool_calls: a.tools.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: t.args } })),
        };
      } else {
        turn = first.data.choices[0].message;
        assert.deepEqual(turn.reasoning_details, [{ type: 'reasoning.text', text: thinking, signature, format: 'anthropic-claude-v1', index: 0 }]);
      }
      const toolResult = { role: 'tool', tool_call_id: turn.tool_calls[0].id, content: '{"sky":"clear"}' };

      // Given back: the turn opens with its signed thinking, and the request still thinks.
      emu.reset();
      emu.script({ match: { model: SONNET.native }, text: 'Clear skies.' });
      await chat({ model: SONNET.model, messages: [...user('Weather in Paris?'), turn, toolResult], tools: TOOLS, reasoning_effort: 'high' }, { stream });
      let { body } = onlyUpstream();
      assert.deepEqual(body.thinking, { type: 'enabled', budget_tokens: 16384 });
      assert.deepEqual(body.messages[1].content[0], { type: 'thinking', thinking, signature });
      assert.equal(body.messages[1].content[1].type, 'tool_use');

      // Not given back (a client that drops it): the turn goes on without thinking, no 400.
      emu.reset();
      emu.script({ match: { model: SONNET.native }, text: 'Clear skies.' });
      const { reasoning_details: _dropped, ...bare } = turn;
      await chat({ model: SONNET.model, messages: [...user('Weather in Paris?'), bare, toolResult], tools: TOOLS, reasoning_effort: 'high' }, { stream });
      ({ body } = onlyUpstream());
      assert.equal(body.thinking, undefined);
      assert.equal(body.messages[1].content[0].type, 'tool_use');
    });

    test(`gemini 3: reasoning_effort high → thinkingLevel, thoughts surfaced, ${mode(stream)}`, async () => {
      emu.script({ match: { model: GEMINI.native }, thinking: 'Two plus two is four.', text: 'Four.' });
      const res = await chat({ model: GEMINI.model, messages: user('What is 2+2?'), reasoning_effort: 'high' }, { stream });
      if (stream) {
        const a = assemble(res.chunks, { response: res.response, model: GEMINI.model });
        assert.equal(a.reasoning, 'Two plus two is four.');
        assert.equal(a.text, 'Four.');
      } else {
        const { message } = res.data.choices[0];
        assert.equal(message.reasoning, 'Two plus two is four.');
        assert.equal(message.content, 'Four.');
        assert.ok(res.data.usage.completion_tokens_details.reasoning_tokens > 0);
      }
      assert.deepEqual(onlyUpstream().body.generationConfig, { thinkingConfig: { thinkingLevel: 'high', includeThoughts: true } });
    });
  }

  test('gemini 2.5: reasoning_effort high → thinkingBudget', async () => {
    const res = await chat({ model: FLASH.model, messages: user('Why?'), reasoning_effort: 'high' });
    assert.equal(res.data.choices[0].message.reasoning, 'Thinking about: Why?');
    assert.equal(res.data.choices[0].message.content, 'Hello from emulator: Why?');
    assert.deepEqual(onlyUpstream().body.generationConfig, { thinkingConfig: { thinkingBudget: 16384, includeThoughts: true } });
  });
});

// ---------------------------------------------------------------------------------------------

describe('usage', () => {
  const sse = (type, data) => ({ type, ...data });
  /** A recorded-style Anthropic stream: message_start carries the input side, message_delta the cumulative totals. */
  const anthropicEvents = [
    sse('message_start', {
      message: {
        id: 'msg_01UsageExact',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-6',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 1200, cache_creation_input_tokens: 50, cache_read_input_tokens: 1000, output_tokens: 1 },
      },
    }),
    sse('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }),
    sse('ping', {}),
    sse('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Counting.' } }),
    sse('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'c2ln' } }),
    sse('content_block_stop', { index: 0 }),
    sse('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
    sse('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Forty ' } }),
    sse('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'two.' } }),
    sse('content_block_stop', { index: 1 }),
    // Newer API versions repeat the (cumulative) input counts here: they must not be added twice.
    sse('message_delta', {
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { input_tokens: 1200, cache_creation_input_tokens: 50, cache_read_input_tokens: 1000, output_tokens: 87 },
    }),
    sse('message_stop', {}),
  ];

  test('anthropic stream: exact usage in one final chunk, cache reads and writes inside prompt_tokens', async () => {
    emu.script({ match: { model: CLAUDE.native }, stream: anthropicEvents });
    const res = await chat({ model: CLAUDE.model, messages: user('count'), stream_options: { include_usage: true } }, { stream: true });
    const a = assemble(res.chunks, { response: res.response, model: CLAUDE.model, provider: 'anthropic' });
    assert.equal(a.text, 'Forty two.');
    assert.equal(a.reasoning, 'Counting.');
    assert.equal(a.usageChunks.length, 1, 'exactly one usage chunk');
    assert.equal(a.usageChunks[0].i, a.body.length - 1, 'usage is the last chunk (before the routing trailer)');
    assert.deepEqual(a.body.at(-1).choices, []);
    for (const c of a.body.slice(0, -1)) assert.equal(c.usage, null, 'usage: null on every other chunk');
    const u = a.usageChunks[0].usage;
    assert.equal(u.prompt_tokens, 1200 + 1000 + 50);
    assert.equal(u.completion_tokens, 87);
    assert.equal(u.total_tokens, 1200 + 1000 + 50 + 87);
    assert.equal(u.prompt_tokens_details.cached_tokens, 1000);
    assert.equal(u.prompt_tokens_details.cache_write_tokens, 50);
  });

  test('anthropic json: exact usage', async () => {
    emu.script({
      match: { model: CLAUDE.native },
      text: 'ok',
      usage: { input_tokens: 40, output_tokens: 12, cache_read_input_tokens: 300, cache_creation_input_tokens: 25 },
    });
    const { data } = await chat({ model: CLAUDE.model, messages: user('count') });
    assert.deepEqual(data.usage, {
      prompt_tokens: 365,
      completion_tokens: 12,
      total_tokens: 377,
      prompt_tokens_details: { cached_tokens: 300, cache_write_tokens: 25 },
    });
  });

  const usageMeta = (candidates) => ({
    promptTokenCount: 500,
    candidatesTokenCount: candidates,
    totalTokenCount: 500 + candidates + 25,
    cachedContentTokenCount: 300,
    thoughtsTokenCount: 25,
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: 500 }],
    cacheTokensDetails: [{ modality: 'TEXT', tokenCount: 300 }],
  });
  const geminiChunk = (parts, candidates, finishReason) => ({
    candidates: [{ content: { parts, role: 'model' }, ...(finishReason ? { finishReason } : {}), index: 0 }],
    usageMetadata: usageMeta(candidates),
    modelVersion: 'gemini-3.1-pro-preview',
    responseId: 'usage-exact-1',
  });

  test('gemini stream: cumulative usageMetadata on every chunk counted once, thoughts as reasoning, cache inside prompt', async () => {
    emu.script({
      match: { model: GEMINI.native },
      stream: [
        geminiChunk([{ text: 'Adding up.', thought: true }], 0),
        geminiChunk([{ text: 'Forty ', thoughtSignature: 'c2ln' }], 3),
        geminiChunk([{ text: 'two.' }], 9),
        geminiChunk([{ text: '' }], 14, 'STOP'),
      ],
    });
    const res = await chat({ model: GEMINI.model, messages: user('count'), stream_options: { include_usage: true } }, { stream: true });
    const a = assemble(res.chunks, { response: res.response, model: GEMINI.model, provider: 'google' });
    assert.equal(a.text, 'Forty two.');
    assert.equal(a.reasoning, 'Adding up.');
    assert.deepEqual(a.finish, ['stop']);
    assert.equal(a.usageChunks.length, 1, 'exactly one usage chunk');
    assert.equal(a.usageChunks[0].i, a.body.length - 1, 'usage is the last chunk (before the routing trailer)');
    assert.deepEqual(a.body.at(-1).choices, []);
    for (const c of a.body.slice(0, -1)) assert.equal(c.usage, null, 'usage: null on every other chunk');
    assert.deepEqual(a.usageChunks[0].usage, {
      prompt_tokens: 500,
      completion_tokens: 14 + 25,
      total_tokens: 500 + 14 + 25,
      prompt_tokens_details: { cached_tokens: 300 },
      completion_tokens_details: { reasoning_tokens: 25 },
    });
  });

  test('gemini json: exact usage', async () => {
    emu.script({
      match: { model: GEMINI.native },
      respond: {
        candidates: [{ content: { parts: [{ text: 'Hmm.', thought: true }, { text: 'Forty two.' }], role: 'model' }, finishReason: 'STOP', index: 0 }],
        usageMetadata: usageMeta(14),
        modelVersion: 'gemini-3.1-pro-preview',
        responseId: 'usage-exact-2',
      },
    });
    const { data } = await chat({ model: GEMINI.model, messages: user('count') });
    assert.equal(data.choices[0].message.content, 'Forty two.');
    assert.equal(data.choices[0].message.reasoning, 'Hmm.');
    assert.deepEqual(data.usage, {
      prompt_tokens: 500,
      completion_tokens: 39,
      total_tokens: 539,
      prompt_tokens_details: { cached_tokens: 300 },
      completion_tokens_details: { reasoning_tokens: 25 },
    });
  });

  test("gemini stream: the emulator's default growing usage gives the last totals", async () => {
    emu.script({ match: { model: GEMINI.native }, text: 'one two three four five six', reasoningTokens: 7, cachedTokens: 2 });
    const res = await chat({ model: GEMINI.model, messages: user('count to six'), stream_options: { include_usage: true } }, { stream: true });
    const a = assemble(res.chunks);
    assert.equal(a.usageChunks.length, 1);
    const u = a.usageChunks[0].usage;
    // The emulator estimates ~4 characters per token: the answer is 28 characters → 7 tokens.
    assert.equal(u.completion_tokens, 7 + 7);
    assert.equal(u.completion_tokens_details.reasoning_tokens, 7);
    assert.equal(u.prompt_tokens_details.cached_tokens, 2);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });
});

// ---------------------------------------------------------------------------------------------

describe('finish reasons', () => {
  const anthropicCases = [
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['refusal', 'content_filter'],
  ];
  const geminiCases = [
    ['STOP', 'stop'],
    ['MAX_TOKENS', 'length'],
    ['SAFETY', 'content_filter'],
    ['PROHIBITED_CONTENT', 'content_filter'],
  ];

  for (const stream of MODES) {
    test(`anthropic: stop, length, content_filter, tool_calls, ${mode(stream)}`, async () => {
      for (const [native, openai] of anthropicCases) {
        emu.reset();
        emu.script({ match: { model: CLAUDE.native }, finishReason: native, text: 'Partial answer' });
        const res = await chat({ model: CLAUDE.model, messages: user('go'), max_tokens: 5 }, { stream });
        const finish = stream ? assemble(res.chunks).finish : [res.data.choices[0].finish_reason];
        assert.deepEqual(finish, [openai], `${native} → ${openai}`);
        assert.equal(onlyUpstream().body.max_tokens, 5);
      }
      emu.reset();
      emu.script({ match: { model: CLAUDE.native }, toolCalls: [{ name: 'get_time', arguments: {} }] });
      const res = await chat({ model: CLAUDE.model, messages: user('time?'), tools: TOOLS }, { stream });
      if (stream) {
        const a = assemble(res.chunks);
        assert.deepEqual(a.finish, ['tool_calls']);
        assert.equal(a.tools[0].args, '{}', 'a call without arguments gets an empty object');
      } else {
        assert.equal(res.data.choices[0].finish_reason, 'tool_calls');
        assert.equal(res.data.choices[0].message.tool_calls[0].function.arguments, '{}');
      }
    });

    test(`gemini: stop, length, content_filter (SAFETY), tool_calls, ${mode(stream)}`, async () => {
      for (const [native, openai] of geminiCases) {
        emu.reset();
        emu.script({ match: { model: GEMINI.native }, finishReason: native, text: 'Partial answer' });
        const res = await chat({ model: GEMINI.model, messages: user('go'), max_tokens: 5 }, { stream });
        const finish = stream ? assemble(res.chunks).finish : [res.data.choices[0].finish_reason];
        assert.deepEqual(finish, [openai], `${native} → ${openai}`);
        assert.equal(onlyUpstream().body.generationConfig.maxOutputTokens, 5);
      }
      emu.reset();
      emu.script({ match: { model: GEMINI.native }, toolCalls: [{ name: 'get_time', arguments: { tz: 'UTC' } }] });
      const res = await chat({ model: GEMINI.model, messages: user('time?'), tools: TOOLS }, { stream });
      const finish = stream ? assemble(res.chunks).finish : [res.data.choices[0].finish_reason];
      assert.deepEqual(finish, ['tool_calls'], 'STOP after a function call is tool_calls');
    });
  }

  for (const stream of MODES) {
    test(`gemini: an empty answer (STOP, no parts) is retried, not passed as stop, ${mode(stream)}`, async () => {
      // Gemini's known empty answer, as recorded in LiteLLM #24442.
      const empty = {
        candidates: [{ content: { role: 'model' }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 },
        modelVersion: GEMINI.native,
        responseId: 'r-empty',
      };
      emu.script(
        { match: { model: GEMINI.native }, ...(stream ? { stream: [empty] } : { respond: empty }) },
        { match: { model: GEMINI.native }, text: 'Second try.' },
      );
      const res = await chat({ model: GEMINI.model, messages: user('go') }, { stream });
      const text = stream ? assemble(res.chunks).text : res.data.choices[0].message.content;
      assert.equal(text, 'Second try.');
      assert.equal(upstream().length, 2);
      const failed = stream ? 'stream_error' : 'malformed_response';
      assert.equal(res.response.headers.get('x-switchyard-attempts'), `google:${failed},google:200`);
    });
  }

  test('gemini: a blocked prompt (promptFeedback, no candidates) is content_filter', async () => {
    emu.script({
      match: { model: GEMINI.native },
      respond: { promptFeedback: { blockReason: 'PROHIBITED_CONTENT' }, usageMetadata: { promptTokenCount: 9, totalTokenCount: 9 }, modelVersion: GEMINI.native },
    });
    const { data } = await chat({ model: GEMINI.model, messages: user('bad') });
    assert.equal(data.choices[0].finish_reason, 'content_filter');
    assert.equal(data.choices[0].message.content, null);
  });
});

// ---------------------------------------------------------------------------------------------

describe('errors', () => {
  for (const stream of MODES) {
    test(`anthropic 529 overloaded → 503, ${mode(stream)}`, async () => {
      emu.script({ match: { model: CLAUDE.native }, status: 529, persistent: true });
      const err = await apiError(client().chat.completions.create({ model: CLAUDE.model, messages: user('x'), stream }), 503);
      assert.match(err.error.message, /Overloaded/);
      assert.equal(err.code, 'overloaded');
      assert.match(JSON.stringify(err.error), /anthropic/i, 'the provider is named');
      assert.equal(err.headers.get('x-switchyard-provider'), 'anthropic');
      assert.match(err.headers.get('x-generation-id') ?? '', GEN_ID);
      assert.equal(upstream().length, 2, 'retried once (the default), then given up');
      assert.equal(err.headers.get('x-switchyard-attempts'), 'anthropic:529,anthropic:529');
    });
  }

  test('anthropic 429 with retry-after → 429, retry-after kept', async () => {
    const message = 'Number of request tokens has exceeded your per-minute rate limit (org-emulator).';
    emu.script({ match: { model: CLAUDE.native }, status: 429, headers: { 'retry-after': '17' }, body: anthropicError(429, message), persistent: true });
    const err = await apiError(client().chat.completions.create({ model: CLAUDE.model, messages: user('x') }), 429);
    assert.ok(err instanceof OpenAI.RateLimitError);
    assert.ok(err.error.message.includes(message), err.error.message);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.headers.get('retry-after'), '17');
    assert.equal(err.headers.get('x-switchyard-provider'), 'anthropic');
    assert.equal(upstream().length, 1, 'a 17 s Retry-After is longer than the gateway waits: not retried');
  });

  test('anthropic prompt too long → 400 context_length_exceeded', async () => {
    emu.script({ match: { model: CLAUDE.native }, status: 400, body: anthropicError(400, 'prompt is too long: 210000 tokens > 200000 maximum') });
    const err = await apiError(client().chat.completions.create({ model: CLAUDE.model, messages: user('x'), stream: true }), 400);
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(err.param, 'messages');
    assert.ok(err.error.message.includes('prompt is too long: 210000 tokens > 200000 maximum'), err.error.message);
    assert.equal(upstream().length, 1, 'a 400 is not retried');
  });

  test('anthropic: another 400 keeps its message, no context code', async () => {
    emu.script({ match: { model: CLAUDE.native }, status: 400, body: anthropicError(400, 'messages.0.content.0.image.source.base64: invalid base64 data') });
    const err = await apiError(client().chat.completions.create({ model: CLAUDE.model, messages: user('x') }), 400);
    assert.notEqual(err.code, 'context_length_exceeded');
    assert.ok(err.error.message.includes('invalid base64 data'));
  });

  const quotaBody = () => {
    const body = googleError(429, 'You exceeded your current quota, please check your plan.');
    body.error.details = [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '34.4s' }];
    return body;
  };

  for (const stream of MODES) {
    test(`gemini RESOURCE_EXHAUSTED → 429 with retry-after from RetryInfo, ${mode(stream)}`, async () => {
      emu.script({ match: { model: GEMINI.native }, status: 429, body: quotaBody(), persistent: true });
      const err = await apiError(client().chat.completions.create({ model: GEMINI.model, messages: user('x'), stream }), 429);
      assert.ok(err instanceof OpenAI.RateLimitError);
      assert.ok(err.error.message.includes('You exceeded your current quota'), err.error.message);
      assert.equal(err.headers.get('retry-after'), '35');
      assert.equal(err.headers.get('x-switchyard-provider'), 'google');
    });
  }

  test(
    "gemini: RetryInfo's delay is honoured by the gateway's own retry too (34 s: no retry at once)",
    async () => {
      emu.script({ match: { model: GEMINI.native }, status: 429, body: quotaBody(), persistent: true });
      const err = await apiError(client().chat.completions.create({ model: GEMINI.model, messages: user('x') }), 429);
      assert.equal(err.headers.get('retry-after'), '35');
      assert.equal(upstream().length, 1, `not retried within the 34.4 s Google asked for (attempts: ${err.headers.get('x-switchyard-attempts')})`);
    },
  );

  test('gemini: an upstream retry-after header wins over RetryInfo, and is waited for before the retry', async () => {
    emu.script({ match: { model: GEMINI.native }, status: 429, headers: { 'retry-after': '1' }, body: quotaBody(), persistent: true });
    const err = await apiError(client().chat.completions.create({ model: GEMINI.model, messages: user('x') }), 429);
    assert.equal(err.headers.get('retry-after'), '1');
    const seen = upstream();
    assert.equal(seen.length, 2);
    assert.ok(seen[1].receivedAt - seen[0].receivedAt >= 1000, 'Retry-After honoured between the two');
  });

  test('gemini: token limit → 400 context_length_exceeded; UNAVAILABLE → 503', async () => {
    emu.script({ match: { model: GEMINI.native }, status: 400, body: googleError(400, 'The input token count (1196265) exceeds the maximum number of tokens allowed (1048575).') });
    const long = await apiError(client().chat.completions.create({ model: GEMINI.model, messages: user('x') }), 400);
    assert.equal(long.code, 'context_length_exceeded');
    assert.equal(upstream().length, 1);
    emu.reset();
    emu.script({ match: { model: GEMINI.native }, status: 503, persistent: true });
    const busy = await apiError(client().chat.completions.create({ model: GEMINI.model, messages: user('x') }), 503);
    assert.equal(busy.code, 'overloaded');
    assert.equal(busy.headers.get('x-switchyard-attempts'), 'google:503,google:503');
  });

  for (const m of [CLAUDE, GEMINI]) {
    for (const stream of MODES) {
      test(`${m.provider}: logit_bias → 400 naming it, nothing sent upstream, ${mode(stream)}`, async () => {
        const err = await apiError(
          client().chat.completions.create({ model: m.model, messages: user('x'), logit_bias: { 50256: -100 }, stream }),
          400,
        );
        assert.equal(err.param, 'logit_bias');
        assert.match(err.error.message, /logit_bias/);
        assert.equal(emu.requests.length, 0, 'the emulator received nothing');
      });
    }
  }

  test('an unknown top-level parameter → 400 naming it, nothing sent upstream', async () => {
    for (const m of [CLAUDE, GEMINI]) {
      const err = await apiError(client().chat.completions.create({ model: m.model, messages: user('x'), frobnicate_level: 3 }), 400);
      assert.equal(err.param, 'frobnicate_level', m.model);
    }
    const n = await apiError(client().chat.completions.create({ model: CLAUDE.model, messages: user('x'), n: 2 }), 400);
    assert.equal(n.param, 'n');
    assert.equal(emu.requests.length, 0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('streams that fail midway', () => {
  const longText = Array.from({ length: 12 }, (_, i) => `word${i}`).join(' ');

  /** The stream failed visibly: an APIError, and never a finish_reason before it. */
  function assertFailed({ chunks, err }, what) {
    assert.ok(err instanceof OpenAI.APIError, `${what}: an APIError (got ${err?.constructor?.name}: ${err?.message})`);
    assert.equal(typeof err.error?.message, 'string', `${what}: the error event carries a message`);
    assert.ok(!chunks.some((c) => c.choices.some((ch) => ch.finish_reason)), `${what}: no finish_reason before the error`);
    return err;
  }

  test('anthropic: connection cut after a few events → the SDK sees an error', async () => {
    emu.script({ match: { model: CLAUDE.native }, text: longText, cutAfter: 5 });
    const r = await streamError({ model: CLAUDE.model, messages: user('x') });
    assertFailed(r, 'cut');
    // message_start, content_block_start, ping, then two text deltas before the cut.
    assert.equal(assemble(r.chunks).text, 'word0 word1 ', 'what arrived before the cut was streamed');
    assert.equal(emu.requests[0].cut, true);
  });

  test('anthropic: event: error (overloaded) mid-stream → the SDK sees an error', async () => {
    emu.script({ match: { model: CLAUDE.native }, text: longText, errorAfter: 5 });
    const r = await streamError({ model: CLAUDE.model, messages: user('x') });
    const err = assertFailed(r, 'event: error');
    assert.match(err.error.message, /Overloaded/);
    assert.equal(err.error.code, 'overloaded');
  });

  test('gemini: connection cut after a few chunks → the SDK sees an error', async () => {
    emu.script({ match: { model: GEMINI.native }, text: longText, cutAfter: 3 });
    const r = await streamError({ model: GEMINI.model, messages: user('x') });
    assertFailed(r, 'cut');
    assert.equal(assemble(r.chunks).text, 'word0 word1 word2 ', 'what arrived before the cut was streamed');
    assert.equal(emu.requests[0].cut, true);
  });

  test('gemini: an error object mid-stream → the SDK sees an error', async () => {
    emu.script({ match: { model: GEMINI.native }, text: longText, errorAfter: 3, errorMessage: 'The model is overloaded. Please try again later.' });
    const r = await streamError({ model: GEMINI.model, messages: user('x') });
    const err = assertFailed(r, 'error object');
    assert.match(err.error.message, /overloaded/);
  });

  test('a stream that ends without its final event (no message_stop) → error, not a clean finish', async () => {
    const events = [
      { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], usage: { input_tokens: 3, output_tokens: 1 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Half' } },
    ];
    emu.script({ match: { model: CLAUDE.native }, stream: events });
    assertFailed(await streamError({ model: CLAUDE.model, messages: user('x') }), 'truncated');
  });
});

// ---------------------------------------------------------------------------------------------

describe('client abort', () => {
  for (const m of [CLAUDE, GEMINI]) {
    test(`${m.provider}: aborting a translated stream mid-way cancels the upstream request`, async () => {
      const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
      emu.script({ match: { model: m.native }, eventDelayMs: 150, text: words });
      const stream = await client().chat.completions.create({ model: m.model, messages: user('long'), stream: true });
      let received = 0;
      try {
        for await (const chunk of stream) {
          received++;
          if (chunk.choices[0]?.delta?.content) stream.controller.abort();
        }
      } catch (err) {
        assert.ok(err instanceof OpenAI.APIUserAbortError || err.name === 'AbortError', `abort surfaces as an abort: ${err}`);
      }
      assert.ok(received >= 1);
      const seen = await emu.waitForRequest((r) => r.clientClosed, 5000).catch(() => null);
      const first = emu.requests[0];
      assert.ok(seen, `the emulator saw its socket closed before the stream ended (sent ${first?.eventsSent} events, finished: ${first?.finished})`);
      assert.ok(seen.eventsSent < 30, `upstream stopped early (sent ${seen.eventsSent} events)`);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('vertex ai', () => {
  let vgw;
  const PROJECT = 'sy-vertex-proj';
  const LOCATION = 'us-east5';
  const base = `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers`;

  before(async () => {
    vgw = await startGateway({
      emulatorUrl: emu.url,
      bindings: {
        ANTHROPIC_API_KEY: '',
        GOOGLE_API_KEY: '',
        VERTEX_API_KEY: SERVICE_ACCOUNT_JSON,
        VERTEX_PROJECT: PROJECT,
        VERTEX_LOCATION: LOCATION,
        VERTEX_BASE_URL: emu.url,
        VERTEX_TOKEN_URL: `${emu.url}/token`,
        BREAKER_THRESHOLD: '1000',
      },
    });
    // A key of this gateway's own store.
    vgw.key = await vgw.createKey('vertex');
    secrets.push(['vertex gateway key', vgw.key]);
  });

  after(async () => {
    await vgw?.dispose();
  });

  const vclient = () => new OpenAI({ apiKey: vgw.key, baseURL: `${vgw.url}/v1`, maxRetries: 0, timeout: 20_000, fetch: recordingFetch });

  test('claude (rawPredict) then gemini (streamGenerateContent): one token fetch, a signed JWT assertion', async () => {
    emu.script({ match: { protocol: 'token' }, accessToken: 'ya29.emulated-vertex-token-0001', expiresIn: 3599 });
    secrets.push(['vertex access token', 'ya29.emulated-vertex-token-0001']);

    const { data, response } = await vclient()
      .chat.completions.create({ model: CLAUDE.model, messages: [{ role: 'system', content: 'Be brief.' }, ...user('Hello Vertex Claude')], max_tokens: 300 })
      .withResponse();
    assert.equal(response.headers.get('x-switchyard-provider'), 'vertex');
    assert.equal(data.id, response.headers.get('x-generation-id'));
    assert.equal(data.model, CLAUDE.model);
    assert.equal(data.choices[0].message.content, 'Hello from emulator: Hello Vertex Claude');
    assert.equal(data.choices[0].finish_reason, 'stop');

    const { data: stream, response: sresp } = await vclient()
      .chat.completions.create({ model: GEMINI.model, messages: user('Hello Vertex Gemini'), stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(sresp.headers.get('x-switchyard-provider'), 'vertex');
    const a = assemble(chunks, { response: sresp, model: GEMINI.model, provider: 'vertex' });
    assert.equal(a.text, 'Hello from emulator: Hello Vertex Gemini');
    assert.deepEqual(a.finish, ['stop']);
    assert.equal(a.usageChunks.length, 1);

    // The token endpoint: called once for both requests, with a JWT-bearer grant.
    const tokenCalls = emu.requests.filter((r) => r.protocol === 'token');
    assert.equal(tokenCalls.length, 1, 'one token fetch for two requests');
    assert.equal(emu.tokens.length, 1);
    assert.equal(tokenCalls[0].path, '/token');
    assert.match(tokenCalls[0].headers['content-type'] ?? '', /^application\/x-www-form-urlencoded/);
    assert.equal(tokenCalls[0].body.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
    const { assertion, jwt } = emu.tokens[0];
    assert.equal(jwt.header.alg, 'RS256');
    assert.equal(jwt.header.kid, SERVICE_ACCOUNT.private_key_id);
    assert.equal(jwt.claims.iss, SERVICE_ACCOUNT.client_email);
    assert.equal(jwt.claims.aud, 'https://oauth2.googleapis.com/token', 'Google\'s endpoint, wherever the exchange is sent');
    assert.equal(jwt.claims.scope, 'https://www.googleapis.com/auth/cloud-platform');
    assert.ok(Number.isInteger(jwt.claims.iat) && Math.abs(jwt.claims.iat - Date.now() / 1000) < 300, `iat is now (${jwt.claims.iat})`);
    assert.equal(jwt.claims.exp - jwt.claims.iat, 3600);
    const [h, p, sig] = assertion.split('.');
    const publicKey = createPublicKey(SERVICE_ACCOUNT.private_key);
    assert.ok(verifySignature('RSA-SHA256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(sig, 'base64url')), 'the assertion verifies with the service account key');

    // Claude on Vertex: rawPredict, the Anthropic body without model, with anthropic_version.
    const [claudeReq, geminiReq] = upstream();
    assert.equal(claudeReq.path, `${base}/anthropic/models/claude-sonnet-4-6:rawPredict`);
    assert.equal(claudeReq.headers.authorization, 'Bearer ya29.emulated-vertex-token-0001');
    assert.equal(claudeReq.headers['x-api-key'], undefined);
    assert.deepEqual(claudeReq.body, {
      anthropic_version: 'vertex-2023-10-16',
      system: [{ type: 'text', text: 'Be brief.' }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello Vertex Claude' }] }],
      max_tokens: 300,
    });
    // Gemini on Vertex: the same token, the Gemini body.
    assert.equal(geminiReq.path, `${base}/google/models/gemini-3.1-pro-preview:streamGenerateContent?alt=sse`);
    assert.equal(geminiReq.headers.authorization, 'Bearer ya29.emulated-vertex-token-0001');
    assert.equal(geminiReq.headers['x-goog-api-key'], undefined);
    assert.deepEqual(geminiReq.body, { contents: [{ role: 'user', parts: [{ text: 'Hello Vertex Gemini' }] }] });
  });

  test('claude streamed (streamRawPredict) and gemini json (generateContent) reuse the cached token', async () => {
    const stream = await vclient().chat.completions.create({ model: CLAUDE.model, messages: user('stream on vertex'), stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const a = assemble(chunks, { model: CLAUDE.model, provider: 'vertex' });
    assert.equal(a.text, 'Hello from emulator: stream on vertex');
    assert.deepEqual(a.finish, ['stop']);
    assert.equal(a.usageChunks.length, 1);

    const json = await vclient().chat.completions.create({ model: GEMINI.model, messages: user('json on vertex') });
    assert.equal(json.choices[0].message.content, 'Hello from emulator: json on vertex');

    assert.equal(emu.requests.filter((r) => r.protocol === 'token').length, 0, 'the cached token is reused');
    const [claudeReq, geminiReq] = upstream();
    assert.equal(claudeReq.path, `${base}/anthropic/models/claude-sonnet-4-6:streamRawPredict`);
    assert.equal(claudeReq.body.stream, true);
    assert.equal(claudeReq.body.model, undefined);
    assert.equal(claudeReq.body.anthropic_version, 'vertex-2023-10-16');
    assert.equal(geminiReq.path, `${base}/google/models/gemini-3.1-pro-preview:generateContent`);
    assert.match(claudeReq.headers.authorization, /^Bearer ya29\./);
  });

  test('vertex errors: a Google-shaped 429 for Claude → 429; refusals name Vertex AI', async () => {
    emu.script({ match: { model: CLAUDE.native }, status: 429, body: googleError(429, 'Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.'), persistent: true });
    const err = await apiError(vclient().chat.completions.create({ model: CLAUDE.model, messages: user('x') }), 429);
    assert.ok(err.error.message.includes('Quota exceeded'), err.error.message);
    assert.match(err.error.message, /Vertex AI/);
    assert.equal(err.headers.get('x-switchyard-provider'), 'vertex');
    assert.equal(err.headers.get('x-switchyard-attempts'), 'vertex:429,vertex:429');
    const refused = await apiError(vclient().chat.completions.create({ model: GEMINI.model, messages: user('x'), logit_bias: { 1: 1 } }), 400);
    assert.equal(refused.param, 'logit_bias');
    assert.match(refused.error.message, /Vertex AI/);
  });

  test('token trouble: the endpoint failing once is retried, a refused token exchanged again, a refused account named', async () => {
    // A new isolate: nothing cached.
    const fresh = await startGateway({ emulatorUrl: emu.url, bindings: { ...vgw.bindings } });
    try {
      const k = await fresh.createKey('vertex-fresh');
      secrets.push(['fresh vertex gateway key', k]);
      const c = () => new OpenAI({ apiKey: k, baseURL: `${fresh.url}/v1`, maxRetries: 0, timeout: 20_000, fetch: recordingFetch });
      emu.script({ match: { protocol: 'token' }, status: 503, body: { error: 'backend_error' } });
      emu.script({ match: { protocol: 'token' }, accessToken: 'ya29.second-try-token', expiresIn: 3599 });
      secrets.push(['vertex access token', 'ya29.second-try-token']);
      const first = await c().chat.completions.create({ model: CLAUDE.model, messages: user('token please') }).withResponse();
      assert.equal(first.data.choices[0].message.content, 'Hello from emulator: token please');
      assert.equal(first.response.headers.get('x-switchyard-attempts'), 'vertex:connection_failed,vertex:200');

      // Vertex refuses the cached token: the same request exchanges a new one and is served.
      emu.script({ match: { model: CLAUDE.native }, status: 401, body: googleError(401, 'Request had invalid authentication credentials.') });
      emu.script({ match: { protocol: 'token' }, accessToken: 'ya29.third-token', expiresIn: 3599 });
      secrets.push(['vertex access token', 'ya29.third-token']);
      const tokensBefore = emu.tokens.length;
      const second = await c().chat.completions.create({ model: CLAUDE.model, messages: user('again') }).withResponse();
      assert.equal(second.data.choices[0].message.content, 'Hello from emulator: again');
      assert.equal(second.response.headers.get('x-switchyard-attempts'), 'vertex:token_refused,vertex:200');
      assert.equal(emu.tokens.length, tokensBefore + 1, 'one new exchange');
      const last = emu.requests.filter((r) => r.model === CLAUDE.native).at(-1);
      assert.equal(last.headers.authorization, 'Bearer ya29.third-token');
    } finally {
      await fresh.dispose();
    }

    // An account Google refuses: a 502 naming the variable, final, never the key or assertion.
    const refusedGw = await startGateway({ emulatorUrl: emu.url, bindings: { ...vgw.bindings } });
    try {
      const k = await refusedGw.createKey('vertex-refused');
      secrets.push(['refused vertex gateway key', k]);
      emu.script({ match: { protocol: 'token' }, status: 400, body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' }, persistent: true });
      const c = new OpenAI({ apiKey: k, baseURL: `${refusedGw.url}/v1`, maxRetries: 2, timeout: 20_000, fetch: recordingFetch });
      const from = emu.requests.length;
      const err = await apiError(c.chat.completions.create({ model: CLAUDE.model, messages: user('x') }), 502);
      assert.equal(err.code, 'upstream_authentication_failed');
      assert.match(err.error.message, /VERTEX_API_KEY/);
      assert.equal(err.headers.get('x-should-retry'), 'false');
      const since = emu.requests.slice(from);
      assert.ok(since.some((r) => r.protocol === 'token'), 'the exchange was tried');
      assert.equal(since.filter((r) => r.model === CLAUDE.native).length, 0, 'Vertex itself never called');
      assert.equal(since.filter((r) => r.protocol === 'token').length, 1, 'one exchange: a refused account is not retried, by the gateway nor the SDK');
    } finally {
      await refusedGw.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------

test('no secret appears in any response body or header', () => {
  assert.ok(responses.length > 50, `responses were recorded (${responses.length})`);
  for (const r of responses) {
    const haystack = `${r.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}\n${r.body}`;
    for (const [label, secret] of secrets) {
      assert.ok(!haystack.includes(secret), `${label} leaked in the response to ${r.url} (HTTP ${r.status})`);
    }
  }
});
