// In-memory KV service for raw workerd. A `kvNamespace` binding sends this service the KV HTTP
// protocol (as Miniflare's KV worker implements it):
//   GET    /<key>?urlencoded=true        value (404 if absent), metadata in `CF-KV-Metadata`
//   PUT    /<key>?urlencoded=true        body = value, `CF-KV-Metadata` = JSON metadata,
//                                       `expiration` / `expiration_ttl` query parameters
//   DELETE /<key>?urlencoded=true
//   GET    /?prefix=&cursor=&key_count_limit=   {keys:[{name,expiration?,metadata?}], list_complete, cursor?}
//                                       (metadata as a JSON-serialised string, as workerd expects)
// Expiry is honoured lazily. State lives as long as the isolate (one benchmark run).
const store = new Map(); // key -> { value: ArrayBuffer, metadata: string|null, expiration: number|null }
let hits = { get: 0, put: 0, delete: 0, list: 0 };

// workerd sends `?urlencoded=true` with the key percent-encoded; `new URL` keeps the escapes.
function keyOf(url) {
  return decodeURIComponent(url.pathname.slice(1));
}

function live(entry) {
  return entry && (entry.expiration == null || entry.expiration * 1000 > Date.now());
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const method = request.method;
    if (url.pathname === '/__stats') return Response.json({ size: store.size, hits });
    if (method === 'GET' && url.pathname === '/') {
      hits.list++;
      const prefix = url.searchParams.get('prefix') ?? '';
      const cursor = url.searchParams.get('cursor');
      const limit = Math.min(1000, Number(url.searchParams.get('key_count_limit') ?? 1000) || 1000);
      const names = [...store.keys()].filter((k) => k.startsWith(prefix) && live(store.get(k))).sort();
      const after = cursor ? decodeURIComponent(cursor) : null;
      const start = after === null ? 0 : names.findIndex((k) => k > after);
      const page = start < 0 ? [] : names.slice(start, start + limit);
      const complete = start < 0 || start + limit >= names.length;
      const keys = page.map((name) => {
        const e = store.get(name);
        const k = { name };
        if (e.expiration != null) k.expiration = e.expiration;
        if (e.metadata != null) k.metadata = e.metadata;
        return k;
      });
      const body = { keys, list_complete: complete, cacheStatus: null };
      if (!complete) body.cursor = encodeURIComponent(page[page.length - 1]);
      return Response.json(body);
    }
    const key = keyOf(url);
    if (!key) return new Response('Key names must not be empty', { status: 400 });
    if (method === 'GET') {
      hits.get++;
      const e = store.get(key);
      if (!live(e)) return new Response('Not Found', { status: 404 });
      const headers = new Headers();
      if (e.metadata != null) headers.set('CF-KV-Metadata', e.metadata);
      if (e.expiration != null) headers.set('CF-Expiration', String(e.expiration));
      return new Response(e.value, { headers });
    }
    if (method === 'PUT') {
      hits.put++;
      const value = await request.arrayBuffer();
      const metadata = request.headers.get('CF-KV-Metadata');
      const ttl = url.searchParams.get('expiration_ttl');
      const exp = url.searchParams.get('expiration');
      const expiration = ttl ? Math.floor(Date.now() / 1000) + Number(ttl) : exp ? Number(exp) : null;
      store.set(key, { value, metadata, expiration });
      return new Response(null);
    }
    if (method === 'DELETE') {
      hits.delete++;
      store.delete(key);
      return new Response(null);
    }
    return new Response('Method not allowed', { status: 405 });
  },
};
