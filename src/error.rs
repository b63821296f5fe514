//! One error type for the whole gateway, grouped by cause, rendered as an OpenAI error body.
//!
//! Rendering is pure: it never logs and never looks at secrets. Messages are written so that no
//! credential can reach them (they name fields, providers and statuses, never header values).

use serde::Serialize;

/// Why a request failed. Each cause fixes the HTTP status and the OpenAI `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request body or parameters are wrong (400).
    InvalidRequest,
    /// No credential, or one that is not (or no longer) valid (401).
    Authentication,
    /// No such route, model or object (404).
    NotFound,
    /// The route exists but not for this method (405).
    MethodNotAllowed,
    /// The body is larger than the gateway accepts (413).
    PayloadTooLarge,
    /// The gateway was not configured for this (e.g. no provider key) (503 for providers).
    NotConfigured,
    /// The upstream answered with an error; its status is kept.
    Upstream,
    /// The upstream could not be reached or sent something unusable (502).
    BadGateway,
    /// The upstream did not answer in time (504).
    Timeout,
    /// A part of the admin contract this version does not have yet (501).
    NotImplemented,
    /// A bug or an unexpected runtime failure (500).
    Internal,
}

/// The code of an error that says a provider refused the gateway's credential.
pub const CREDENTIAL_REFUSED: &str = "upstream_authentication_failed";
/// Whether `text` holds what looks like an API secret, which error messages must not echo: a
/// word (a run of the characters keys are made of, also after a percent-encoded space) that
/// starts as keys do (`sk-…`: the gateway's, OpenAI's, Anthropic's; Groq's `gsk_`, xAI's
/// `xai-`, Google's `AIza`, Fireworks' `fw_`). (`my-task-model` is no secret.)
pub fn looks_secret(text: &str) -> bool {
    const STARTS: [&str; 5] = ["sk-", "gsk_", "xai-", "AIza", "fw_"];
    let text: std::borrow::Cow<'_, str> = if text.contains("%20") {
        text.replace("%20", " ").into()
    } else {
        text.into() // (the usual case: no allocation)
    };
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|word| STARTS.iter().any(|s| word.starts_with(s)))
}

/// A model id as error messages name it: quoted, or not at all when it looks like a secret
/// pasted in the wrong place ([`looks_secret`]).
pub fn shown_model(model: &str) -> String {
    if looks_secret(model) {
        "named".to_owned()
    } else {
        format!("`{model}`")
    }
}

/// The code of the error for a provider that answered 402 (the account behind the gateway's
/// credential cannot pay): a 502, final, naming the credential's variable.
pub const PAYMENT_REQUIRED: &str = "upstream_payment_required";

/// A gateway error: cause, status, and the four OpenAI error fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds the client should wait before retrying (kept from an upstream `Retry-After`).
    pub retry_after: Option<String>,
    /// The provider whose answer this error reports, when it came from upstream.
    pub provider: Option<&'static str>,
}

