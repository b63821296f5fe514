//! The small traits through which the core reaches the world.
//!
//! The edge implements them over the Workers runtime (fetch, KV, `Date.now`, `crypto`); native
//! tests implement them with fakes, so the whole pipeline runs under `cargo test`.
#![allow(async_fn_in_trait)] // single-threaded runtime: no Send bounds wanted

use crate::error::GatewayError;

/// Time and randomness.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);
}

/// An HTTP request to a provider.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A provider's response head, with its body left unread.
#[derive(Debug)]
pub struct UpstreamResponse<B> {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Retry-After`, as the provider sent it.
    pub retry_after: Option<String>,
    pub body: B,
}

/// Why a request to a provider got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Could not connect, or the connection broke.
    Network(String),
    /// No answer in time.
    Timeout,
}

/// HTTP to providers. `Body` is the platform's own body type, so a response can be handed to
/// the client without passing through the core.
pub trait Upstream {
    type Body;
    async fn fetch(&self, req: UpstreamRequest)
        -> Result<UpstreamResponse<Self::Body>, FetchError>;
    /// Reads a whole body (error bodies, non-streamed responses that need translation).
    async fn read_body(&self, body: Self::Body) -> Result<Vec<u8>, FetchError>;
}

/// A key-value store with per-entry metadata (Workers KV).
pub trait Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, GatewayError>;
    async fn put(&self, key: &str, value: &str, metadata: Option<&str>)
        -> Result<(), GatewayError>;
    async fn delete(&self, key: &str) -> Result<(), GatewayError>;
    /// Every entry whose key starts with `prefix`: its key and metadata.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, GatewayError>;
}

/// The inbound request's body, read only when a route needs it.
pub trait InboundBody {
    async fn read(self) -> Result<Vec<u8>, GatewayError>;
}

/// Bytes in, bytes out: a stream rewritten on its way to the client (e.g. a provider's events
/// translated to OpenAI chunks). A pure state machine; the edge's loop only moves bytes.
pub trait StreamTransform {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream ended (cleanly or not); write whatever closes the stream.
    fn finish(&mut self, out: &mut Vec<u8>, upstream_error: Option<&FetchError>);
}
