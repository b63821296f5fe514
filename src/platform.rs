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
    /// Waits `ms` milliseconds (retry backoff).
    async fn sleep(&self, ms: u64);
    /// The clock itself, for what outlives the request's handling (a stream reporting how it
    /// ended).
    fn now_source(&self) -> std::rc::Rc<dyn Fn() -> u64>;
}

/// An HTTP request to a provider.
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The headers that carry a provider credential.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// Without the credential (its headers' values redacted) and without the body (the prompt, or
/// a token exchange's signed assertion): its length only.
impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let secret = CREDENTIAL_HEADERS
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c));
                (*name, if secret { "<redacted>" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("UpstreamRequest")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// A provider's response head, with its body left unread.
#[derive(Debug)]
pub struct UpstreamResponse<B> {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Retry-After`, as the provider sent it.
    pub retry_after: Option<String>,
    /// `retry-after-ms` (OpenAI and Anthropic send it), as the provider sent it.
    pub retry_after_ms: Option<String>,
    /// `Content-Length`, when the provider sent one (of the body as sent, maybe compressed).
    pub content_length: Option<u64>,
    pub body: B,
}

/// Why a request to a provider got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Could not connect, or the connection broke.
    Network(String),
    /// No answer in time.
    Timeout,
    /// The body grew past the most the reader was asked to take; the request was cancelled.
    TooLarge,
}

/// HTTP to providers. `Body` is the platform's own body type, so a response can be handed to
/// the client without passing through the core.
pub trait Upstream {
    type Body;
    /// Sends `req`; gives up with [`FetchError::Timeout`] (cancelling the request) when no
    /// response head arrives within `timeout_ms`.
    async fn fetch(
        &self,
        req: UpstreamRequest,
        timeout_ms: u64,
    ) -> Result<UpstreamResponse<Self::Body>, FetchError>;
    /// Reads a whole body (error bodies, non-streamed responses), within `timeout_ms`; a body
    /// longer than `max_bytes` is not held: it fails with [`FetchError::TooLarge`] as soon as it
    /// is known to be (whether or not the provider announced its length), and is cancelled.
    async fn read_body(
        &self,
        body: Self::Body,
        timeout_ms: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError>;
    /// The next piece of a streamed body (`None` at its end), within `timeout_ms`.
    async fn next_chunk(
        &self,
        body: &mut Self::Body,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, FetchError>;
    /// Gives a body up, cancelling the provider's side (an attempt that is abandoned).
    fn cancel(&self, body: Self::Body);
}

/// A key-value store with per-entry metadata (Workers KV).
pub trait Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, GatewayError>;
    /// Stores `value`; with `ttl_secs`, KV forgets it after that long.
    async fn put(
        &self,
        key: &str,
        value: &str,
        metadata: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<(), GatewayError>;
    async fn delete(&self, key: &str) -> Result<(), GatewayError>;
    /// Every entry whose key starts with `prefix`: its key and metadata.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, GatewayError>;
}

/// The inbound request's body, read only when a route needs it.
pub trait InboundBody {
    /// The whole body; `None` once it passes `max_bytes` (the rest is not read).
    /// `declared` is its `Content-Length` when the client sent one within the limit.
    async fn read(
        self,
        max_bytes: usize,
        declared: Option<u64>,
    ) -> Result<Option<Vec<u8>>, GatewayError>;
}

/// How far a stream has got, as seen by its transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing the client needs yet (no event, or only a role/ping event).
    Pending,
    /// Content (or a finish) has been produced: the stream is committed to the client.
    Content,
    /// The provider reported an error before any content.
    Failed {
        error: GatewayError,
        retryable: bool,
    },
}

/// Bytes in, bytes out: a provider's stream on its way to the client (e.g. its events translated
/// to OpenAI chunks). A pure state machine; the edge's loop only moves bytes.
pub trait StreamTransform {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream ended (cleanly, or with `upstream_error`); write whatever closes the stream.
    /// A stream cut before its natural end closes with an error event, never a clean finish.
    fn finish(&mut self, out: &mut Vec<u8>, upstream_error: Option<&FetchError>);
    fn progress(&self) -> &Progress;
    /// One SSE event to write just before the final `[DONE]` (the routing metadata chunk). A
    /// stream that already reached its end (before the trailer was known) has it written to
    /// `out` now: its trailer, error event if any, `[DONE]`.
    fn set_trailer(&mut self, trailer: crate::formats::openai::Trailer, out: &mut Vec<u8>);
    /// The client's stream is complete (`[DONE]` written): nothing more will be sent, so the
    /// provider's stream need not be read further.
    fn closed(&self) -> bool;
    /// The error the client's stream ended with, if it failed (cut, silent, the provider's
    /// error event translated).
    fn failure(&self) -> Option<&crate::error::GatewayError> {
        None
    }
    /// Whether what is left of the provider's body is worth reading once the client's stream is
    /// complete (so that its connection serves again): not when the stream failed (a cut, or the
    /// gateway ending it mid-answer: the provider is then let go at once).
    fn drain_provider(&self) -> bool {
        self.failure().is_none()
    }
    /// The `id`, `model` and `created` the provider's own chunks carry, when they pass through:
    /// a chunk the gateway adds takes them (one completion's chunks share them, and the SDKs'
    /// stream helpers take the last chunk's). `None`: the gateway's own.
    fn chunk_identity(&self) -> (Option<&str>, Option<&str>, Option<u64>) {
        (None, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_request_debug_shows_no_credential_and_no_body() {
        let req = UpstreamRequest {
            url: "https://api.anthropic.com/v1/messages".into(),
            headers: vec![
                ("authorization", "Bearer sk-secret-1".into()),
                ("x-api-key", "sk-ant-secret-2".into()),
                ("x-goog-api-key", "AIza-secret-3".into()),
                ("x-request-id", "req-1".into()),
            ],
            body: b"{\"prompt\":\"private\"}".to_vec(),
        };
        let shown = format!("{req:?}");
        for hidden in ["secret", "private"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        assert!(
            shown.contains("req-1") && shown.contains("api.anthropic.com"),
            "{shown}"
        );
    }
}
