//! The Workers runtime adapter (wasm32 only): the fetch handler and the platform traits over
//! `fetch`, KV, `Date.now` and `crypto.getRandomValues`. No gateway logic lives here.
//!
//! The handler takes and returns raw `web_sys` objects: the per-request cost is the handful of
//! JS calls below (read five headers, read the body, one `fetch`, build one response), and a
//! provider's body is handed to the client as the runtime's own stream.

mod body;
mod kv;
mod upstream;

use crate::config::Config;
use crate::pipeline::{Gateway, Inbound, OutBody, Outbound};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{event, Context, Env};

/// The KV namespace binding (see wrangler.toml).
pub const KV_BINDING: &str = "SWITCHYARD_KV";

thread_local! {
    /// One gateway per isolate: configuration is read once, caches live across requests.
    static GATEWAY: std::cell::OnceCell<Rc<Gateway>> = const { std::cell::OnceCell::new() };
}

fn gateway(env: &Env) -> Rc<Gateway> {
    GATEWAY.with(|cell| {
        cell.get_or_init(|| {
            let env: &JsValue = env.as_ref();
            Rc::new(Gateway::new(Config::from_lookup(|name| {
                js_sys::Reflect::get(env, &JsValue::from_str(name))
                    .ok()
                    .and_then(|v| v.as_string())
            })))
        })
        .clone()
    })
}

/// The platform: clock, randomness, upstream fetch and KV, for one request.
pub struct Edge {
    env: Env,
}

impl crate::platform::Clock for Edge {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("crypto.getRandomValues is available in Workers");
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let gw = gateway(&env);
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let (authorization, request_id, origin, content_length, idempotency_key) = (
        header("authorization"),
        header("x-request-id"),
        header("origin"),
        header("content-length"),
        header("idempotency-key"),
    );
    let (method, url) = (req.method(), req.url());
    let inbound = Inbound {
        method: &method,
        url: &url,
        authorization: authorization.as_deref(),
        request_id: request_id.as_deref(),
        origin: origin.as_deref(),
        content_length: content_length.as_deref(),
        idempotency_key: idempotency_key.as_deref(),
    };
    let edge = Edge { env };
    let out = gw.handle(&edge, &inbound, body::RequestBody(req)).await;
    to_response(out, &ctx)
}

fn to_response(
    out: Outbound<upstream::EdgeBody>,
    ctx: &Context,
) -> worker::Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in &out.headers {
        headers.append(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(out.status);
    init.set_headers(&headers);
    let resp = match out.body {
        OutBody::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        OutBody::Bytes(bytes) => {
            let array = js_sys::Uint8Array::from(bytes.as_slice());
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&array), &init)?
        }
        OutBody::Stream {
            prefix,
            body,
            transform,
        } => {
            let (stream, done) = body::client_stream(prefix, body, transform)?;
            // Keep the request alive until the provider's stream is done with.
            ctx.wait_until(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(done).await;
            });
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)?
        }
    };
    Ok(resp)
}
