//! Bodies: the inbound request's, and provider streams rewritten on their way out.

use crate::error::GatewayError;
use crate::platform::{FetchError, InboundBody, StreamTransform};
use futures::StreamExt;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub struct RequestBody(pub web_sys::Request);

impl InboundBody for RequestBody {
    async fn read(self) -> Result<Vec<u8>, GatewayError> {
        let promise = self
            .0
            .array_buffer()
            .map_err(|_| GatewayError::invalid_request("The request body could not be read."))?;
        let buf = JsFuture::from(promise)
            .await
            .map_err(|_| GatewayError::invalid_request("The request body could not be read."))?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}

/// Pipes a provider's body through `transform`, chunk by chunk, as a new stream. Dropping the
/// returned stream (the client went away) drops the reader, which cancels the provider's body.
pub fn transformed(
    upstream: web_sys::Response,
    transform: Box<dyn StreamTransform>,
) -> web_sys::ReadableStream {
    let input = upstream
        .body()
        .map(|raw| wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).into_stream());
    let stream = futures::stream::unfold(
        (input, transform, false),
        |(mut input, mut transform, done)| async move {
            if done {
                return None;
            }
            let mut out = Vec::new();
            loop {
                let next = match input.as_mut() {
                    Some(s) => s.next().await,
                    None => None,
                };
                match next {
                    Some(Ok(chunk)) => {
                        let chunk = js_sys::Uint8Array::new(&chunk).to_vec();
                        transform.push(&chunk, &mut out);
                        if !out.is_empty() {
                            return Some((Ok(to_js(&out)), (input, transform, false)));
                        }
                    }
                    Some(Err(e)) => {
                        let err = FetchError::Network(
                            e.as_string()
                                .unwrap_or_else(|| "the provider's stream broke".into()),
                        );
                        transform.finish(&mut out, Some(&err));
                        return Some((Ok(to_js(&out)), (input, transform, true)));
                    }
                    None => {
                        transform.finish(&mut out, None);
                        return Some((Ok(to_js(&out)), (input, transform, true)));
                    }
                }
            }
        },
    );
    wasm_streams::ReadableStream::from_stream(stream)
        .into_raw()
        .unchecked_into()
}

fn to_js(bytes: &[u8]) -> wasm_bindgen::JsValue {
    js_sys::Uint8Array::from(bytes).into()
}
