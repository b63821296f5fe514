//! Bodies: the inbound request's, and provider streams on their way out.

use super::upstream::EdgeBody;
use crate::error::GatewayError;
use crate::platform::{InboundBody, StreamTransform};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub struct RequestBody(pub web_sys::Request);

impl InboundBody for RequestBody {
    async fn read(self) -> Result<Vec<u8>, GatewayError> {
        let unreadable = |_| GatewayError::invalid_request("The request body could not be read.");
        let promise = self.0.array_buffer().map_err(unreadable)?;
        let buf = JsFuture::from(promise).await.map_err(unreadable)?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}

/// The client's stream: `prefix`, then each piece of the provider's body through `transform`,
/// forwarded as soon as it arrives. When the client goes away the runtime drops this stream,
/// and with it the provider's body, which aborts the provider's request.
pub fn client_stream(
    prefix: Vec<u8>,
    body: EdgeBody,
    transform: Box<dyn StreamTransform>,
) -> web_sys::ReadableStream {
    struct State {
        prefix: Option<Vec<u8>>,
        body: EdgeBody,
        transform: Box<dyn StreamTransform>,
        ended: bool,
    }
    let state = State {
        prefix: Some(prefix).filter(|p| !p.is_empty()),
        body,
        transform,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if let Some(prefix) = s.prefix.take() {
            return Some((Ok(to_js(&prefix)), s));
        }
        if s.ended {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match s.body.next().await {
                Ok(Some(chunk)) => {
                    s.transform.push(&chunk, &mut out);
                    if !out.is_empty() {
                        return Some((Ok(to_js(&out)), s));
                    }
                }
                Ok(None) => {
                    s.transform.finish(&mut out, None);
                    s.ended = true;
                    return Some((Ok(to_js(&out)), s));
                }
                Err(e) => {
                    s.transform.finish(&mut out, Some(&e));
                    s.ended = true;
                    return Some((Ok(to_js(&out)), s));
                }
            }
        }
    });
    wasm_streams::ReadableStream::from_stream(stream)
        .into_raw()
        .unchecked_into()
}

fn to_js(bytes: &[u8]) -> wasm_bindgen::JsValue {
    js_sys::Uint8Array::from(bytes).into()
}
