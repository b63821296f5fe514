// Helpers the integration suites share: a fetch that records what the gateway answered (for the
// checks that no secret ever reaches a client) and the OpenAI error-shape assertions.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

/** A fetch that appends each response (url, status, headers, body text as the caller reads it)
 * to `responses`. Streams are tapped, not buffered. */
export function recordingFetchInto(responses) {
  return async function recordingFetch(input, init) {
    const res = await fetch(input, init);
    const entry = { url: String(input?.url ?? input), status: res.status, headers: [...res.headers], body: '' };
    responses.push(entry);
    if (!res.body) return res;
    if (!(res.headers.get('content-type') ?? '').includes('event-stream')) {
      entry.body = await res.clone().text();
      return res;
    }
    const decoder = new TextDecoder();
    const tap = new TransformStream({
      transform(chunk, controller) {
        entry.body += decoder.decode(chunk, { stream: true });
        controller.enqueue(chunk);
      },
    });
    return new Response(res.body.pipeThrough(tap), { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** The OpenAI error shape: {"error":{"message","type","param","code"}}. */
export function assertOpenAIError(json, status) {
  assert.ok(json && typeof json === 'object', `HTTP ${status}: body is JSON`);
  assert.ok(json.error && typeof json.error === 'object', `HTTP ${status}: body has an "error" object: ${JSON.stringify(json)}`);
  assert.equal(typeof json.error.message, 'string', 'error.message is a string');
  assert.ok(json.error.message.length > 0, 'error.message is not empty');
  assert.equal(typeof json.error.type, 'string', 'error.type is a string');
  assert.ok('param' in json.error, 'error.param is present (null allowed)');
  assert.ok('code' in json.error, 'error.code is present (null allowed)');
}

/** Awaits a promise expected to reject with an OpenAI APIError of that status, in OpenAI's shape. */
export async function apiError(promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `expected an APIError, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, status, `HTTP status (message: ${err.message})`);
    assertOpenAIError({ error: err.error }, status);
    return err;
  }
  assert.fail(`expected HTTP ${status}, the request succeeded`);
}
