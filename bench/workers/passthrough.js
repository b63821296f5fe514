// JavaScript pass-through floor: forwards the request (method, headers, body stream) to the
// upstream at the same path and returns the upstream's response as is.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM + url.pathname + url.search, request);
  },
};
