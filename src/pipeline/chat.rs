//! `POST /v1/chat/completions`.
//!
//! Fast path (OpenAI-compatible provider): the body goes out as sent with only `model` rewritten,
//! and the provider's response body (JSON or event stream) goes back to the client untouched, as
//! the platform's own stream: no byte of it passes through the core, and a client that cancels
//! cancels the upstream request with it.
//!
//! Translated path (Anthropic, Gemini, Vertex): the body is decoded into the canonical request and
//! built in the provider's protocol; the answer comes back as one OpenAI body, or as a stream
//! rewritten event by event by a pure state machine.

use super::{Gateway, OutBody, Outbound};
use crate::auth::KeyRecord;
use crate::canonical::ChatRequest;
use crate::chat_body::{ChatSummary, RawObject};
use crate::error::GatewayError;
use crate::formats::openai::{self, ChunkEncoder};
use crate::platform::{Clock, FetchError, Upstream, UpstreamRequest};
use crate::providers::native::{Native, TranslatedStream};
use crate::providers::ProviderSpec;
use crate::routing::{self, Target};

/// The ids of one chat request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ids<'a> {
    /// `x-request-id`, forwarded upstream.
    pub request: &'a str,
    /// `x-generation-id`; also the completion id of translated responses.
    pub generation: &'a str,
}

impl Gateway {
    pub(super) async fn chat<P: Clock + Upstream>(
        &self,
        p: &P,
        _key: &KeyRecord,
        body: &[u8],
        ids: Ids<'_>,
    ) -> Result<Outbound<P::Body>, GatewayError> {
        let obj = RawObject::parse(body)?;
        let summary = obj.chat_summary()?;
        let targets = routing::resolve(&summary.model, &self.config)?;
        let target = &targets[0];
        match Native::of(target.provider.protocol, &target.native_model) {
            None => self.openai_compat(p, &obj, target, ids).await,
            Some(native) => {
                self.translated(p, native, body, &summary, target, ids)
                    .await
            }
        }
    }

    async fn openai_compat<P: Upstream>(
        &self,
        p: &P,
        obj: &RawObject<'_>,
        target: &Target,
        ids: Ids<'_>,
    ) -> Result<Outbound<P::Body>, GatewayError> {
        let provider = target.provider;
        let cfg = self
            .config
            .provider(provider.name)
            .expect("every provider has a config");
        let secret = cfg.api_key.as_deref().unwrap_or_default();
        let req = UpstreamRequest {
            url: format!("{}/chat/completions", cfg.base_url),
            headers: vec![
                ("authorization", format!("Bearer {secret}")),
                ("content-type", "application/json".to_owned()),
                ("x-request-id", ids.request.to_owned()),
            ],
            body: obj.to_json_with_model(&target.native_model),
        };
        let resp = p.fetch(req).await.map_err(|e| fetch_error(provider, &e))?;
        if !(200..300).contains(&resp.status) {
            let bytes = p.read_body(resp.body).await.unwrap_or_default();
            return Err(upstream_error(
                provider,
                resp.status,
                resp.retry_after,
                &bytes,
                secret,
            ));
        }
        let content_type = resp
            .content_type
            .unwrap_or_else(|| "application/json".to_owned());
        Ok(Outbound {
            status: resp.status,
            headers: vec![
                ("content-type", content_type),
                ("x-switchyard-provider", provider.name.to_owned()),
            ],
            body: OutBody::Upstream(resp.body),
        })
    }

    /// A provider with its own protocol: the request is translated from OpenAI chat, and the
    /// response (whole, or event by event) back to it.
    async fn translated<P: Clock + Upstream>(
        &self,
        p: &P,
        native: Native,
        body: &[u8],
        summary: &ChatSummary,
        target: &Target,
        ids: Ids<'_>,
    ) -> Result<Outbound<P::Body>, GatewayError> {
        let provider = target.provider;
        let chat = ChatRequest::from_json(body)?;
        let native_body = native.build_request(&chat, &target.native_model)?;
        let cfg = self
            .config
            .provider(provider.name)
            .expect("every provider has a config");
        let (credential, base) = match native {
            Native::Vertex(_) => self.vertex_session(p).await?,
            _ => (
                cfg.api_key.clone().unwrap_or_default(),
                cfg.base_url.clone(),
            ),
        };
        let mut headers = native.auth_headers(&credential);
        headers.push(("x-request-id", ids.request.to_owned()));
        let req = UpstreamRequest {
            url: native.endpoint(&base, &target.native_model, summary.stream),
            headers,
            body: native_body,
        };
        let resp = p.fetch(req).await.map_err(|e| fetch_error(provider, &e))?;
        if !(200..300).contains(&resp.status) {
            let bytes = p.read_body(resp.body).await.unwrap_or_default();
            let mut e = native.translate_error(resp.status, resp.retry_after, &bytes);
            e.message = scrub(e.message, &credential);
            return Err(e.with_provider(provider.name));
        }
        let created = p.now_ms() / 1000;
        let mut headers = vec![("x-switchyard-provider", provider.name.to_owned())];
        if summary.stream {
            headers.push((
                "content-type",
                "text/event-stream; charset=utf-8".to_owned(),
            ));
            headers.push(("cache-control", "no-cache".to_owned()));
            let encoder = ChunkEncoder::new(
                ids.generation,
                &summary.model,
                created,
                summary.include_usage,
            );
            let transform = TranslatedStream::new(native, encoder);
            return Ok(Outbound {
                status: 200,
                headers,
                body: OutBody::Transformed(resp.body, Box::new(transform)),
            });
        }
        let bytes = p
            .read_body(resp.body)
            .await
            .map_err(|e| fetch_error(provider, &e))?;
        let mut answer = native
            .translate_response(&bytes)
            .map_err(|e| e.with_provider(provider.name))?;
        answer.id = ids.generation.to_owned();
        answer.model = summary.model.clone();
        answer.created = created;
        headers.push(("content-type", "application/json".to_owned()));
        Ok(Outbound {
            status: 200,
            headers,
            body: OutBody::Bytes(openai::encode_response(&answer)),
        })
    }
}

