#!/usr/bin/env node
// Generates src/catalog/data.rs (the compiled-in model catalog) from LiteLLM's MIT-licensed
// model_prices table, and copies that table's licence to src/catalog/MODEL_PRICES_LICENSE.
//
//   node scripts/gen-catalog.mjs [path/to/model_prices.json] [--check] [--as-of=YYYY-MM-DD]
//
// The table path defaults to ../shared/data/model_prices.json relative to the repository root;
// the licence is read from the same directory (model_prices.LICENSE). --check writes nothing and
// exits 1 if the committed files differ from what would be written. --as-of is the date that
// deprecation_date is compared with; it defaults to the date recorded in the committed data.rs
// (so regenerating is reproducible), else DEFAULT_AS_OF. Pass --as-of=today to move it.
//
// Node 20, no dependencies. Prices are converted from the table's number literals by string
// arithmetic (the JSON text is parsed with a small parser that keeps each number's source text),
// so 2.5e-06 becomes exactly "0.0000025" and no float is ever formatted.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_AS_OF = '2026-11-26';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_RS = join(ROOT, 'src/catalog/data.rs');
const OUT_LICENSE = join(ROOT, 'src/catalog/MODEL_PRICES_LICENSE');

// ---------------------------------------------------------------------------------------------
// JSON with number source text kept

class Num {
  constructor(raw) {
    this.raw = raw;
  }
}

function parseJsonKeepingNumbers(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (msg) => {
    throw new Error(`JSON: ${msg} at offset ${i}`);
  };
  const str = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = Object.create(null);
      ws();
      if (text[i] === '}') return i++, obj;
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected key');
        const k = str();
        ws();
        if (text[i++] !== ':') fail('expected :');
        obj[k] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return i++, obj;
        else fail('expected , or }');
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') return i++, arr;
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return i++, arr;
        else fail('expected , or ]');
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(lit, i)) return (i += lit.length), v;
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (!m) fail('unexpected character');
    i += m[0].length;
    return new Num(m[0]);
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing data');
  return v;
}

// A JSON number literal as a plain decimal string: no exponent, no float rounding.
function plainDecimal(raw) {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(raw);
  if (!m) throw new Error(`not a number: ${raw}`);
  const [, sign, int, frac = '', exp = '0'] = m;
  let digits = int + frac;
  let point = int.length + Number(exp); // position of the decimal point within `digits`
  if (point <= 0) {
    digits = '0'.repeat(1 - point) + digits;
    point = 1;
  } else if (point > digits.length) {
    digits += '0'.repeat(point - digits.length);
  }
  const whole = digits.slice(0, point).replace(/^0+(?=\d)/, '');
  const fraction = digits.slice(point).replace(/0+$/, '');
  const out = fraction ? `${whole}.${fraction}` : whole;
  return sign && /[1-9]/.test(out) ? `-${out}` : out;
}

for (const [raw, want] of [
  ['2.5e-06', '0.0000025'], ['1e-05', '0.00001'], ['3e-7', '0.0000003'], ['0', '0'],
  ['0.0000029999900000000002', '0.0000029999900000000002'], ['1.25E-6', '0.00000125'],
  ['15', '15'], ['1.5e1', '15'], ['0.10', '0.1'], ['12.5e-1', '1.25'], ['0e-7', '0'],
]) {
  if (plainDecimal(raw) !== want) throw new Error(`plainDecimal(${raw}) = ${plainDecimal(raw)}, want ${want}`);
}

// ---------------------------------------------------------------------------------------------
// Arguments

const args = process.argv.slice(2);
const check = args.includes('--check');
const asOfArg = args.find((a) => a.startsWith('--as-of='))?.slice('--as-of='.length);
const unknown = args.filter((a) => a.startsWith('--') && a !== '--check' && !a.startsWith('--as-of='));
const positional = args.filter((a) => !a.startsWith('--'));
if (unknown.length || positional.length > 1) {
  console.error('usage: node scripts/gen-catalog.mjs [model_prices.json] [--check] [--as-of=YYYY-MM-DD|today]');
  process.exit(2);
}
const inputPath = positional[0] ? resolve(positional[0]) : resolve(ROOT, '../shared/data/model_prices.json');
const licensePath = join(dirname(inputPath), basename(inputPath, '.json') + '.LICENSE');

