//! What routing did for one request: `providerMetadata.gateway.routing` and the short
//! `x-switchyard-attempts` header.

use super::{Attempt, AttemptOutcome};
use crate::formats::openai::Trailer;
use serde::Serialize;

/// The error kind of a serving attempt whose stream failed after its content started.
pub const STREAM_FAILED: &str = "stream_failed";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub provider: &'static str,
    /// Which of the provider's credentials (1-based, as its variables are numbered), when the
    /// gateway holds several. Never the credential itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<u8>,
    pub model: String,
    /// The provider's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    pub latency_ms: u64,
    /// Whether the failure was one a later try may get past (not shown).
    #[serde(skip)]
    pub retryable: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingReport {
    pub original_model_id: String,
    pub resolved_provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_provider: Option<&'static str>,
    /// The other providers the plan could fall back to, in order.
    pub fallbacks_available: Vec<&'static str>,
    pub attempts: Vec<AttemptRecord>,
}

impl RoutingReport {
    /// `plan` is never empty. The resolved provider is the first of the requested model's
    /// (a fallback model may come first in the plan, when the model's providers are out).
    pub fn new(original_model_id: &str, plan: &[Attempt]) -> RoutingReport {
        let resolved = plan
            .iter()
            .position(|a| a.model_id == original_model_id)
            .unwrap_or(0);
        let resolved_provider = plan[resolved].target.provider.name;
        RoutingReport {
            original_model_id: original_model_id.to_owned(),
            resolved_provider,
            final_provider: None,
            fallbacks_available: plan
                .iter()
                .enumerate()
                .fold(Vec::new(), |mut names, (i, a)| {
                    let name = a.target.provider.name;
                    if i != resolved && name != resolved_provider && !names.contains(&name) {
                        names.push(name);
                    }
                    names
                }),
            attempts: Vec::new(),
        }
    }

    pub fn record(&mut self, attempt: &Attempt, outcome: AttemptOutcome, latency_ms: u64) {
        if outcome.is_success() {
            self.final_provider = Some(attempt.target.provider.name);
        }
        let target = &attempt.target;
        self.attempts.push(AttemptRecord {
            provider: target.provider.name,
            credential: (target.credentials > 1).then_some(target.number()),
            model: attempt.model_id.clone(),
            status: match outcome {
                AttemptOutcome::Status(s) | AttemptOutcome::Unpaid(s) => Some(s),
                _ => None,
            },
            error_kind: outcome.kind(),
            latency_ms,
            // (A redirect lets the plan's next target try, but a client's retry gets the same.)
            retryable: outcome.is_retryable() && outcome != AttemptOutcome::Redirected,
        });
    }

    /// Whether any attempt failed in a way a later try may get past.
    pub fn any_retryable(&self) -> bool {
        self.attempts.iter().any(|a| a.retryable)
    }

