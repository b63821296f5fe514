// JavaScript pass-through Workers shaped like parts of the gateway, the floors that say what a
// design costs in workerd before any gateway logic runs. The upstream is called at the same path,
// without the query; `?via=` picks the shape for a streamed body:
//   transform (default)  upstream.body.pipeThrough(new TransformStream({ transform: enqueue }))
//   loop                 a JS read loop writing each chunk into an IdentityTransformStream (the
//                        gateway's shape: JS sees every chunk and can add bytes anywhere)
//   tee-read             the body is tee'd: one branch is the response (native), JS reads every
//                        chunk of the other and drops it (the least any per-chunk scan costs)
//   tee-native           the body is tee'd: one branch is the response, the other is collected
//                        natively (new Response(branch).arrayBuffer()): no JS per chunk
//   pipe                 upstream.body.pipeTo(IdentityTransformStream, preventClose) natively, then
//                        JS closes it (the shape for "append bytes when the stream ends")
//   tee-pipe             tee-native's copy + pipe's append (a stream judged at its end)
// and `?shape=contract` (JSON) does in JavaScript the runtime calls the gateway's JSON contract
// needs: read the request's headers and body, fetch with an AbortController and a timer, read the
// response head and body, answer with a new Response and six headers (as a plain object).
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.searchParams.get('shape') === 'contract') return contract(request, env, url);
    const upstream = await fetch(env.UPSTREAM + url.pathname, request);
    if (!upstream.body) return upstream;
    const via = url.searchParams.get('via');
    if (via === 'loop') {
      const { readable, writable } = new IdentityTransformStream();
      ctx.waitUntil((async () => {
        const writer = writable.getWriter();
        const reader = upstream.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          await writer.write(value);
        }
        await writer.close();
      })());
      return new Response(readable, upstream);
    }
    if (via === 'tee-read' || via === 'tee-native') {
      const [a, b] = upstream.body.tee();
      if (via === 'tee-native') {
        ctx.waitUntil(new Response(b).arrayBuffer());
      } else {
        ctx.waitUntil((async () => {
          const reader = b.getReader();
          let n = 0;
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            n += value.byteLength;
          }
          return n;
        })());
      }
      return new Response(a, upstream);
    }
    if (via === 'pipe' || via === 'tee-pipe') {
      const { readable, writable } = new IdentityTransformStream();
      let source = upstream.body;
      if (via === 'tee-pipe') {
        const [a, b] = source.tee();
        ctx.waitUntil(new Response(b).arrayBuffer());
        source = a;
      }
      ctx.waitUntil((async () => {
        await source.pipeTo(writable, { preventClose: true });
        await writable.getWriter().close();
      })());
      return new Response(readable, upstream);
    }
    const body = upstream.body.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, upstream);
  },
};

async function contract(request, env, url) {
  const h = request.headers;
  const got = [h.get('authorization'), h.get('x-request-id'), h.get('origin'), h.get('content-length'), h.get('idempotency-key'), request.method, request.url];
  const body = new Uint8Array(await request.arrayBuffer());
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 120000);
  const upstream = await fetch(env.UPSTREAM + url.pathname, {
    method: 'POST',
    headers: { authorization: got[0], 'content-type': 'application/json' },
    body,
    signal: abort.signal,
  });
  const uh = upstream.headers;
  const head = [upstream.status, uh.get('content-type'), uh.get('retry-after'), uh.get('retry-after-ms')];
  const out = new Uint8Array(await upstream.arrayBuffer());
  clearTimeout(timer);
  return new Response(out, {
    status: head[0],
    headers: {
      'content-type': 'application/json',
      'x-switchyard-provider': 'openai',
      'x-switchyard-attempts': 'openai:200',
      'x-generation-id': 'gen_01ABCDEF',
      'x-request-id': 'req_01ABCDEF',
      vary: 'origin',
    },
  });
}