const committed = existsSync(OUT_RS) ? readFileSync(OUT_RS, 'utf8') : '';
const committedAsOf = /^\/\/ Deprecation cut-off \(--as-of\): (\d{4}-\d\d-\d\d)$/m.exec(committed)?.[1];
const AS_OF =
  asOfArg === 'today' ? new Date().toISOString().slice(0, 10) : asOfArg ?? committedAsOf ?? DEFAULT_AS_OF;
if (!/^\d{4}-\d\d-\d\d$/.test(AS_OF)) throw new Error(`bad --as-of: ${AS_OF}`);

const inputText = readFileSync(inputPath, 'utf8');
const licenseText = readFileSync(licensePath, 'utf8');
const table = parseJsonKeepingNumbers(inputText);

// ---------------------------------------------------------------------------------------------
// Mapping

// LiteLLM provider -> ours.
const PROVIDER = {
  openai: 'openai',
  anthropic: 'anthropic',
  gemini: 'google',
  'vertex_ai-language-models': 'vertex',
  'vertex_ai-anthropic_models': 'vertex',
  vertex_ai: 'vertex',
  xai: 'xai',
  groq: 'groq',
  mistral: 'mistral',
  deepseek: 'deepseek',
  cerebras: 'cerebras',
  fireworks_ai: 'fireworks',
  together_ai: 'togetherai',
};
// Our provider -> the prefix LiteLLM puts on its keys (stripped to get the native id).
const KEY_PREFIX = {
  openai: 'openai/',
  anthropic: 'anthropic/',
  google: 'gemini/',
  vertex: 'vertex_ai/',
  xai: 'xai/',
  groq: 'groq/',
  mistral: 'mistral/',
  deepseek: 'deepseek/',
  cerebras: 'cerebras/',
  fireworks: 'fireworks_ai/',
  togetherai: 'together_ai/',
};
const OURS = new Set(Object.values(PROVIDER));

// The creator of a model hosted by someone else, when it is obvious and is one of our providers.
const ORG_CREATOR = {
  openai: 'openai',
  anthropic: 'anthropic',
  google: 'google',
  xai: 'xai',
  'x-ai': 'xai',
  mistralai: 'mistral',
  mistral: 'mistral',
  'deepseek-ai': 'deepseek',
  deepseek: 'deepseek',
};
const NAME_CREATOR = [
  [/^gpt-oss/, 'openai'],
  [/^claude/, 'anthropic'],
  [/^(gemini|gemma)/, 'google'],
  [/^grok/, 'xai'],
  [/^(mistral|mixtral|ministral|codestral|devstral|magistral|pixtral|voxtral)/, 'mistral'],
  [/^deepseek/, 'deepseek'],
];
function guessCreator(native) {
  const lower = native.toLowerCase();
  const parts = lower.split('/');
  if (parts.length > 1 && parts[0] !== 'accounts') return ORG_CREATOR[parts[0]] ?? null;
  const name = parts[parts.length - 1];
  return NAME_CREATOR.find(([re]) => re.test(name))?.[1] ?? null;
}

const has = (e, f) => e[f] !== undefined && e[f] !== null;
const num = (v) => (v instanceof Num ? Number(v.raw) : NaN);
const u32 = (v) => {
  const n = num(v);
  return Number.isInteger(n) && n > 0 && n <= 0xffffffff ? n : 0;
};
const price = (e, f) => {
  if (!has(e, f)) return '';
  if (!(e[f] instanceof Num)) throw new Error(`non-numeric ${f}: ${JSON.stringify(e[f])}`);
  const s = plainDecimal(e[f].raw);
  if (s.startsWith('-')) throw new Error(`negative ${f}: ${e[f].raw}`);
  return s;
};
const PRICE_FIELDS = [
  'input_cost_per_token',
  'output_cost_per_token',
  'cache_read_input_token_cost',
  'cache_creation_input_token_cost',
];

// Models that an entry of one of our providers says are offered only through other APIs or
// without text output, by provider group and name (the key's last path segment): Google's own
// API and Vertex AI are one group, so a Vertex entry that omits the fields goes with its Gemini
// twin that has them.
const group = (e) => (PROVIDER[e.litellm_provider] === 'vertex' ? 'google' : PROVIDER[e.litellm_provider]);
const modelKey = (key, e) => `${group(e)} ${key.split('/').pop()}`;
const unservable = new Set(
  Object.entries(table)
    .filter(
      ([, e]) =>
        e &&
        typeof e === 'object' &&
        PROVIDER[e.litellm_provider] &&
        ((Array.isArray(e.supported_endpoints) && !e.supported_endpoints.includes('/v1/chat/completions')) ||
          (Array.isArray(e.supported_output_modalities) && !e.supported_output_modalities.includes('text'))),
    )
    .map(([k, e]) => modelKey(k, e)),
);

