// Smoke test with the official OpenAI *Python* SDK: tests/python/smoke.py runs against the built
// worker (harness.mjs) backed by the upstream emulator. The SDK is installed once, pinned, into a
// venv under node_modules/.cache/pyvenv (tests/python/requirements.txt). Skipped (saying why) only when python3 is not installed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmulator } from './emulator.mjs';
import { startGateway, PROVIDER_KEYS } from './harness.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The pinned SDK (with its dependencies in tests/python/requirements.txt). */
export const OPENAI_PYTHON_VERSION = '1.109.1';
const REQUIREMENTS = join(ROOT, 'tests', 'python', 'requirements.txt');
const VENV = join(ROOT, 'node_modules', '.cache', 'pyvenv');
const VENV_PYTHON = process.platform === 'win32' ? join(VENV, 'Scripts', 'python.exe') : join(VENV, 'bin', 'python');
const INSTALLED = join(VENV, 'switchyard-requirements.txt');
const SMOKE = join(ROOT, 'tests', 'python', 'smoke.py');
const ERRORS = join(ROOT, 'tests', 'python', 'errors.py');

/** Runs a command without blocking the event loop (the emulator and workerd live in this process). */
function run(cmd, args, { env, timeoutMs = 120_000 } = {}) {
  return new Promise((resolvePromise) => {
    let stdout = '';
    let stderr = '';
    let child;
    try {
      child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      resolvePromise({ code: null, stdout, stderr, error });
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (error) => {
      clearTimeout(timer);
      resolvePromise({ code: null, stdout, stderr, error });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

const python3 = await run('python3', ['--version'], { timeoutMs: 10_000 });
// Debian's python3 without python3-venv cannot make a venv with pip (no ensurepip).
const venvable = python3.code === 0 && (await run('python3', ['-c', 'import venv, ensurepip'], { timeoutMs: 10_000 })).code === 0;
const skip =
  python3.error?.code === 'ENOENT' || python3.code !== 0
    ? `python3 is not installed (${python3.error?.message ?? python3.stderr.trim()}): the Python SDK smoke test needs it`
    : !venvable
      ? 'python3 cannot make a virtual environment with pip (on Debian/Ubuntu install python3-venv): the Python SDK smoke test needs one'
      : false;

/** Creates the venv and installs the pinned SDK, unless that exact set is already there. */
async function ensureSdk() {
  const wanted = readFileSync(REQUIREMENTS, 'utf8');
  if (existsSync(VENV_PYTHON) && existsSync(INSTALLED) && readFileSync(INSTALLED, 'utf8') === wanted) return;
  // A venv without pip (Debian's python3 without python3-venv leaves one behind) is made again.
  if (existsSync(VENV_PYTHON) && (await run(VENV_PYTHON, ['-m', 'pip', '--version'], { timeoutMs: 30_000 })).code !== 0) {
    rmSync(VENV, { recursive: true, force: true });
  }
  if (!existsSync(VENV_PYTHON)) {
    const venv = await run('python3', ['-m', 'venv', VENV]);
    if (venv.code !== 0) rmSync(VENV, { recursive: true, force: true });
    assert.equal(venv.code, 0, `python3 -m venv ${VENV} failed (on Debian/Ubuntu install python3-venv):\n${venv.stderr}${venv.stdout}`);
  }
  const pip = await run(VENV_PYTHON, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', REQUIREMENTS], {
    timeoutMs: 300_000,
  });
  assert.equal(pip.code, 0, `pip install -r tests/python/requirements.txt failed:\n${pip.stderr}${pip.stdout}`);
  const pinned = ['-c', `import openai, sys; sys.exit(0 if openai.__version__ == '${OPENAI_PYTHON_VERSION}' else 1)`];
  const check = await run(VENV_PYTHON, pinned, { timeoutMs: 30_000 });
  assert.equal(check.code, 0, `openai ${OPENAI_PYTHON_VERSION} is not importable from the venv:\n${check.stderr}`);
  writeFileSync(INSTALLED, wanted);
}

let emu;
let gw;

before(async () => {
  if (skip) return;
  await ensureSdk();
  emu = await startEmulator();
  gw = await startGateway({ emulatorUrl: emu.url });
});

after(async () => {
  await gw?.dispose();
  await emu?.close();
});

test(`official Python SDK (openai==${OPENAI_PYTHON_VERSION}): models, chat and streams through OpenAI and Anthropic`, { skip }, async () => {
  const key = await gw.createKey('python-sdk');
  const result = await run(VENV_PYTHON, [SMOKE], {
    env: { SWITCHYARD_BASE_URL: `${gw.url}/v1`, SWITCHYARD_API_KEY: key, PYTHONUNBUFFERED: '1', OPENAI_LOG: '' },
    timeoutMs: 120_000,
  });
  assert.equal(result.code, 0, `smoke.py exited with ${result.code ?? result.signal}:\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  assert.match(result.stdout, /all checks passed/);

  // Both providers were really reached, each in its own protocol, with its own key.
  const openai = emu.requests.filter((r) => r.protocol === 'openai');
  const anthropic = emu.requests.filter((r) => r.protocol === 'anthropic');
  // Per provider: one non-streamed request, then three streams (with usage, without, and
  // through the SDK's stream helper).
  assert.deepEqual(openai.map((r) => [r.path, r.body.model, r.body.stream ?? false]), [
    ['/v1/chat/completions', 'gpt-4o', false],
    ['/v1/chat/completions', 'gpt-4o', true],
    ['/v1/chat/completions', 'gpt-4o', true],
    ['/v1/chat/completions', 'gpt-4o', true],
  ]);
  assert.deepEqual(anthropic.map((r) => [r.path, r.body.model, r.body.stream ?? false]), [
    ['/v1/messages', 'claude-sonnet-4-6', false],
    ['/v1/messages', 'claude-sonnet-4-6', true],
    ['/v1/messages', 'claude-sonnet-4-6', true],
    ['/v1/messages', 'claude-sonnet-4-6', true],
  ]);
  assert.equal(openai[0].headers.authorization, `Bearer ${PROVIDER_KEYS.openai}`);
  assert.equal(anthropic[0].headers['x-api-key'], PROVIDER_KEYS.anthropic);
});

test(`official Python SDK (openai==${OPENAI_PYTHON_VERSION}): rate limits, a stream cut after content, a final error not retried`, { skip }, async () => {
  emu.reset();
  const key = await gw.createKey('python-sdk-errors');
  emu.script(
    { match: { model: 'gpt-4o' }, status: 429, headers: { 'retry-after': '1' }, times: 2 },
    { match: { path: '/v1/messages' }, errorAfter: 5 },
    { match: { model: 'gpt-4o' }, body: `{"id":"huge","object":"chat.completion","pad":"${'x'.repeat(25 * 1024 * 1024)}"}`, headers: { 'content-type': 'application/json' }, persistent: true },
  );
  const result = await run(VENV_PYTHON, [ERRORS], {
    env: { SWITCHYARD_BASE_URL: `${gw.url}/v1`, SWITCHYARD_API_KEY: key, PYTHONUNBUFFERED: '1', OPENAI_LOG: '' },
    timeoutMs: 120_000,
  });
  assert.equal(result.code, 0, `errors.py exited with ${result.code ?? result.signal}:\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  assert.match(result.stdout, /all checks passed/);
  const calls = emu.requests.map((r) => r.protocol);
  assert.deepEqual(calls, ['openai', 'openai', 'anthropic', 'openai'], 'the rate limit tried twice by the gateway, the final error once: the SDK retried nothing');
});
