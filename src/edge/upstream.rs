//! The upstream trait over the runtime's `fetch`.

use super::Edge;
use crate::platform::{FetchError, Upstream, UpstreamRequest, UpstreamResponse};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn network_error(e: JsValue) -> FetchError {
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the connection failed".to_owned());
    FetchError::Network(message)
}

impl Upstream for Edge {
    type Body = web_sys::Response;

    async fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> Result<UpstreamResponse<web_sys::Response>, FetchError> {
        let headers = web_sys::Headers::new().map_err(network_error)?;
        for (name, value) in &req.headers {
            headers.append(name, value).map_err(network_error)?;
        }
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        let body = js_sys::Uint8Array::from(req.body.as_slice());
        init.set_body(&body);
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let resp = JsFuture::from(global.fetch_with_str_and_init(&req.url, &init))
            .await
            .map_err(network_error)?;
        let resp: web_sys::Response = resp.unchecked_into();
        let resp_headers = resp.headers();
        let header = |name: &str| resp_headers.get(name).ok().flatten();
        Ok(UpstreamResponse {
            status: resp.status(),
            content_type: header("content-type"),
            retry_after: header("retry-after"),
            body: resp,
        })
    }

    async fn read_body(&self, body: web_sys::Response) -> Result<Vec<u8>, FetchError> {
        let promise = body.array_buffer().map_err(network_error)?;
        let buf = JsFuture::from(promise).await.map_err(network_error)?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}
