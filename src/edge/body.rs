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
    async fn read(self) -> Result<Vec<u8>, GatewayError> {
        let unreadable = |_| GatewayError::invalid_request("The request body could not be read.");
        let promise = self.0.array_buffer().map_err(unreadable)?;
        let buf = JsFuture::from(promise).await.map_err(unreadable)?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}

type Controller = web_sys::TransformStreamDefaultController;

/// What the stream's callbacks share.
struct Pipe {
    transform: Box<dyn StreamTransform>,
    prefix: Option<Vec<u8>>,
    controller: Option<Controller>,
    finished: bool,
}

fn enqueue(c: &Controller, bytes: &[u8]) {
    if !bytes.is_empty() {
        // Fails only when the client has gone away; nothing is left to do then.
        let _ = c.enqueue_with_chunk(&js_sys::Uint8Array::from(bytes));
    }
}

/// The client's stream: `prefix`, then the provider's body piped natively through a
/// `TransformStream` whose `transform` is one synchronous call into the core per chunk.
/// A client that goes away cancels the pipe, and the pipe cancels the provider's body.
pub fn client_stream(
    prefix: Vec<u8>,
    body: EdgeBody,
    transform: Box<dyn StreamTransform>,
) -> Result<web_sys::ReadableStream, JsValue> {
    let pipe = Rc::new(RefCell::new(Pipe {
        transform,
        prefix: Some(prefix),
        controller: None,
        finished: false,
    }));
    let start = {
        let pipe = pipe.clone();
        Closure::<dyn FnMut(Controller)>::new(move |c: Controller| {
            let mut p = pipe.borrow_mut();
            if let Some(prefix) = p.prefix.take() {
                enqueue(&c, &prefix);
            }
            p.controller = Some(c);
        })
    };
    let on_chunk = {
        let pipe = pipe.clone();
        Closure::<dyn FnMut(JsValue, Controller)>::new(move |chunk: JsValue, c: Controller| {
            let bytes = js_sys::Uint8Array::new(&chunk).to_vec();
            let mut out = Vec::with_capacity(bytes.len());
            pipe.borrow_mut().transform.push(&bytes, &mut out);
            if out == bytes {
                let _ = c.enqueue_with_chunk(&chunk); // unchanged: no copy back
            } else {
                enqueue(&c, &out);
            }
        })
    };
    let flush = {
        let pipe = pipe.clone();
        Closure::<dyn FnMut(Controller)>::new(move |c: Controller| {
            let mut p = pipe.borrow_mut();
            let mut out = Vec::new();
            p.transform.finish(&mut out, None);
            p.finished = true;
            enqueue(&c, &out);
        })
    };
    let transformer = js_sys::Object::new();
    js_sys::Reflect::set(&transformer, &"start".into(), start.as_ref())?;
    js_sys::Reflect::set(&transformer, &"transform".into(), on_chunk.as_ref())?;
    js_sys::Reflect::set(&transformer, &"flush".into(), flush.as_ref())?;
    let stream = web_sys::TransformStream::new_with_transformer(&transformer)?;
    let response = body.hand_off();
    let Some(source) = response.body() else {
        // No body at all: close with whatever the transform says about an empty stream.
        let mut out = Vec::new();
        pipe.borrow_mut().transform.finish(&mut out, None);
        return Ok(stream.readable());
    };
    let options = web_sys::StreamPipeOptions::new();
    options.set_prevent_abort(true); // a provider error is ours to report, in the stream
    let piped = source.pipe_to_with_options(&stream.writable(), &options);
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = JsFuture::from(piped).await {
            let mut p = pipe.borrow_mut();
            if !p.finished {
                p.finished = true;
                let message = e
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .unwrap_or_else(|| "the provider's stream broke".to_owned());
                let mut out = Vec::new();
                p.transform
                    .finish(&mut out, Some(&FetchError::Network(message)));
                if let Some(c) = p.controller.take() {
                    enqueue(&c, &out);
                    c.terminate();
                }
            }
        }
        // The callbacks are done with once the pipe has settled.
        drop((start, on_chunk, flush));
    });
    Ok(stream.readable())
}
