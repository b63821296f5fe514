//! `POST /v1/chat/completions`.
//!
//! Fast path (OpenAI-compatible provider): the body goes out as sent with only `model` rewritten,
//! and the provider's response body (JSON or event stream) goes back to the client untouched, as
//! the platform's own stream: no byte of it passes through the core, and a client that cancels
//! cancels the upstream request with it.

use super::{Gateway, OutBody, Outbound};
use crate::auth::KeyRecord;
use crate::chat_body::RawObject;
use crate::error::GatewayError;
use crate::platform::{Clock, FetchError, Upstream, UpstreamRequest};
use crate::providers::{Protocol, ProviderSpec};
use crate::routing::{self, Target};

impl Gateway {
    pub(super) async fn chat<P: Clock + Upstream>(
        &self,
        p: &P,
        _key: &KeyRecord,
        body: &[u8],
        request_id: &str,
    ) -> Result<Outbound<P::Body>, GatewayError> {
        let obj = RawObject::parse(body)?;
        let summary = obj.chat_summary()?;
        let targets = routing::resolve(&summary.model, &self.config)?;
        let target = &targets[0];
        match target.provider.protocol {
            Protocol::OpenAiCompat => self.openai_compat(p, &obj, target, request_id).await,
            Protocol::Anthropic | Protocol::Gemini | Protocol::Vertex => {
                Err(GatewayError::not_configured(format!(
                    "The provider `{}` is not available in this gateway build yet.",
                    target.provider.name
                )))
            }
        }
    }

    async fn openai_compat<P: Upstream>(
        &self,
        p: &P,
        obj: &RawObject<'_>,
        target: &Target,
        request_id: &str,
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
                ("x-request-id", request_id.to_owned()),
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
    let message = if secret.len() >= 8 {
        message.replace(secret, "[redacted]")
    } else {
        message
    };
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
