//! Bodies: the inbound request's, and provider streams on their way to the client.

use super::upstream::EdgeBody;
use crate::error::GatewayError;
use crate::platform::{FetchError, InboundBody, StreamTransform};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub struct RequestBody(pub web_sys::Request);

impl InboundBody for RequestBody {
    async fn read(
        self,
        max_bytes: usize,
        declared: Option<u64>,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let unreadable = |_| GatewayError::invalid_request("The request body could not be read.");
        let promise = if declared.is_some() {
            // Announced within the limit: one native read (the runtime holds it to that length).
            self.0.array_buffer().map_err(unreadable)?
        } else {
            // Sent chunked: read in JavaScript, up to the limit.
            super::http::read_capped(self.0.as_ref(), max_bytes as f64)
        };
        let buf = JsFuture::from(promise).await.map_err(unreadable)?;
        Ok((!buf.is_null()).then(|| js_sys::Uint8Array::new(&buf).to_vec()))
    }
}

/// The pump's marker for the bytes that complete the client's stream: `[bytes, cutShort]` (it
/// closes the client's stream after them, even if the provider holds its connection open, and
/// reads the rest of the provider's body for its connection's sake, or lets it go at once).
fn last_bytes(bytes: &JsValue, t: &dyn StreamTransform) -> JsValue {
    js_sys::Array::of2(bytes, &JsValue::from_bool(!t.drain_provider())).into()
}

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/edge/pump.js")]
extern "C" {
    /// See `pump.js`: reads what is left of a provider's body, for at most a second.
    #[wasm_bindgen(js_name = drainBody)]
    fn drain_body(source: &web_sys::ReadableStream) -> js_sys::Promise;
    /// See `pump.js`: cancels a provider's body, whatever that answers.
    #[wasm_bindgen(js_name = letGo)]
    fn let_go(source: &web_sys::ReadableStream);
    /// See `pump.js`: returns `[readable, done]`.
    fn pump(
        source: &web_sys::ReadableStream,
        prefix: &js_sys::Uint8Array,
        on_chunk: &JsValue,
        on_end: &JsValue,
        on_done: JsValue,
        client_gone: &web_sys::AbortSignal,
        idle_ms: f64,
    ) -> js_sys::Array;
}

/// The client's stream: `prefix`, then each chunk of the provider's body through `transform`
/// (one synchronous call into the core per chunk), written by a JS read loop into workerd's
/// native `IdentityTransformStream`. Returns the readable side and a promise that settles when
/// the provider's stream is done (for `waitUntil`). A client that goes away cancels the
/// provider's body. A provider silent for `idle_timeout_ms` (0: no limit) is cancelled and the
/// stream ends as timed out.
pub fn client_stream(
    prefix: Vec<u8>,
    body: EdgeBody,
    transform: Box<dyn StreamTransform>,
    idle_timeout_ms: u64,
    client_gone: &web_sys::AbortSignal,
) -> Result<(web_sys::ReadableStream, js_sys::Promise), JsValue> {
    if transform.closed() {
        // The whole answer came in the first read (the prefix ends it): nothing more is read,
        // however long the provider holds its connection open.
        let response = body.hand_off();
        // Its body is read to its end (briefly; see `pump.js`), so that its connection serves
        // again.
        let drained = match response.body() {
            Some(source) if transform.drain_provider() => drain_body(&source),
            Some(source) => {
                let_go(&source); // (ended by the gateway: the provider is mid-answer)
                js_sys::Promise::resolve(&JsValue::UNDEFINED)
            }
            None => js_sys::Promise::resolve(&JsValue::UNDEFINED),
        };
        drop(transform); // (its end has been reported)
        let whole = web_sys::Response::new_with_opt_buffer_source(Some(
            &js_sys::Uint8Array::from(prefix.as_slice()),
        ))?;
        let stream = whole.body().map_or_else(web_sys::ReadableStream::new, Ok)?;
        return Ok((stream, drained));
    }
    let transform = Rc::new(RefCell::new(transform));
    let on_chunk = {
        let transform = transform.clone();
        // Reused for every chunk: the chunk copied in, and the bytes to send.
        let (mut chunk_buf, mut out) = (Vec::new(), Vec::new());
        Closure::<dyn FnMut(js_sys::Uint8Array) -> JsValue>::new(
            move |chunk: js_sys::Uint8Array| {
                let mut t = transform.borrow_mut();
                if t.closed() {
                    // (Complete already: nothing more to send. The pump stops at the chunk
                    // that completes a stream and a stream complete at hand-off never gets
                    // here, so this is only a guard.)
                    let nothing = js_sys::Uint8Array::new_with_length(0);
                    return last_bytes(&nothing, t.as_ref());
                }
                chunk_buf.resize(chunk.length() as usize, 0);
                chunk.copy_to(&mut chunk_buf);
                out.clear();
                t.push(&chunk_buf, &mut out);
                let bytes = if out == chunk_buf {
                    JsValue::UNDEFINED // unchanged: send the chunk itself, no copy back
                } else {
                    js_sys::Uint8Array::from(out.as_slice()).into()
                };
                if t.closed() {
                    last_bytes(&bytes, t.as_ref())
                } else {
                    bytes
                }
            },
        )
    };
    let on_end = {
        let transform = transform.clone();
        Closure::<dyn FnMut(JsValue) -> js_sys::Uint8Array>::new(move |error: JsValue| {
            // undefined: a clean end; null: the provider went quiet; else the failure's message.
            let error = if error.is_null() {
                Some(FetchError::Timeout)
            } else {
                error.as_string().map(FetchError::Network)
            };
            let mut out = Vec::new();
            transform.borrow_mut().finish(&mut out, error.as_ref());
            js_sys::Uint8Array::from(out.as_slice())
        })
    };
    let response = body.hand_off();
    let source = match response.body() {
        Some(s) => s,
        None => web_sys::ReadableStream::new()?,
    };
    let (chunk_fn, end_fn) = (on_chunk.as_ref().clone(), on_end.as_ref().clone());
    // Frees the two callbacks once the loop is over (it calls this last, exactly once).
    let on_done = Closure::once_into_js(move || drop((on_chunk, on_end, transform)));
    let pair = pump(
        &source,
        &js_sys::Uint8Array::from(prefix.as_slice()),
        &chunk_fn,
        &end_fn,
        on_done,
        client_gone,
        idle_timeout_ms as f64,
    );
    Ok((pair.get(0).unchecked_into(), pair.get(1).unchecked_into()))
}