impl GatewayError {
    fn new(kind: ErrorKind, status: u16, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            provider: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, 400, message)
    }

    /// A 400 that names the offending field in `param`.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Authentication, 401, message).with_code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, 404, message).with_code("not_found")
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            404,
            format!(
                "The model {} does not exist or is not served by this gateway.",
                shown_model(model)
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            ErrorKind::MethodNotAllowed,
            405,
            format!("Method {method} is not allowed on {path}."),
        )
        .with_code("method_not_allowed")
    }

    /// A 413 with its own message (a request too large in some other measure than bytes).
    pub fn new_payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, 413, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            413,
            format!("The request body exceeds the gateway's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 409: the request conflicts with an earlier one (e.g. a reused idempotency key).
    pub fn new_conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, 409, message).with_code("idempotency_key_reused")
    }

    pub fn not_configured(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotConfigured, 503, message).with_code("provider_not_configured")
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadGateway, 502, message).with_code("upstream_unavailable")
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, 501, message).with_code("not_implemented")
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, 504, message).with_code("upstream_timeout")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, 500, message)
    }

    /// An error the upstream returned, keeping its status (anything not 4xx/5xx becomes 502).
    pub fn upstream(status: u16, message: impl Into<String>) -> Self {
        let status = if (400..600).contains(&status) {
            status
        } else {
            502
        };
        Self::new(ErrorKind::Upstream, status, message)
    }

    /// A provider refused the gateway's own credential: 502 [`CREDENTIAL_REFUSED`] (a 401 would
    /// read as the client's gateway key being wrong).
    pub fn credential_refused(message: impl Into<String>) -> Self {
        Self::upstream(502, message).with_code(CREDENTIAL_REFUSED)
    }

    pub fn is_credential_refused(&self) -> bool {
        self.code.as_deref() == Some(CREDENTIAL_REFUSED)
    }

    /// Whether the same request is sure to fail the same way until someone changes something:
    /// the gateway's settings (a base URL that redirects), a provider credential, the
    /// request's Idempotency-Key, or the request itself (an answer larger than the gateway
    /// reads).
    pub fn is_final(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::NotConfigured | ErrorKind::NotImplemented
        ) || self.is_credential_refused()
            || matches!(
                self.code.as_deref(),
                Some(
                    "idempotency_key_reused" | "upstream_response_too_large" | "upstream_redirect"
                )
            )
            || self.code.as_deref() == Some(PAYMENT_REQUIRED)
    }

    /// A failure of the key store as the caller reports it: a missing binding stays what it is
    /// (the operator's to fix, final), anything else is an internal error.
    pub fn key_store(e: GatewayError) -> Self {
        if e.kind == ErrorKind::NotConfigured {
            e
        } else {
            Self::internal(format!("The key store failed: {}", e.message))
        }
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.provider = Some(provider);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<String>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The OpenAI `error.type` for this error.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::NotImplemented => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotConfigured => "configuration_error",
            ErrorKind::Upstream => match self.status {
                400 | 404 | 409 | 413 | 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => "server_error",
            },
            // OpenAI's type for failures on the server's side.
            ErrorKind::BadGateway | ErrorKind::Timeout | ErrorKind::Internal => "server_error",
        }
    }

    /// The OpenAI error body: `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            provider: Option<&'a str>,
        }
        serde_json::to_vec(&Body {
            error: Inner {
                message: &self.message,
                kind: self.error_type(),
                param: self.param.as_deref(),
                code: self.code.as_deref(),
                provider: self.provider,
            },
        })
        .expect("error body serializes")
    }

    /// This error as the end of a provider's stream cut short (`stream_interrupted`, one code
    /// for every protocol); a provider that went quiet for longer than the stream idle timeout
    /// (`upstream` a [`crate::platform::FetchError::Timeout`]) makes it a timeout.
    pub fn interrupted(mut self, upstream: Option<&crate::platform::FetchError>) -> Self {
        if matches!(upstream, Some(crate::platform::FetchError::Timeout)) {
            self.kind = ErrorKind::Timeout;
            self.status = 504;
            self.message.push_str(
                " The provider sent nothing for longer than the gateway's stream idle timeout \
                 (`STREAM_IDLE_TIMEOUT_MS`).",
            );
        }
        self.with_code("stream_interrupted")
    }

    /// The same error as one SSE event, for failures after a stream has started.
    pub fn to_sse_event(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 96);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.to_json());
        out.extend_from_slice(b"\n\n");
        out
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_told_from_words_that_contain_their_prefix() {
        for secret in [
            "sk-sy-0123",
            "openai/sk-proj-abc",
            "Bearer%20sk-sy-0123",
            "Bearer sk-ant-api03-x",
            "gsk_abc",
            "google/AIzaSyabc",
            "/v1/xai-abc/x",
            "fw_abc",
        ] {
            assert!(looks_secret(secret), "{secret}");
        }
        for word in [
            "openai/my-task-model",
            "desk-",
            "gpt-4o",
            "xai/grok-3",
            "risk-sky-model",
        ] {
            assert!(!looks_secret(word), "{word}");
        }
    }
    use serde_json::{json, Value};

    fn body(e: &GatewayError) -> Value {
        serde_json::from_slice(&e.to_json()).unwrap()
    }

    #[test]
    fn renders_the_openai_shape_with_all_four_fields() {
        let e = GatewayError::invalid_param("messages", "`messages` is required.");
        assert_eq!(e.status, 400);
        assert_eq!(
            body(&e),
            json!({"error": {"message": "`messages` is required.", "type": "invalid_request_error", "param": "messages", "code": null}})
        );
    }

    #[test]
    fn model_not_found_is_a_404_with_its_code() {
        let e = GatewayError::model_not_found("nope/x");
        assert_eq!(e.status, 404);
        let b = body(&e);
        assert_eq!(b["error"]["code"], "model_not_found");
        assert_eq!(b["error"]["param"], "model");
        assert!(b["error"]["message"].as_str().unwrap().contains("nope/x"));
    }

    #[test]
    fn statuses_follow_the_cause() {
        assert_eq!(GatewayError::authentication("x").status, 401);
        assert_eq!(
            GatewayError::method_not_allowed("GET", "/v1/chat/completions").status,
            405
        );
        assert_eq!(GatewayError::payload_too_large(10).status, 413);
        assert_eq!(GatewayError::bad_gateway("x").status, 502);
        assert_eq!(GatewayError::timeout("x").status, 504);
        assert_eq!(
            GatewayError::upstream(429, "slow down").error_type(),
            "rate_limit_error"
        );
        assert_eq!(GatewayError::upstream(200, "odd").status, 502);
        assert_eq!(
            GatewayError::upstream(503, "x").error_type(),
            "server_error"
        );
    }

    #[test]
    fn upstream_errors_name_their_provider() {
        let e = GatewayError::upstream(429, "Rate limit reached").with_provider("xai");
        assert_eq!(body(&e)["error"]["provider"], "xai");
        assert!(body(&GatewayError::internal("x"))["error"]
            .get("provider")
            .is_none());
    }

    #[test]
    fn messages_are_escaped_as_json() {
        let e = GatewayError::invalid_request("bad \"quote\"\n");
        assert_eq!(body(&e)["error"]["message"], "bad \"quote\"\n");
        let sse = e.to_sse_event();
        assert!(sse.starts_with(b"data: {"));
        assert!(sse.ends_with(b"}\n\n"));
    }
}