// Providers whose current models the table cites a source for, and whose unsourced entries are
// other hosts' names or retired spellings (deepseek-v3, deepseek-r1; cerebras llama-3.1-8b for
// the retired llama3.1-8b): only sourced entries are theirs.
const SOURCE_REQUIRED = new Set(['deepseek', 'cerebras']);

// Pass 1: filter, strip prefixes, collect candidate (provider, native id) entries.
const skipped = {};
const skip = (why) => (skipped[why] = (skipped[why] ?? 0) + 1);
const candidates = [];
const keys = Object.keys(table).sort();
for (const key of keys) {
  const e = table[key];
  if (key === 'sample_spec' || typeof e !== 'object' || e === null || e.mode !== 'chat') continue;
  const provider = PROVIDER[e.litellm_provider];
  if (!provider) continue;
  if (key.startsWith('ft:')) {
    skip('fine-tune template (ft:)');
    continue;
  }
  if (has(e, 'deprecation_date') && String(e.deprecation_date) <= AS_OF) {
    skip(`deprecated on or before ${AS_OF}`);
    continue;
  }
  if (!PRICE_FIELDS.some((f) => has(e, f))) {
    skip('no price');
    continue;
  }
  // Served through chat completions with text out, or not at all by this gateway (judged by
  // model name, so an entry of another host that omits the fields goes too).
  if (unservable.has(modelKey(key, e))) {
    skip('not served by chat completions, or no text output (supported_endpoints/_output_modalities)');
    continue;
  }
  const prefix = KEY_PREFIX[provider];
  const prefixed = key.startsWith(prefix);
  let native = prefixed ? key.slice(prefix.length) : key;
  if (provider === 'togetherai' && !prefixed) {
    skip('together_ai size-tier price (not a model)');
    continue;
  }
  if (provider === 'vertex' && e.litellm_provider === 'vertex_ai' && !/^(gemini|claude)-/.test(native)) {
    skip('plain vertex_ai entry that is neither Gemini nor Claude');
    continue;
  }
  if (provider === 'fireworks' && !native.startsWith('accounts/')) {
    // Short form of accounts/fireworks/{models,routers}/<name>; LiteLLM expands it to .../models/.
    const full = keys.find(
      (k) => k.startsWith('fireworks_ai/accounts/') && k.endsWith('/' + native) && table[k]?.mode === 'chat',
    );
    if (full) {
      skip('duplicate key (fireworks short form)');
      continue;
    }
    native = `accounts/fireworks/models/${native}`;
  }
  if (provider === 'google' && native.startsWith('deep-research')) {
    skip('Gemini agent served only by the Interactions API');
    continue;
  }
  if (SOURCE_REQUIRED.has(provider) && !has(e, 'source')) {
    skip(`${provider} entry without a source (not a model its API serves)`);
    continue;
  }
  if (!/^[\x21-\x7e]+$/.test(native) || /["\\]/.test(native)) throw new Error(`odd model name: ${key}`);
  // Preference among duplicate keys for one (provider, native id): for vertex the specific
  // litellm_provider over plain vertex_ai, then the bare key (LiteLLM's canonical vertex form);
  // elsewhere the prefixed key (LiteLLM's canonical form); then key order.
  const rank =
    provider === 'vertex' ? (e.litellm_provider === 'vertex_ai' ? 2 : 0) + (prefixed ? 1 : 0) : prefixed ? 0 : 1;
  candidates.push({ key, provider, native, e, rank });
}
// Duplicate keys that disagree on the price: the higher-priced row wins (input + output, then
// the cache prices), so that spend is not under-counted; otherwise the preferred key.
const sum = (c, fields) => fields.reduce((t, f) => t + Number(price(c.e, f) || 0), 0);
const pricier = (a, b) => {
  const d = sum(a, PRICE_FIELDS.slice(0, 2)) - sum(b, PRICE_FIELDS.slice(0, 2));
  return d !== 0 ? d > 0 : sum(a, PRICE_FIELDS.slice(2)) > sum(b, PRICE_FIELDS.slice(2));
};
const samePrice = (a, b) => PRICE_FIELDS.every((f) => price(a.e, f) === price(b.e, f));
const byNative = new Map();
const disagreeing = new Set();
for (const c of candidates) {
  const k = `${c.provider} ${c.native}`;
  const prev = byNative.get(k);
  if (prev && !samePrice(prev, c)) disagreeing.add(k);
  if (!prev || (samePrice(prev, c) ? c.rank < prev.rank : pricier(c, prev))) byNative.set(k, c);
}
if (candidates.length > byNative.size) {
  skipped['duplicate key (same provider and native id)'] = candidates.length - byNative.size;
}

const entries = [...byNative.values()].sort((a, b) => cmp(a.provider, b.provider) || cmp(a.native, b.native));

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Pass 2: assign model ids.
const models = new Map(); // id -> { id, ownedBy, offers: Map(provider -> entry) }
function addOffer(id, ownedBy, entry, native = entry.native) {
  let m = models.get(id);
  if (!m) models.set(id, (m = { id, ownedBy, offers: new Map() }));
  if (m.ownedBy !== ownedBy) throw new Error(`${id}: owned by both ${m.ownedBy} and ${ownedBy}`);
  if (m.offers.has(entry.provider)) throw new Error(`${id}: two ${entry.provider} offers`);
  m.offers.set(entry.provider, { ...entry, native });
}

// Claude: group by (provider, undated base).
const claude = new Map(); // base -> provider -> [{ entry, date, tag }]
for (const entry of entries) {
  const isClaude = entry.provider === 'anthropic' || (entry.provider === 'vertex' && entry.native.startsWith('claude-'));
  if (isClaude) {
    let base = entry.native.replace(/-v\d+:\d+$/, '');
    let date = null;
    let tag = null;
    let mm;
    if ((mm = /^(.+)@([^@]+)$/.exec(base))) {
      base = mm[1];
      if (/^\d{8}$/.test(mm[2])) date = mm[2];
      else tag = mm[2];
    } else if ((mm = /^(.+)-(\d{8})$/.exec(base))) {
      base = mm[1];
      date = mm[2];
    }
    if (!claude.has(base)) claude.set(base, new Map());
    const g = claude.get(base);
    if (!g.has(entry.provider)) g.set(entry.provider, []);
    g.get(entry.provider).push({ entry, date, tag });
    continue;
  }
  if (entry.provider === 'google' || entry.provider === 'vertex') {
    addOffer(`google/${entry.native}`, 'google', entry);
    continue;
  }
  addOffer(`${entry.provider}/${entry.native}`, guessCreator(entry.native) ?? entry.provider, entry);
}
for (const [base, byProvider] of claude) {
  for (const versions of byProvider.values()) {
    // The undated id points at the newest dated version; else the plain id; else a tagged
    // one (vertex `@default`).
    const dated = versions.filter((v) => v.date).sort((a, b) => cmp(b.date, a.date));
    const pick =
      dated[0] ?? versions.find((v) => !v.tag) ?? versions.sort((a, b) => cmp(a.entry.native, b.entry.native))[0];
    addOffer(`anthropic/${base}`, 'anthropic', pick.entry);
    for (const v of dated) addOffer(`anthropic/${base}-${v.date}`, 'anthropic', v.entry);
  }
}

// ---------------------------------------------------------------------------------------------
// Output

const q = (s) => {
  if (!/^[\x20-\x7e]*$/.test(s) || /["\\]/.test(s)) throw new Error(`cannot quote ${s}`);
  return `"${s}"`;
};
const sortedModels = [...models.values()].sort((a, b) => cmp(a.id, b.id));
const offerCounts = {};
const body = [];
for (const m of sortedModels) {
  const offers = [...m.offers.values()].sort(
    (a, b) => (b.provider === m.ownedBy) - (a.provider === m.ownedBy) || cmp(a.provider, b.provider),
  );
  const e = offers[0].e;
  const flags = [
    ['supports_function_calling', 't'],
    ['supports_vision', 'v'],
    ['supports_pdf_input', 'p'],
    ['supports_reasoning', 'r'],
  ]
    .filter(([f]) => e[f] === true)
    .map(([, c]) => c)
    .join('');
  const ctx = u32(e.max_input_tokens) || u32(e.max_tokens);
  const out = u32(e.max_output_tokens);
  body.push(`    m(${q(m.id)}, ${q(m.ownedBy)}, ${ctx}, ${out}, ${q(flags)}, &[`);
  for (const o of offers) {
    offerCounts[o.provider] = (offerCounts[o.provider] ?? 0) + 1;
    const p = PRICE_FIELDS.map((f) => q(price(o.e, f))).join(', ');
    body.push(`        o(${q(o.provider)}, ${q(o.native)}, ${p}),`);
  }
  body.push('    ]),');
}

const entryCounts = {};
for (const c of entries) entryCounts[c.provider] = (entryCounts[c.provider] ?? 0) + 1;
const ownerCounts = {};
for (const m of sortedModels) ownerCounts[m.ownedBy] = (ownerCounts[m.ownedBy] ?? 0) + 1;
const providerOrder = [...new Set(Object.values(PROVIDER))];
const pad = (s, n) => s + ' '.repeat(Math.max(0, n - s.length));

const header = [
  '// @generated by `node scripts/gen-catalog.mjs ../shared/data/model_prices.json` -- DO NOT EDIT.',
  '// Regenerate with that command; `npm test` runs it with --check when the table is present.',
  '//',
  `// Source: ${basename(inputPath)} (LiteLLM's model price table, https://github.com/BerriAI/litellm),`,
  `//   sha256 ${createHash('sha256').update(inputText).digest('hex')}`,
  '// Used under the MIT licence; the licence text is reproduced below and in MODEL_PRICES_LICENSE.',
  '//',
  `// Deprecation cut-off (--as-of): ${AS_OF}`,
  '// Kept: mode "chat" entries of the providers we serve, priced, not fine-tune templates, not',
  '// deprecated on or before the cut-off. Prices are USD per token, as plain decimal strings.',
  '//',
  `// ${sortedModels.length} models, ${entries.length} table entries kept, by provider (entries kept / offers here):`,
  ...providerOrder.map(
    (p) => `//   ${pad(p, 11)} ${String(entryCounts[p] ?? 0).padStart(4)} / ${String(offerCounts[p] ?? 0).padStart(4)}`,
  ),
  '// Models by owned_by:',
  ...Object.keys(ownerCounts)
    .sort()
    .map((p) => `//   ${pad(p, 11)} ${String(ownerCounts[p]).padStart(4)}`),
  '// Skipped entries of those providers:',
  ...Object.keys(skipped)
    .sort()
    .map((why) => `//   ${String(skipped[why]).padStart(4)}  ${why}`),
  `// Duplicate keys priced differently (the higher-priced row kept): ${disagreeing.size}`,
  '//',
  '// m(id, owned_by, context_window (0 = unknown), max_output_tokens (0 = unknown),',
  '//   capabilities: t = tools, v = vision, p = pdf input, r = reasoning, offers)',
  '// o(provider, native id, input, output, cache read, cache write ("" = not priced))',
  '//',
  '// ---- Licence of the source table ----',
  ...licenseText
    .replace(/\s+$/, '')
    .split('\n')
    .map((l) => (l.trim() ? `// ${l.replace(/\s+$/, '')}` : '//')),
  '',
  'use super::{m, o, Model};',
  '',
  '#[rustfmt::skip]',
  'pub(super) static MODELS: &[Model] = &[',
  ...body,
  '];',
  '',
];
const rs = header.join('\n');

const outputs = [
  [OUT_RS, rs],
  [OUT_LICENSE, licenseText],
];
if (check) {
  // Models whose retirement date has come since the cut-off: still listed until the catalog is
  // regenerated with --as-of=today (said, not failed: a date must not break the tests).
  const today = new Date().toISOString().slice(0, 10);
  const retired = entries.filter((c) => has(c.e, 'deprecation_date') && String(c.e.deprecation_date) <= today);
  if (retired.length) {
    const names = retired.map((c) => `${c.provider}/${c.native} (${c.e.deprecation_date})`);
    console.warn(
      `warning: ${retired.length} catalog entries have passed their retirement date: ${names.slice(0, 8).join(', ')}` +
        `${names.length > 8 ? ', …' : ''}; run: node scripts/gen-catalog.mjs --as-of=today`,
    );
  }
  const stale = outputs.filter(([p, text]) => !existsSync(p) || readFileSync(p, 'utf8') !== text);
  for (const [p] of stale) console.error(`${p.slice(ROOT.length + 1)} is out of date; run: node scripts/gen-catalog.mjs`);
  if (stale.length) process.exit(1);
  console.log(`catalog is up to date (${sortedModels.length} models)`);
} else {
  for (const [p, text] of outputs) writeFileSync(p, text);
  console.log(`wrote ${OUT_RS.slice(ROOT.length + 1)}: ${sortedModels.length} models, ${rs.length} bytes`);
}
