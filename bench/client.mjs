// A small closed-loop HTTP/1.1 load client on raw sockets, for latency percentiles and stream
// timings. Each of `connections` keep-alive connections sends one request, reads the whole
// response (Content-Length or chunked), records the times, and sends the next, until the
// duration is over. Latency is taken per request from just before the write to the last byte,
// so average latency × requests ÷ connections ≈ run time (checked and reported as `consistency`).
// For each request it also records the time to the first response byte, and (for event streams)
// to the first complete event (the first blank line in the body).
import net from 'node:net';

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

export function requestBytes({ port, path, headers = {}, body = '' }) {
  const b = Buffer.from(body);
  let head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  for (const [k, v] of Object.entries({ 'content-type': 'application/json', ...headers })) head += `${k}: ${v}\r\n`;
  head += `content-length: ${b.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), b]);
}

class Conn {
  constructor(port) {
    this.port = port;
    this.pending = null;
  }
  open() {
    return new Promise((resolve, reject) => {
      this.sock = net.connect({ port: this.port, host: '127.0.0.1', noDelay: true }, resolve);
      this.sock.once('error', reject);
      this.sock.on('data', (d) => this.onData(d));
      this.sock.on('close', () => {
        if (this.pending) {
          const p = this.pending;
          this.pending = null;
          p.reject(new Error('connection closed mid-response'));
        }
      });
    });
  }
  send(bytes) {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, t0: now(), head: null, tFirst: 0, tEvent: 0, status: 0, bodyBytes: 0, state: 'head', prevNl: false };
      this.sock.write(bytes);
    });
  }
  onData(d) {
    const p = this.pending;
    if (!p) return;
    const t = now();
    if (!p.tFirst) p.tFirst = t;
    let buf = d;
    if (p.state === 'head') {
      buf = p.head ? Buffer.concat([p.head, d]) : d;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        p.head = buf;
        return;
      }
      const head = buf.toString('latin1', 0, end).toLowerCase();
      p.status = Number(head.slice(9, 12));
      const cl = /\r\ncontent-length:\s*(\d+)/.exec(head);
      p.chunked = /\r\ntransfer-encoding:[^\r]*chunked/.test(head);
      p.remaining = cl ? Number(cl[1]) : p.chunked ? 0 : -1;
      p.state = p.chunked ? 'size' : 'body';
      p.sizeLine = '';
      buf = buf.subarray(end + 4);
      if (!p.chunked && p.remaining === 0) return this.done(t);
    }
    this.body(buf, t);
  }
  payload(b, t) {
    const p = this.pending;
    p.bodyBytes += b.length;
    if (p.tEvent || b.length === 0) return;
    if ((p.prevNl && b[0] === 10) || b.indexOf('\n\n') >= 0 || b.indexOf('\r\n\r\n') >= 0) p.tEvent = t;
    p.prevNl = b[b.length - 1] === 10;
  }
  body(buf, t) {
    const p = this.pending;
    let i = 0;
    while (i < buf.length) {
      if (p.state === 'body') {
        const n = p.remaining < 0 ? buf.length - i : Math.min(p.remaining, buf.length - i);
        this.payload(buf.subarray(i, i + n), t);
        i += n;
        if (p.remaining >= 0) {
          p.remaining -= n;
          if (p.remaining === 0) return this.done(t);
        }
      } else if (p.state === 'size') {
        const nl = buf.indexOf(10, i);
        if (nl < 0) {
          p.sizeLine += buf.toString('latin1', i);
          return;
        }
        p.sizeLine += buf.toString('latin1', i, nl);
        i = nl + 1;
        const size = parseInt(p.sizeLine, 16);
        p.sizeLine = '';
        if (size === 0) {
          p.state = 'trailer';
          p.trail = 0;
        } else {
          p.state = 'data';
          p.remaining = size;
        }
      } else if (p.state === 'data') {
        const n = Math.min(p.remaining, buf.length - i);
        this.payload(buf.subarray(i, i + n), t);
        i += n;
        p.remaining -= n;
        if (p.remaining === 0) {
          p.state = 'crlf';
          p.skip = 2;
        }
      } else if (p.state === 'crlf') {
        const n = Math.min(p.skip, buf.length - i);
        i += n;
        p.skip -= n;
        if (p.skip === 0) p.state = 'size';
      } else if (p.state === 'trailer') {
        // no trailers expected: the final CRLF ends the response
        const nl = buf.indexOf(10, i);
        if (nl < 0) return;
        return this.done(t);
      }
    }
  }
  done(t) {
    const p = this.pending;
    this.pending = null;
    p.resolve({ status: p.status, total: t - p.t0, ttfb: p.tFirst - p.t0, firstEvent: p.tEvent ? p.tEvent - p.t0 : null, bodyBytes: p.bodyBytes });
  }
  close() {
    this.sock?.destroy();
  }
}

/** One request on a fresh connection; resolves with status, body text and timings. */
export async function once({ port, path, headers, body }) {
  const c = new Conn(port);
  await c.open();
  const chunks = [];
  const orig = c.payload.bind(c);
  c.payload = (b, t) => {
    chunks.push(Buffer.from(b));
    orig(b, t);
  };
  try {
    const r = await c.send(requestBytes({ port, path, headers, body }));
    return { ...r, text: Buffer.concat(chunks).toString('utf8') };
  } finally {
    c.close();
  }
}

function pct(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * Closed-loop run. Returns requests, errors (non-2xx or broken), req/s, latency stats (ms), the
 * consistency ratio, and for c = 1 the median/p99 of ttfb, first event and last byte.
 */
export async function run({ port, path, headers, body, connections = 1, durationMs = 5000, onStart }) {
  const bytes = requestBytes({ port, path, headers, body });
  const conns = [];
  for (let i = 0; i < connections; i++) {
    const c = new Conn(port);
    await c.open();
    conns.push(c);
  }
  const lat = [];
  const ttfb = [];
  const firstEvent = [];
  let errors = 0;
  let lastStatus = 0;
  onStart?.();
  const t0 = now();
  const deadline = t0 + durationMs;
  await Promise.all(
    conns.map(async (c) => {
      while (now() < deadline) {
        let r;
        try {
          r = await c.send(bytes);
        } catch {
          errors++;
          return;
        }
        if (r.status < 200 || r.status >= 300) {
          errors++;
          lastStatus = r.status;
        }
        lat.push(r.total);
        ttfb.push(r.ttfb);
        if (r.firstEvent !== null) firstEvent.push(r.firstEvent);
      }
    }),
  );
  const elapsed = now() - t0;
  conns.forEach((c) => c.close());
  const sorted = Float64Array.from(lat).sort();
  const sum = lat.reduce((a, b) => a + b, 0);
  const s = (arr) => Float64Array.from(arr).sort();
  const tt = s(ttfb);
  const fe = s(firstEvent);
  return {
    requests: lat.length,
    errors,
    lastStatus,
    elapsedMs: elapsed,
    rps: lat.length / (elapsed / 1000),
    avg: sum / lat.length,
    p50: pct(sorted, 0.5),
    p99: pct(sorted, 0.99),
    max: sorted[sorted.length - 1],
    consistency: sum / connections / elapsed,
    ttfbP50: pct(tt, 0.5),
    ttfbP99: pct(tt, 0.99),
    firstEventP50: pct(fe, 0.5),
    firstEventP99: pct(fe, 0.99),
  };
}
