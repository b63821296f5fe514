//! The upstream trait over the runtime's `fetch`.
//!
//! Each attempt gets one `AbortController` and one JS timer that aborts it when the attempt's
//! time runs out (`http.js` `send`): no wasm closure, no racing futures. The timer covers the
//! response head, a whole non-streamed body, and a stream up to its first content; it is cleared
//! when the body has been read or handed to the client.

use super::{http, Edge};
use crate::platform::{FetchError, Upstream, UpstreamRequest, UpstreamResponse};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A provider's response body, with the controller that aborts its request and the attempt's
/// timer. Dropping it aborts the request (an abandoned attempt cancels the provider's side),
/// unless it has been read to its end or handed to the client stream.
pub struct EdgeBody {
    pub(super) response: web_sys::Response,
    reader: Option<web_sys::ReadableStreamDefaultReader>,
    abort: web_sys::AbortController,
    timer: Option<i32>,
    handed_off: bool,
    /// The body's length when the provider announced it for the bytes as they will be read
    /// (`Content-Length` of a body that is not compressed).
    exact_length: Option<u64>,
}

fn global() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

impl EdgeBody {
    fn clear_timer(&mut self) {
        if let Some(id) = self.timer.take() {
            global().clear_timeout_with_handle(id);
        }
    }

    /// The body was read to its end: nothing is left to cancel. (Aborting a finished request
    /// is not free: workerd builds an `AbortError` with a stack trace.)
    fn finished(&mut self) {
        self.clear_timer();
        self.handed_off = true;
    }

    /// Why a read or fetch failed: our timer fired, or the network did.
    fn failure(&self, e: JsValue) -> FetchError {
        failure(&self.abort, e)
    }

    /// Stops the timer and releases the reader, for the client stream to take over the body.
    pub(super) fn hand_off(mut self) -> web_sys::Response {
        self.clear_timer();
        if let Some(reader) = self.reader.take() {
            reader.release_lock();
        }
        self.handed_off = true;
        // The same JS object (not `Response.clone()`, which would tee the body).
        let same: &JsValue = self.response.as_ref();
        same.clone().unchecked_into()
    }
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        self.clear_timer();
        if !self.handed_off {
            self.abort.abort();
        }
    }
}

fn failure(abort: &web_sys::AbortController, e: JsValue) -> FetchError {
    if abort.signal().aborted() {
        return FetchError::Timeout;
    }
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the connection failed".to_owned());
    FetchError::Network(message)
}

fn setup_error(e: JsValue) -> FetchError {
    FetchError::Network(format!("could not build the request: {e:?}"))
}

impl Upstream for Edge {
    type Body = EdgeBody;

    async fn fetch(
        &self,
        req: UpstreamRequest,
        timeout_ms: u64,
    ) -> Result<UpstreamResponse<EdgeBody>, FetchError> {
        let headers =
            crate::fields::join_headers(req.headers.iter().map(|(n, v)| (*n, v.as_str())))
                .map_err(|name| {
                    FetchError::Network(format!("the `{name}` header value holds a line break"))
                })?;
        let sent = http::send(
            &req.url,
            &headers,
            &js_sys::Uint8Array::from(req.body.as_slice()),
            timeout_ms.min(i32::MAX as u64) as f64,
        )
        .map_err(setup_error)?;
        let (pending, abort, timer) = (sent.get(0), sent.get(1), sent.get(2));
        let mut body = EdgeBody {
            response: web_sys::Response::from(JsValue::UNDEFINED),
            reader: None,
            abort: abort.unchecked_into(),
            timer: timer.as_f64().map(|t| t as i32),
            handed_off: false,
            exact_length: None,
        };
        let response: web_sys::Response = match JsFuture::from(js_sys::Promise::from(pending)).await
        {
            Ok(r) => r.unchecked_into(),
            Err(e) => return Err(body.failure(e)),
        };
        let head = http::response_head(&response);
        let [status, content_type, retry_after, retry_after_ms, content_length, encoding] =
            crate::fields::split::<6>(&head);
        let content_length = content_length.and_then(|n| n.parse().ok());
        // workerd decodes a compressed body as it is read: its announced length is not what
        // will be read.
        if encoding.is_none_or(|e| e.eq_ignore_ascii_case("identity")) {
            body.exact_length = content_length;
        }
        let (content_type, retry_after, retry_after_ms) = (
            content_type.map(str::to_owned),
            retry_after.map(str::to_owned),
            retry_after_ms.map(str::to_owned),
        );
        let status = status.and_then(|s| s.parse().ok()).unwrap_or(502);
        body.response = response;
        Ok(UpstreamResponse {
            status,
            content_type,
            retry_after,
            retry_after_ms,
            content_length,
            body,
        })
    }

    async fn read_body(
        &self,
        mut body: EdgeBody,
        _timeout_ms: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        if body.exact_length.is_some_and(|n| n <= max_bytes as u64) {
            // Known to fit: one native read (workerd holds the body to its announced length).
            let promise = body.response.array_buffer().map_err(|e| body.failure(e))?;
            let buf = JsFuture::from(promise).await.map_err(|e| body.failure(e))?;
            body.finished();
            return Ok(js_sys::Uint8Array::new(&buf).to_vec());
        }
        let read = http::read_capped(body.response.as_ref(), max_bytes as f64);
        let bytes = JsFuture::from(read).await.map_err(|e| body.failure(e))?;
        body.finished(); // read to its end, or cancelled at the limit
        if bytes.is_null() {
            return Err(FetchError::TooLarge);
        }
        Ok(js_sys::Uint8Array::new(&bytes).to_vec())
    }

    async fn next_chunk(
        &self,
        body: &mut EdgeBody,
        _timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        if body.reader.is_none() {
            let Some(stream) = body.response.body() else {
                return Ok(None);
            };
            body.reader = Some(stream.get_reader().unchecked_into());
        }
        let reader = body.reader.as_ref().expect("set above");
        let result = JsFuture::from(reader.read())
            .await
            .map_err(|e| body.failure(e))?;
        let done = js_sys::Reflect::get(&result, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            body.finished();
            return Ok(None);
        }
        let value = js_sys::Reflect::get(&result, &"value".into()).unwrap_or(JsValue::UNDEFINED);
        Ok(Some(js_sys::Uint8Array::new(&value).to_vec()))
    }

    fn cancel(&self, body: EdgeBody) {
        drop(body);
    }
}
