//! Bindings to `http.js`: the request's fields in, an attempt's fetch out, the response head in,
//! the response out — one call into JavaScript each.

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(module = "/src/edge/http.js")]
extern "C" {
    /// Method, URL and the five headers the gateway reads, newline-separated ("" when absent).
    pub fn inbound(request: &web_sys::Request) -> String;
    /// `[fetch promise, AbortController, timer id]` for one POST.
    #[wasm_bindgen(catch)]
    pub fn send(
        url: &str,
        headers: &str,
        body: &js_sys::Uint8Array,
        timeout_ms: f64,
    ) -> Result<js_sys::Array, JsValue>;
    /// Status, content-type, retry-after and retry-after-ms, newline-separated.
    #[wasm_bindgen(js_name = responseHead)]
    pub fn response_head(response: &web_sys::Response) -> String;
    #[wasm_bindgen(catch)]
    pub fn respond(
        status: u16,
        headers: &str,
        body: &JsValue,
    ) -> Result<web_sys::Response, JsValue>;
}

/// Header pairs as one string for `http.js` ("name\nvalue\n…"). A value holding a line break
/// (which HTTP forbids) makes it `Err` with the offending header's name, never its value.
pub fn flat_headers<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, &'a str> {
    let mut out = String::with_capacity(256);
    for (name, value) in pairs {
        if value.contains(['\n', '\r']) || name.contains(['\n', '\r']) {
            return Err(name);
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
    }
    Ok(out)
}

/// Splits a newline-separated list from `http.js` into exactly `N` fields ("" → `None`).
pub fn fields<const N: usize>(joined: &str) -> [Option<&str>; N] {
    let mut out = [None; N];
    for (slot, part) in out.iter_mut().zip(joined.split('\n')) {
        *slot = (!part.is_empty()).then_some(part);
    }
    out
}