    /// `anthropic:503,anthropic:503,vertex:200`; a provider with several credentials shows
    /// which one: `openai#1:429,openai#2:200`.
    pub fn header(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(a.provider);
            if let Some(c) = a.credential {
                s.push('#');
                s.push_str(&c.to_string());
            }
            s.push(':');
            match a.status {
                Some(st) => s.push_str(&st.to_string()),
                None => s.push_str(a.error_kind.unwrap_or("error")),
            }
        }
        s
    }

    /// `{"gateway":{"routing":{…}}}`, the value of `providerMetadata`.
    pub fn provider_metadata(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Gateway<'a> {
            routing: &'a RoutingReport,
        }
        #[derive(Serialize)]
        struct Meta<'a> {
            gateway: Gateway<'a>,
        }
        serde_json::to_vec(&Meta {
            gateway: Gateway { routing: self },
        })
        .expect("serializes")
    }

    /// A JSON object body with `"providerMetadata"` added as its last field (whitespace around
    /// the object dropped: some providers send blank lines before it while a request waits);
    /// `None` when the body is not a JSON object.
    pub fn splice_into(&self, body: &[u8]) -> Option<Vec<u8>> {
        let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
        if body[start] != b'{' || body[end] != b'}' || start == end {
            return None;
        }
        let empty = body[start + 1..end].iter().all(u8::is_ascii_whitespace);
        let meta = self.provider_metadata();
        let mut out = Vec::with_capacity(end - start + meta.len() + 24);
        out.extend_from_slice(&body[start..end]);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(b"\"providerMetadata\":");
        out.extend_from_slice(&meta);
        out.push(b'}');
        Some(out)
    }

    /// The final stream chunk carrying the metadata ([`Trailer`]).
    /// Should the stream fail after its content started, its serving attempt (the last) shows
    /// `errorKind: "stream_failed"` (its status stays the 200 it answered with).
    pub fn stream_trailer(&self, id: &str, model: &str, created: u64) -> Trailer {
        let mut failed = self.clone();
        if let Some(serving) = failed.attempts.last_mut() {
            serving.error_kind = Some(STREAM_FAILED);
        }
        Trailer::new(id, model, created, &self.provider_metadata()).failed(Trailer::new(
            id,
            model,
            created,
            &failed.provider_metadata(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(provider: f64, credential: f64) -> Draws {
        Draws {
            provider,
            credential,
        }
    }
    use crate::config::tests::config;
    use crate::routing::{plan, Breakers, Draws, RoutingOptions, Weights};
    use serde_json::{json, Value};

    fn report() -> (RoutingReport, Vec<Attempt>) {
        let c = config(&[("ANTHROPIC_API_KEY", "a"), ("VERTEX_API_KEY", "v")]);
        let p = plan(
            "anthropic/claude-sonnet-4-6",
            &RoutingOptions::default(),
            &c,
            &Weights::new(),
            &Breakers::new(3, 1),
            0,
            draws(0.0, 0.0),
        )
        .unwrap();
        (RoutingReport::new("anthropic/claude-sonnet-4-6", &p), p)
    }

    #[test]
    fn records_attempts_for_the_header_and_the_metadata() {
        let (mut r, p) = report();
        r.record(&p[0], AttemptOutcome::Status(503), 12);
        r.record(&p[0], AttemptOutcome::Timeout, 300);
        r.record(&p[1], AttemptOutcome::Status(200), 40);
        assert_eq!(r.header(), "anthropic:503,anthropic:timeout,vertex:200");
        let v: Value = serde_json::from_slice(&r.provider_metadata()).unwrap();
        let routing = &v["gateway"]["routing"];
        assert_eq!(routing["resolvedProvider"], "anthropic");
        assert_eq!(routing["finalProvider"], "vertex");
        assert_eq!(routing["fallbacksAvailable"], json!(["vertex"]));
        assert_eq!(
            routing["attempts"][1],
            json!({"provider":"anthropic","model":"anthropic/claude-sonnet-4-6","errorKind":"timeout","latencyMs":300})
        );
        assert_eq!(routing["attempts"][2]["status"], 200);
    }

    #[test]
    fn the_resolved_provider_is_the_requested_models_even_when_a_fallback_goes_first() {
        // Anthropic, the model's only provider here, is out: the fallback model goes first.
        let c = config(&[("ANTHROPIC_API_KEY", "a"), ("OPENAI_API_KEY", "o")]);
        let mut b = Breakers::new(1, 1000);
        b.record_failure(("anthropic", 0), 0);
        let opts = RoutingOptions {
            models: Some(vec!["openai/gpt-4o".into()]),
            ..Default::default()
        };
        let p = plan(
            "anthropic/claude-sonnet-4-6",
            &opts,
            &c,
            &Weights::new(),
            &b,
            10,
            draws(0.0, 0.0),
        )
        .unwrap();
        assert_eq!(p[0].target.provider.name, "openai");
        let r = RoutingReport::new("anthropic/claude-sonnet-4-6", &p);
        assert_eq!(r.resolved_provider, "anthropic");
        assert_eq!(r.fallbacks_available, vec!["openai"]);
    }

    #[test]
    fn splices_metadata_into_a_json_object_without_reencoding_it() {
        let (r, _) = report();
        let body = br#"{"id":"x","n":1.50}  "#;
        let out = r.splice_into(body).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(
            s.starts_with(r#"{"id":"x","n":1.50,"providerMetadata":{"gateway""#),
            "{s}"
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["providerMetadata"]["gateway"]["routing"]["originalModelId"],
            "anthropic/claude-sonnet-4-6"
        );
        assert!(r.splice_into(b"{}").is_some());
        assert!(r.splice_into(b"[1]").is_none());
        assert!(r.splice_into(b"").is_none());
        assert!(r.splice_into(b" } ").is_none());
        // Blank lines before the object (DeepSeek sends them while a request waits).
        let out = r.splice_into(b"\n\n\r\n {\"id\":\"x\"}\n").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "x");
        assert!(v["providerMetadata"]["gateway"]["routing"].is_object());
    }

    /// The routing chunk reads like any chunk to an OpenAI client: one choice with an empty
    /// delta and no finish reason (so `choices[0]` works, and a stream helper keeps the finish
    /// reason it has) and `usage: null`.
    #[test]
    fn the_trailer_is_an_ordinary_chunk_carrying_the_metadata() {
        let (mut r, p) = report();
        r.record(&p[0], AttemptOutcome::Status(503), 10);
        r.record(&p[1], AttemptOutcome::Status(200), 20);
        let t = r.stream_trailer("gen_1", "anthropic/claude-sonnet-4-6", 7);
        let mut out = Vec::new();
        crate::formats::openai::write_stream_end(&mut out, Some(&t), None);
        let ev = crate::sse::tests::decode_pieces(&[&out]);
        let v: Value = serde_json::from_str(&ev[0].data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["id"], "gen_1");
        assert_eq!(
            v["choices"],
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": null}])
        );
        assert!(v["usage"].is_null() && v.get("usage").is_some());
        assert_eq!(
            v["providerMetadata"]["gateway"]["routing"]["resolvedProvider"],
            "anthropic"
        );
        let serving = v["providerMetadata"]["gateway"]["routing"]["attempts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert!(serving.get("errorKind").is_none(), "{serving}");
        assert!(ev[1].is_done());

        // A stream that fails after content: the serving attempt says so, before the error.
        let mut out = Vec::new();
        let error = crate::error::GatewayError::bad_gateway("cut");
        crate::formats::openai::write_stream_end(&mut out, Some(&t), Some(&error));
        let ev = crate::sse::tests::decode_pieces(&[&out]);
        let v: Value = serde_json::from_str(&ev[0].data).unwrap();
        let routing = &v["providerMetadata"]["gateway"]["routing"];
        let attempts = routing["attempts"].as_array().unwrap();
        assert_eq!(attempts.last().unwrap()["errorKind"], STREAM_FAILED);
        assert_eq!(attempts.last().unwrap()["status"], 200);
        assert_eq!(attempts.len(), r.attempts.len(), "nothing else changes");
        assert!(ev[1].data.contains("\"error\""));
        assert!(ev[2].is_done());
    }
}
