// Fixed-response floor: reads the request body (as the gateway must) and answers with the same
// bytes the upstream would send, without any fetch. The bodies come from text bindings.
export default {
  async fetch(request, env) {
    const text = await request.text();
    const stream = text.includes('"stream":true');
    return new Response(stream ? env.FIXED_SSE : env.FIXED_JSON, {
      headers: { 'content-type': stream ? 'text/event-stream; charset=utf-8' : 'application/json' },
    });
  },
};
