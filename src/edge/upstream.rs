//! The upstream trait over the runtime's `fetch`, with timeouts that abort the request.

use super::Edge;
use crate::platform::{FetchError, Upstream, UpstreamRequest, UpstreamResponse};
use futures::future::{select, Either};
use futures::StreamExt;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A provider's response body: the response, its reader once reading has started, and the
/// controller that aborts the request (dropping the body aborts it, so an abandoned attempt or
/// a client that went away cancels the provider's side).
pub struct EdgeBody {
    response: web_sys::Response,
    reader: Option<wasm_streams::readable::IntoStream<'static>>,
    abort: web_sys::AbortController,
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

fn network_error(e: JsValue) -> FetchError {
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the connection failed".to_owned());
    FetchError::Network(message)
}

/// Runs `fut` for at most `ms` milliseconds.
async fn within<T>(ms: u64, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let timer = worker::Delay::from(Duration::from_millis(ms));
    match select(std::pin::pin!(fut), timer).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

impl EdgeBody {
    fn reader(&mut self) -> Option<&mut wasm_streams::readable::IntoStream<'static>> {
        if self.reader.is_none() {
            let raw = self.response.body()?;
            self.reader =
                Some(wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).into_stream());
        }
        self.reader.as_mut()
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, FetchError> {
        let Some(reader) = self.reader() else {
            return Ok(None);
        };
        match reader.next().await {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(js_sys::Uint8Array::new(&chunk).to_vec())),
            Some(Err(e)) => Err(network_error(e)),
        }
    }
}

impl Upstream for Edge {
    type Body = EdgeBody;

    async fn fetch(
        &self,
        req: UpstreamRequest,
        timeout_ms: u64,
    ) -> Result<UpstreamResponse<EdgeBody>, FetchError> {
        let headers = web_sys::Headers::new().map_err(network_error)?;
        for (name, value) in &req.headers {
            headers.append(name, value).map_err(network_error)?;
        }
        let abort = web_sys::AbortController::new().map_err(network_error)?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_signal(Some(&abort.signal()));
        let body = js_sys::Uint8Array::from(req.body.as_slice());
        init.set_body(&body);
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let pending = JsFuture::from(global.fetch_with_str_and_init(&req.url, &init));
        let resp = match within(timeout_ms, pending).await {
            Some(r) => r.map_err(network_error)?,
            None => {
                abort.abort();
                return Err(FetchError::Timeout);
            }
        };
        let response: web_sys::Response = resp.unchecked_into();
        let resp_headers = response.headers();
        let header = |name: &str| resp_headers.get(name).ok().flatten();
        Ok(UpstreamResponse {
            status: response.status(),
            content_type: header("content-type"),
            retry_after: header("retry-after"),
            retry_after_ms: header("retry-after-ms"),
            body: EdgeBody {
                response,
                reader: None,
                abort,
            },
        })
    }

    async fn read_body(&self, body: EdgeBody, timeout_ms: u64) -> Result<Vec<u8>, FetchError> {
        let promise = body.response.array_buffer().map_err(network_error)?;
        match within(timeout_ms, JsFuture::from(promise)).await {
            Some(buf) => Ok(js_sys::Uint8Array::new(&buf.map_err(network_error)?).to_vec()),
            None => Err(FetchError::Timeout), // dropping `body` aborts the request
        }
    }

    async fn next_chunk(
        &self,
        body: &mut EdgeBody,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        within(timeout_ms, body.next())
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    fn cancel(&self, body: EdgeBody) {
        drop(body);
    }
}
