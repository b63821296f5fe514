//! Bindings to `http.js`: the request's fields in, an attempt's fetch out, the response head in,
//! the response out — one call into JavaScript each (the lists are [`crate::fields`]).

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/edge/http.js")]
extern "C" {
    /// Method, URL and the six headers the gateway reads, newline-separated ("" when absent).
    pub fn inbound(request: &web_sys::Request) -> String;
    /// `[fetch promise, AbortController, timer id]` for one POST.
    #[wasm_bindgen(catch)]
    pub fn send(
        url: &str,
        headers: &str,
        body: &js_sys::Uint8Array,
        timeout_ms: f64,
    ) -> Result<js_sys::Array, JsValue>;
    /// Status, content-type, retry-after, retry-after-ms, content-length and content-encoding,
    /// newline-separated.
    #[wasm_bindgen(js_name = responseHead)]
    pub fn response_head(response: &web_sys::Response) -> String;
    /// The whole body of a `Request` or `Response` as a `Uint8Array`, or null once it passes
    /// `max` bytes (the rest is cancelled); rejects when a read fails.
    #[wasm_bindgen(js_name = readCapped)]
    pub fn read_capped(message: &JsValue, max: f64) -> js_sys::Promise;
    #[wasm_bindgen(catch)]
    pub fn respond(
        status: u16,
        headers: &str,
        body: &JsValue,
    ) -> Result<web_sys::Response, JsValue>;
}
