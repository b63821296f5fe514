// HTTP plumbing for the edge adapter, one call from wasm per step: header lists cross as one
// string ("name\nvalue\n…", values checked free of newlines on the Rust side) and become plain
// objects, which the runtime turns into headers natively (cheaper than `new Headers()` plus one
// `append` per entry); the inbound request's few fields come back as one string.

const headerObject = (flat) => {
  const out = {};
  if (!flat) return out;
  const parts = flat.split('\n');
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const name = parts[i];
    out[name] = name in out ? `${out[name]}, ${parts[i + 1]}` : parts[i + 1];
  }
  return out;
};

// method, url, then the headers the gateway reads ("" when absent; a preflight's requested
// headers only for OPTIONS), joined by newlines (none of them can hold one).
export function inbound(request) {
  const h = request.headers;
  return [
    request.method,
    request.url,
    h.get('authorization') ?? '',
    h.get('x-request-id') ?? '',
    h.get('origin') ?? '',
    h.get('content-length') ?? '',
    h.get('idempotency-key') ?? '',
    request.method === 'OPTIONS' ? (h.get('access-control-request-headers') ?? '') : '',
  ].join('\n');
}

// One attempt: a POST with an AbortController and a timer that aborts it after `timeoutMs`.
// Redirects are not followed (they would carry a provider key in `x-api-key` or
// `x-goog-api-key`, and the prompt, to whatever host they name): the core sees the 3xx.
// Returns [fetch promise, controller, timer id].
export function send(url, flatHeaders, body, timeoutMs) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const pending = fetch(url, {
    method: 'POST',
    headers: headerObject(flatHeaders),
    body,
    redirect: 'manual',
    signal: controller.signal,
  });
  return [pending, controller, timer];
}

// The response head the gateway reads: status, then content-type, retry-after, retry-after-ms,
// content-length, content-encoding.
export function responseHead(response) {
  const h = response.headers;
  return [
    response.status,
    h.get('content-type') ?? '',
    h.get('retry-after') ?? '',
    h.get('retry-after-ms') ?? '',
    h.get('content-length') ?? '',
    h.get('content-encoding') ?? '',
  ].join('\n');
}

// A whole body (of a Request or Response) of unknown length (none announced, or compressed),
// read chunk by chunk until it passes `max` bytes: then the rest is cancelled and the promise
// gives null. Read errors reject.
export async function readCapped(message, max) {
  if (!message.body) return new Uint8Array(0);
  const reader = message.body.getReader();
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      reader.cancel().catch(() => {});
      return null;
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

export function respond(status, flatHeaders, body) {
  return new Response(body, { status, headers: headerObject(flatHeaders) });
}
