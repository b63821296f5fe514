//! The Workers runtime adapter (wasm32 only): the fetch handler and the platform traits over
//! `fetch`, KV, `Date.now` and `crypto.getRandomValues`. No gateway logic lives here.
//!
//! The handler takes and returns raw `web_sys` objects, and each step that touches the runtime
//! is one call into `http.js` (read the request's fields, send an attempt, read a response head,
//! build the response): in workerd every JS API call costs, so the hot path makes few. Header
//! lists cross as plain objects, which the runtime converts natively.

mod body;
mod http;
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
            let config = Config::from_lookup(|name| {
                js_sys::Reflect::get(env, &JsValue::from_str(name))
                    .ok()
                    .and_then(binding_text)
            });
            // Once per isolate, where `wrangler tail` and the dashboard's logs show it: what
            // in the settings could not be used (variable names, never values).
            for warning in &config.warnings {
                worker::console_warn!("switchyard settings: {warning}");
            }
            Rc::new(Gateway::new(config))
        })
        .clone()
    })
}

/// A var as text: strings as they are; what wrangler.toml's `[vars]` turns into JSON (a TOML
/// number, boolean or table) as its JSON text, a list as its items joined by commas. Any other
/// binding (a KV namespace, a service, a Secrets Store secret) is no text: not taken.
fn binding_text(v: JsValue) -> Option<String> {
    if let Some(s) = v.as_string() {
        return Some(s);
    }
    // No setting is a boolean; a number must be one (not NaN or infinite).
    if let Some(n) = v.as_f64() {
        return n
            .is_finite()
            .then(|| js_sys::JSON::stringify(&v).ok()?.as_string())
            .flatten();
    }
    // A plain object's prototype is an empty object's (what JSON parsing makes).
    let plain_object = v.is_object()
        && js_sys::Object::is(
            &js_sys::Reflect::get_prototype_of(&v).ok()?.into(),
            &js_sys::Reflect::get_prototype_of(&js_sys::Object::new())
                .ok()?
                .into(),
        );
    if !js_sys::Array::is_array(&v) && !plain_object {
        return None;
    }
    if js_sys::Array::is_array(&v) {
        let items: Vec<String> = js_sys::Array::from(&v)
            .iter()
            .filter_map(|item| {
                item.as_string()
                    .or_else(|| js_sys::JSON::stringify(&item).ok()?.as_string())
            })
            .collect();
        return Some(items.join(","));
    }
    js_sys::JSON::stringify(&v).ok()?.as_string()
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

    fn now_source(&self) -> Rc<dyn Fn() -> u64> {
        Rc::new(|| js_sys::Date::now() as u64)
    }
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let gw = gateway(&env);
    let fields = http::inbound(&req);
    let [method, url, authorization, request_id, origin, content_length, idempotency_key, cors_request_headers] =
        crate::fields::split::<8>(&fields);
    let inbound = Inbound {
        method: method.unwrap_or("GET"),
        url: url.unwrap_or("/"),
        authorization,
        request_id,
        origin,
        content_length,
        idempotency_key,
        cors_request_headers,
    };
    let edge = Edge { env };
    // Aborted when the client goes away (the `enable_request_signal` compatibility flag).
    let client_gone = req.signal();
    let out = gw.handle(&edge, &inbound, body::RequestBody(req)).await;
    // Building the response cannot fail with values the core makes; were it to, the client
    // still gets an OpenAI-shaped error, not the runtime's error page.
    to_response(out, &ctx, &client_gone).or_else(|_| {
        let body = br#"{"error":{"message":"The gateway could not build its response.","type":"server_error","param":null,"code":"internal_error"}}"#;
        let headers = "content-type\napplication/json";
        Ok(http::respond(500, headers, &js_sys::Uint8Array::from(&body[..]).into())?)
    })
}

fn to_response(
    out: Outbound<upstream::EdgeBody>,
    ctx: &Context,
    client_gone: &web_sys::AbortSignal,
) -> worker::Result<web_sys::Response> {
    // Our own headers: a value with a line break cannot occur (request ids are sanitized,
    // the rest are ours); were one to, it is left out rather than failing the response.
    let headers = crate::fields::join_headers(
        out.headers
            .iter()
            .filter(|(_, v)| !v.contains(['\n', '\r']))
            .map(|(n, v)| (*n, v.as_str())),
    )
    .unwrap_or_default();
    let body: JsValue = match out.body {
        OutBody::Empty => JsValue::NULL,
        OutBody::Bytes(bytes) => js_sys::Uint8Array::from(bytes.as_slice()).into(),
        OutBody::Stream {
            prefix,
            body,
            transform,
            idle_timeout_ms,
        } => {
            let (stream, done) =
                body::client_stream(prefix, body, transform, idle_timeout_ms, client_gone)?;
            // Keep the request alive until the provider's stream is done with.
            ctx.wait_until(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(done).await;
            });
            stream.into()
        }
    };
    Ok(http::respond(out.status, &headers, &body)?)
}
