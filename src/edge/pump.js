// The end of a stream whose pump itself failed (see the catch below).
const FAILED_TAIL = new TextEncoder().encode(
  'data: {"error":{"message":"The gateway failed while streaming this answer.","type":"server_error","param":null,"code":"internal_error"}}\n\ndata: [DONE]\n\n',
);

// How long, once the client's stream is complete, the rest of the provider's body (its
// terminating chunk, as a rule already on its way) is waited for: a body read to its end lets
// its connection serve the next request, one cancelled closes it. One that has not ended by
// then (a provider holding its connection open) is cancelled.
const DRAIN_MS = 1000;
// How long the client's end waits for the provider's (see below).
const END_WAIT_MS = 50;

async function drainRest(reader) {
  const timer = setTimeout(() => reader.cancel().catch(() => {}), DRAIN_MS);
  try {
    while (!(await reader.read()).done);
  } catch {
    // (cancelled, or broken: nothing to keep)
  } finally {
    clearTimeout(timer);
  }
}

// The provider's body of an answer that was complete in its first read (see `drainRest`).
export function drainBody(source) {
  try {
    return drainRest(source.getReader());
  } catch {
    return Promise.resolve();
  }
}

// Cancels a provider's body (which closes its connection: it is mid-answer), whatever that answers.
export function letGo(source) {
  try {
    source.cancel().catch(() => {});
  } catch {
    // (locked or gone: nothing to let go)
  }
}

// Moves a provider's stream to the client: each chunk read from `source` goes through
// `onChunk` (one synchronous call into the core; it returns the bytes to send, undefined to
// send the chunk unchanged, or `[bytes or undefined, cutShort]` when those complete the
// client's stream: it is closed as soon as the provider's body ends (END_WAIT_MS at most), and
// what is left of the provider's is read and dropped for at most DRAIN_MS, then cancelled, or
// cancelled at once when the gateway cut the stream short) into workerd's
// native IdentityTransformStream, whose readable side is the response body. `onEnd(error)`
// gives the stream's closing bytes (error: undefined for a clean end, null when the provider
// went quiet, else a message). `onDone()` runs once, last. A client that goes away (a write
// fails, or `clientGone`, the inbound request's signal, fires: at once, also while the
// provider is quiet) has the reader cancelled, which cancels the provider's request, and
// `onEnd` is not called. A provider that sends nothing for `idleMs` while the loop waits on it
// (0: no limit; time spent waiting for the client to take a chunk does not count) is cancelled
// and the stream ends through `onEnd(null)`: timed out. One timer per stream, re-armed only
// when it fires.
export function pump(source, prefix, onChunk, onEnd, onDone, clientGone, idleMs) {
  let out, writer, reader;
  try {
    out = new IdentityTransformStream();
    writer = out.writable.getWriter();
    reader = source.getReader();
  } catch (e) {
    // Not even set up (the provider's body unreadable): the client still gets what was read,
    // an error event and [DONE], and the callbacks are freed.
    try { source.cancel(e).catch(() => {}); } catch {}
    onDone();
    // (A short answer may have ended within the prefix already.)
    const ended = new TextDecoder().decode(prefix.subarray(-16)).endsWith('[DONE]\n\n');
    const failed = new Response(new Blob(ended ? [prefix] : [prefix, FAILED_TAIL])).body;
    return [failed, Promise.resolve()];
  }
  // The client went away (its request's signal, or the response body cancelled): stop reading,
  // which cancels the provider's request, and end nothing (no one to send it to; the core
  // frees the stream as one that was being served).
  let left = false;
  const leave = (reason) => {
    left = true;
    reader.cancel(reason).catch(() => {});
  };
  if (clientGone?.aborted) leave(clientGone.reason);
  else clientGone?.addEventListener('abort', () => leave(clientGone.reason), { once: true });
  writer.closed.catch(leave);
  // The core's own failures are logged where `wrangler tail` shows them (the client only gets
  // a generic error event); a write to a client that left is no failure.
  const core = (f, arg) => {
    try {
      return f(arg);
    } catch (e) {
      console.error('switchyard: the stream transform failed:', e);
      throw e;
    }
  };
  // One write per chunk, awaited: the next read waits until the client side has taken it.
  const write = (bytes) => (bytes.byteLength ? writer.write(bytes) : undefined);
  // When the pending read was issued (0: no read pending), and whether the idle timer fired.
  let waitingSince = 0, stalled = false, idle;
  const watch = () => {
    const left = waitingSince ? waitingSince + idleMs - Date.now() : idleMs;
    if (left > 0) {
      idle = setTimeout(watch, left);
      return;
    }
    stalled = true;
    reader.cancel(new Error('the provider sent nothing for too long')).catch(() => {});
  };
  if (idleMs > 0) idle = setTimeout(watch, idleMs);
  const done = (async () => {
    let ended = false, complete = false;
    try {
      await write(prefix);
      for (;;) {
        let next;
        try {
          waitingSince = Date.now();
          next = await reader.read();
        } catch (e) {
          ended = true;
          if (!left) await write(core(onEnd, stalled ? null : String((e && e.message) || e || 'the stream broke')));
          break;
        }
        waitingSince = 0;
        if (stalled) {
          ended = true; // (should the cancelled read report a plain end rather than reject)
          if (!left) await write(core(onEnd, null));
          break;
        }
        if (next.done) break;
        const bytes = core(onChunk, next.value);
        if (Array.isArray(bytes)) {
          ended = true; // nothing more to send
          if (bytes[1]) reader.cancel().catch(() => {});
          else complete = true;
          await write(bytes[0] ?? next.value);
          break;
        }
        await write(bytes === undefined ? next.value : bytes);
      }
      if (left) return writer.close().catch(() => {});
      if (!ended) await write(core(onEnd, undefined));
      if (complete) {
        clearTimeout(idle);
        // The provider's own end follows its last event at once, as a rule: wait for it (at
        // most END_WAIT_MS) before ending the client's stream, so that the connection is back
        // for the client's next request; a provider that holds it open holds no one.
        const drained = drainRest(reader);
        let waited;
        await Promise.race([drained, new Promise((r) => (waited = setTimeout(r, END_WAIT_MS)))]);
        clearTimeout(waited);
        await writer.close();
        await drained;
      } else {
        await writer.close();
      }
    } catch (e) {
      try { await reader.cancel(e); } catch {}
      // Not a silent cut even here: if the client's side still takes bytes, end the stream
      // with an error event and [DONE] (written by JavaScript: the core may be what failed).
      try {
        await writer.write(FAILED_TAIL);
        await writer.close();
      } catch {
        try { await writer.abort(e); } catch {}
      }
    } finally {
      clearTimeout(idle);
      onDone();
    }
  })();
  return [out.readable, done];
}
