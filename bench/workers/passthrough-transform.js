// JS pass-through Workers that see every chunk of the response body in JavaScript, with the chunk
// passed on unchanged: the floors for any Worker (or wasm) that must look at each chunk, beside
// the plain pass-through whose body workerd pumps natively. `?via=` picks the shape:
//   transform (default)  upstream.body.pipeThrough(new TransformStream({ transform: enqueue }))
//   loop                 a JS read loop writing into an IdentityTransformStream (a native stream)
// The upstream is called at the same path, without the query.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstream = await fetch(env.UPSTREAM + url.pathname, request);
    if (!upstream.body) return upstream;
    if (url.searchParams.get('via') === 'loop') {
      const { readable, writable } = new IdentityTransformStream();
      (async () => {
        const writer = writable.getWriter();
        const reader = upstream.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          await writer.write(value);
        }
        await writer.close();
      })();
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