/// Removes a credential from a message, in case a provider echoes it.
fn scrub(message: String, secret: &str) -> String {
    if secret.len() >= 8 && message.contains(secret) {
        message.replace(secret, "[redacted]")
    } else {
        message
    }
}

/// A provider that could not be reached: 502, or 504 when it did not answer in time.
pub(crate) fn fetch_error(provider: &'static ProviderSpec, e: &FetchError) -> GatewayError {
    match e {
        FetchError::Timeout => GatewayError::timeout(format!(
            "The provider `{}` did not answer in time.",
            provider.name
        )),
        FetchError::Network(detail) => GatewayError::bad_gateway(format!(
            "Could not reach the provider `{}`: {detail}",
            provider.name
        )),
    }
    .with_provider(provider.name)
}

/// An error answer from an OpenAI-compatible provider, kept in OpenAI's shape: its status, message,
/// param and code, the provider named. The provider's credential is scrubbed from the message in
/// case the provider echoes it.
pub(crate) fn upstream_error(
    provider: &'static ProviderSpec,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
    secret: &str,
) -> GatewayError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().map(|v| v.get("error").unwrap_or(v));
    let field = |name: &str| -> Option<String> {
        match err?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let message = match err {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => field("message")
            .or_else(|| field("detail"))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    format!("The provider answered with HTTP {status}.")
                } else {
                    text.chars().take(1000).collect()
                }
            }),
    };
    let message = scrub(message, secret);
    let mut e = GatewayError::upstream(status, message)
        .with_provider(provider.name)
        .with_retry_after(retry_after);
    e.param = field("param");
    e.code = field("code").or_else(|| {
        err.and_then(|e| e.get("type"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers;

    fn openai() -> &'static ProviderSpec {
        providers::find("openai").unwrap()
    }

    #[test]
    fn an_openai_error_body_keeps_status_message_param_and_code() {
        let body = br#"{"error":{"message":"Invalid 'temperature': 3 > 2","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#;
        let e = upstream_error(openai(), 400, None, body, "sk-xyz-12345678");
        assert_eq!(e.status, 400);
        assert_eq!(e.message, "Invalid 'temperature': 3 > 2");
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert_eq!(e.code.as_deref(), Some("invalid_value"));
        assert_eq!(e.provider, Some("openai"));
    }

    #[test]
    fn rate_limits_keep_retry_after_and_other_shapes_are_understood() {
        let e = upstream_error(
            openai(),
            429,
            Some("7".into()),
            br#"{"error":"slow down"}"#,
            "",
        );
        assert_eq!((e.status, e.message.as_str()), (429, "slow down"));
        assert_eq!(e.retry_after.as_deref(), Some("7"));
        assert_eq!(e.error_type(), "rate_limit_error");
        let e = upstream_error(openai(), 422, None, br#"{"detail":"bad field"}"#, "");
        assert_eq!(e.message, "bad field");
        let e = upstream_error(openai(), 503, None, b"<html>upstream down</html>", "");
        assert_eq!(e.message, "<html>upstream down</html>");
        let e = upstream_error(openai(), 500, None, b"", "");
        assert_eq!(e.message, "The provider answered with HTTP 500.");
    }

    #[test]
    fn an_echoed_credential_is_scrubbed() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-abcdef123456."}}"#;
        let e = upstream_error(openai(), 401, None, body, "sk-live-abcdef123456");
        assert!(!e.message.contains("sk-live-abcdef123456"), "{}", e.message);
        assert!(e.message.contains("[redacted]"));
    }

    #[test]
    fn transport_failures_are_502_or_504() {
        assert_eq!(
            fetch_error(openai(), &FetchError::Network("refused".into())).status,
            502
        );
        assert_eq!(fetch_error(openai(), &FetchError::Timeout).status, 504);
    }
}
