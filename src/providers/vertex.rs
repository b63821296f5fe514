//! Google Vertex AI: the pure parts.
//!
//! * Auth: a service account signs an RS256 JWT assertion ([`signed_assertion`]) that is traded
//!   for an OAuth access token ([`token_request_body`], [`parse_token_response`]); a
//!   [`TokenCache`] keeps the token until five minutes before it expires. Time is always passed
//!   in: nothing here reads a clock or does I/O.
//! * Routing: Gemini models live under `publishers/google` and take the Gemini body; Claude
//!   models live under `publishers/anthropic` (`rawPredict`/`streamRawPredict`) and take the
//!   Anthropic body without `model` and with `anthropic_version: vertex-2023-10-16`.
//!
//! Unlike the other providers, response translation needs to know the [`Publisher`]; use
//! [`publisher_for`] on the native model id.

use jwt_compact::alg::{Rsa, RsaPrivateKey};
use jwt_compact::{AlgorithmExt, Claims, Header};
use rsa::pkcs8::DecodePrivateKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{anthropic, gemini};
use crate::canonical::{ChatRequest, ChatResponse, Content, ContentPart, Message, StreamPart};
use crate::error::GatewayError;
use crate::sse::SseEvent;

/// The OAuth scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when the service account names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The `anthropic_version` Vertex expects in Claude bodies.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// A cached token is used until this many seconds before it expires.
pub const REFRESH_MARGIN_SECS: u64 = 300;
/// Lifetime of a signed assertion.
const ASSERTION_TTL_SECS: u64 = 3600;
const PROVIDER: &str = "Vertex AI";

/// The fields of a Google service-account key file that the gateway uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URI.to_owned()
}

impl std::fmt::Debug for ServiceAccount {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses a service-account key file (the JSON Google issues).
    pub fn from_json(json: &[u8]) -> Result<Self, GatewayError> {
        serde_json::from_slice(json).map_err(|_| {
            GatewayError::not_configured(
                "The Vertex AI service account is not valid JSON with client_email and private_key.",
            )
        })
    }
}

/// The JWT claims Google's token endpoint expects.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// Signs the RS256 JWT assertion for `sa`, issued at `now_secs`, valid for an hour. Its
/// audience is the account's own `token_uri` (Google's token endpoint, "always
/// <https://oauth2.googleapis.com/token>" in Google's server-to-server guide), whatever URL the
/// exchange is sent to (`VERTEX_TOKEN_URL`: a Private Service Connect endpoint or a proxy), as
/// Google's auth libraries sign it.
pub fn signed_assertion(sa: &ServiceAccount, now_secs: u64) -> Result<String, GatewayError> {
    let audience = if sa.token_uri.is_empty() {
        DEFAULT_TOKEN_URI
    } else {
        sa.token_uri.as_str()
    };
    let key = RsaPrivateKey::from_pkcs8_pem(&sa.private_key).map_err(|_| {
        GatewayError::not_configured(
            "The Vertex AI service account's private_key is not a PKCS#8 PEM RSA key.",
        )
    })?;
    let mut header = Header::empty().with_token_type("JWT");
    if let Some(kid) = &sa.private_key_id {
        header = header.with_key_id(kid);
    }
    let claims = Claims::new(AssertionClaims {
        iss: sa.client_email.clone(),
        scope: SCOPE.to_owned(),
        aud: audience.to_owned(),
        iat: now_secs,
        exp: now_secs + ASSERTION_TTL_SECS,
    });
    Rsa::rs256()
        .token(&header, &claims, &key)
        .map_err(|e| GatewayError::internal(format!("Could not sign the Vertex AI assertion: {e}")))
}

/// The form body that trades an assertion for an access token.
pub fn token_request_body(assertion: &str) -> String {
    // The assertion is base64url and dots only: nothing in it needs escaping.
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    )
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The access token and its lifetime in seconds from the token endpoint's answer (`status`,
/// `body`). A 429 or 5xx is the endpoint's trouble, not the account's: a 502 another attempt
/// may get past. Any other refusal is the service account's (`upstream_authentication_failed`),
/// with Google's reason and the `variable` that holds the account; `assertion` (the signed JWT,
/// good for an hour) is kept out of it.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    assertion: &str,
    variable: &str,
) -> Result<(String, u64), GatewayError> {
    if status == 429 || status >= 500 {
        return Err(GatewayError::bad_gateway(format!(
            "Google's token endpoint answered HTTP {status}."
        )));
    }
    if (300..400).contains(&status) {
        // Not followed (the signed assertion would go where it names).
        return Err(GatewayError::bad_gateway(format!(
            "Google's token endpoint answered with a redirect (HTTP {status}), which the \
             gateway does not follow: check the token URL (VERTEX_TOKEN_URL, or the \
             account's token_uri in {variable})."
        ))
        .with_code("upstream_redirect"));
    }
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        GatewayError::bad_gateway(
            "Google's token endpoint returned a response the gateway could not read.",
        )
    })?;
    match (resp.access_token, resp.error) {
        (Some(token), None) if !token.is_empty() && (200..300).contains(&status) => {
            Ok((token, resp.expires_in.unwrap_or(3600)))
        }
        (_, error) => {
            let why = resp
                .error_description
                .or(error)
                .unwrap_or_else(|| format!("HTTP {status}, no access_token"))
                .replace(assertion, "[assertion]");
            Err(GatewayError::credential_refused(format!(
                "Google refused the Vertex AI service account in {variable}: {why}"
            )))
        }
    }
}

/// An access token and when it expires; [`TokenCache::get`] hands it out until
/// [`REFRESH_MARGIN_SECS`] before that.
#[derive(Debug, Default, Clone)]
pub struct TokenCache {
    token: Option<String>,
    expires_at: u64,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token, if it is still good at `now` (Unix seconds).
    pub fn get(&self, now: u64) -> Option<&str> {
        let token = self.token.as_deref()?;
        (now + REFRESH_MARGIN_SECS < self.expires_at).then_some(token)
    }

    /// Whether `token` is the one cached.
    pub fn holds(&self, token: &str) -> bool {
        self.token.as_deref() == Some(token)
    }

    /// Stores a token that the endpoint said lives `expires_in` seconds from `now`.
    pub fn put(&mut self, token: String, expires_in: u64, now: u64) {
        self.token = Some(token);
        self.expires_at = now.saturating_add(expires_in);
    }
}

/// Who publishes a model on Vertex AI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    Google,
    Anthropic,
}

/// Claude models are Anthropic's; everything else is taken as Google's.
pub fn publisher_for(native_model: &str) -> Publisher {
    if native_model.starts_with("claude") {
        Publisher::Anthropic
    } else {
        Publisher::Google
    }
}

/// The host for `location`: `https://{location}-aiplatform.googleapis.com` for a region,
/// `https://aiplatform.googleapis.com` for `global`, and the multi-region endpoints
/// `https://aiplatform.{us|eu}.rep.googleapis.com` for `us` and `eu` (Google's multi-region
/// endpoint documentation; `eu-aiplatform.googleapis.com` does not serve them).
pub fn default_base_url(location: &str) -> String {
    match location {
        "global" => "https://aiplatform.googleapis.com".to_owned(),
        "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
        region => format!("https://{region}-aiplatform.googleapis.com"),
    }
}

/// `{host}/v1/projects/{project}/locations/{location}`: the base [`endpoint`] takes.
pub fn location_base(host: &str, project: &str, location: &str) -> String {
    format!(
        "{}/v1/projects/{project}/locations/{location}",
        host.trim_end_matches('/')
    )
}

/// The model URL under a [`location_base`]: `generateContent`/`streamGenerateContent?alt=sse`
/// for Google models, `rawPredict`/`streamRawPredict` for Claude.
pub fn endpoint(base_url: &str, native_model: &str, stream: bool) -> String {
    let base = base_url.trim_end_matches('/');
    match publisher_for(native_model) {
        Publisher::Google => format!(
            "{base}/publishers/google/models/{native_model}:{}",
            gemini::method(stream)
        ),
        Publisher::Anthropic => {
            let method = if stream {
                "streamRawPredict"
            } else {
                "rawPredict"
            };
            format!("{base}/publishers/anthropic/models/{native_model}:{method}")
        }
    }
}

/// The headers every Vertex AI request carries, given an OAuth access token.
pub fn auth_headers(access_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {access_token}")),
        ("content-type", "application/json".to_owned()),
    ]
}

/// A Claude body as Vertex takes it under Google's default organization policy: tools without
/// `strict`, and no `output_config.format` (refused naming `response_format`).
fn without_structured_outputs(body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    if body
        .get("output_config")
        .is_some_and(|c| c.get("format").is_some())
    {
        return Err(GatewayError::invalid_param(
            "response_format",
            "Claude on Vertex AI answers in a JSON schema only where the Google Cloud \
             organization allows structured outputs (constraints/vertexai.allowedPartnerModelFeatures, \
             off by default); if yours does, set VERTEX_STRUCTURED_OUTPUTS=1.",
        ));
    }
    for tool in body
        .get_mut("tools")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(t) = tool.as_object_mut() {
            t.remove("strict");
        }
    }
    Ok(())
}

/// Claude on Vertex AI takes images inline only ("URL sources are not supported"): an http(s)
/// image URL is refused naming the part, before anything is sent.
fn refuse_image_urls(req: &ChatRequest) -> Result<(), GatewayError> {
    for (i, m) in req.messages.iter().enumerate() {
        let Message::User {
            content: Content::Parts(parts),
        } = m
        else {
            continue;
        };
        for (k, part) in parts.iter().enumerate() {
            if let ContentPart::ImageUrl { image_url } = part {
                if !image_url.url.starts_with("data:") {
                    return Err(GatewayError::invalid_param(
                        &format!("messages[{i}].content[{k}].image_url"),
                        "Claude on Vertex AI takes images as base64 data URLs, not http(s) URLs.",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The body for `native_model`: Gemini's for Google models, Anthropic's (adjusted) for Claude.
/// `structured_outputs`: whether the organization allows Claude's structured outputs
/// (`VERTEX_STRUCTURED_OUTPUTS`); Google's default policy refuses them, so without it a tool's
/// `strict` is not sent (accepted without effect, as for Gemini) and a JSON schema answer is
/// refused before anything is sent (the next target, e.g. Anthropic's own API, may serve it).
pub fn build_request(
    req: &ChatRequest,
    native_model: &str,
    structured_outputs: bool,
) -> Result<Vec<u8>, GatewayError> {
    let body = match publisher_for(native_model) {
        Publisher::Google => gemini::build_body(req, native_model, PROVIDER)?,
        Publisher::Anthropic => {
            refuse_image_urls(req)?;
            let mut body = anthropic::build_body(req, native_model)?;
            body.remove("model");
            body.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
            if !structured_outputs {
                without_structured_outputs(&mut body)?;
            }
            body
        }
    };
    Ok(serde_json::to_vec(&Value::Object(body)).expect("body serializes"))
}

/// Translates a non-streaming response from `publisher`'s model.
pub fn translate_response(publisher: Publisher, body: &[u8]) -> Result<ChatResponse, GatewayError> {
    match publisher {
        Publisher::Google => gemini::translate_response_for(body, PROVIDER),
        Publisher::Anthropic => anthropic::translate_response(body),
    }
}

/// Maps a Vertex AI error. Vertex's own errors (quota, auth, routing) are Google-shaped even for
/// Claude; Claude's model errors are Anthropic-shaped.
pub fn translate_error(
    publisher: Publisher,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
) -> GatewayError {
    let anthropic_shaped = serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v["type"] == "error" || v["error"]["type"].is_string());
    if publisher == Publisher::Anthropic && anthropic_shaped {
        anthropic::translate_error(status, retry_after, body)
    } else {
        gemini::translate_google_error(PROVIDER, status, retry_after, body)
    }
}

/// The stream translator for `publisher`'s model.
#[derive(Debug)]
pub enum StreamTranslator {
    Google(gemini::StreamTranslator),
    Anthropic(anthropic::StreamTranslator),
}

impl StreamTranslator {
    pub fn new(publisher: Publisher) -> Self {
        match publisher {
            Publisher::Google => {
                StreamTranslator::Google(gemini::StreamTranslator::for_provider(PROVIDER))
            }
            Publisher::Anthropic => StreamTranslator::Anthropic(anthropic::StreamTranslator::new()),
        }
    }

    /// Translates one SSE event.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamPart>) {
        match self {
            StreamTranslator::Google(t) => t.on_event(ev, out),
            StreamTranslator::Anthropic(t) => t.on_event(ev, out),
        }
    }

    /// Ends the stream (an error part if it was cut short).
    pub fn finish(&mut self, out: &mut Vec<StreamPart>) {
        match self {
            StreamTranslator::Google(t) => t.finish(out),
            StreamTranslator::Anthropic(t) => t.finish(out),
        }
    }

    /// Whether the provider has said its stream is over (Anthropic's `message_stop`), so the
    /// client's may end without waiting for the connection to close. Gemini says so only by
    /// closing it (usage may follow the finish reason).
    pub fn ended(&self) -> bool {
        match self {
            StreamTranslator::Google(_) => false,
            StreamTranslator::Anthropic(t) => t.ended(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::UntrustedToken;
    use rsa::RsaPublicKey;

    fn test_account() -> ServiceAccount {
        let path = format!(
            "{}/tests/fixtures/vertex/test_service_account.json",
            env!("CARGO_MANIFEST_DIR")
        );
        ServiceAccount::from_json(&std::fs::read(path).unwrap()).unwrap()
    }

    fn request(v: Value) -> ChatRequest {
        ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn claude_on_vertex_refuses_image_urls_by_name_and_takes_data_urls() {
        let with = |url: &str| {
            request(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": url}}
                ]}]}),
            )
        };
        let e = build_request(
            &with("https://example.com/cat.png"),
            "claude-sonnet-4-6@x",
            false,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("messages[0].content[1].image_url"))
        );
        assert!(build_request(
            &with("data:image/png;base64,AAAA"),
            "claude-sonnet-4-6",
            false
        )
        .is_ok());
        // Gemini on Vertex fetches URLs itself.
        assert!(build_request(
            &with("https://example.com/cat.png"),
            "gemini-2.5-flash",
            false
        )
        .is_ok());
    }

    #[test]
    fn claude_structured_outputs_go_to_vertex_only_where_the_organization_allows_them() {
        let req = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}]}),
        );
        let body = |allowed: bool| -> Value {
            serde_json::from_slice(&build_request(&req, "claude-sonnet-4-6", allowed).unwrap())
                .unwrap()
        };
        // Google's default policy: the tool goes without `strict` (no effect, as for Gemini).
        assert!(body(false)["tools"][0].get("strict").is_none());
        assert_eq!(body(false)["tools"][0]["name"], "f");
        assert_eq!(body(true)["tools"][0]["strict"], true);
        // A JSON schema answer is refused before anything is sent, naming the setting.
        let schema = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
        );
        let e = build_request(&schema, "claude-sonnet-4-6", false).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("response_format"))
        );
        assert!(
            e.message.contains("VERTEX_STRUCTURED_OUTPUTS"),
            "{}",
            e.message
        );
        let b: Value =
            serde_json::from_slice(&build_request(&schema, "claude-sonnet-4-6", true).unwrap())
                .unwrap();
        assert!(b["output_config"]["format"].is_object(), "{b}");
        // Gemini on Vertex is not concerned.
        assert!(build_request(&schema, "gemini-2.5-flash", false).is_ok());
    }

    #[test]
    fn parses_the_service_account_without_printing_the_key() {
        let sa = test_account();
        assert_eq!(
            sa.client_email,
            "gateway@switchyard-test.iam.gserviceaccount.com"
        );
        assert_eq!(sa.token_uri, DEFAULT_TOKEN_URI);
        assert_eq!(sa.project_id.as_deref(), Some("switchyard-test"));
        assert!(!format!("{sa:?}").contains("PRIVATE KEY"));
        assert_eq!(ServiceAccount::from_json(b"{}").unwrap_err().status, 503);
    }

    #[test]
    fn signs_an_rs256_assertion_that_verifies() {
        let sa = test_account();
        let jwt = signed_assertion(&sa, 1_700_000_000).unwrap();
        let untrusted = UntrustedToken::new(&jwt).unwrap();
        assert_eq!(untrusted.algorithm(), "RS256");
        assert_eq!(untrusted.header().key_id.as_deref(), Some("test-key-1"));
        assert_eq!(untrusted.header().token_type.as_deref(), Some("JWT"));
        let public = RsaPublicKey::from(&RsaPrivateKey::from_pkcs8_pem(&sa.private_key).unwrap());
        // jwt-compact reads `iat`/`exp` into its own fields, the rest into the custom claims.
        #[derive(Deserialize, Debug, PartialEq)]
        struct Rest {
            iss: String,
            scope: String,
            aud: String,
        }
        let token = Rsa::rs256()
            .validator::<Rest>(&public)
            .validate(&untrusted)
            .unwrap();
        let claims = token.claims();
        assert_eq!(
            claims.custom,
            Rest {
                iss: sa.client_email.clone(),
                scope: SCOPE.into(),
                aud: DEFAULT_TOKEN_URI.into()
            }
        );
        assert_eq!(claims.issued_at.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(claims.expiration.unwrap().timestamp(), 1_700_003_600);
        let payload = jwt.split('.').nth(1).unwrap();
        let tampered = jwt.replace(payload, "eyJpc3MiOiJ4In0");
        let tampered = UntrustedToken::new(&tampered).unwrap();
        assert!(
            Rsa::rs256()
                .validator::<Rest>(&public)
                .validate(&tampered)
                .is_err(),
            "a changed payload fails"
        );
    }

    #[test]
    fn a_bad_key_is_a_configuration_error() {
        let mut sa = test_account();
        sa.private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert_eq!(signed_assertion(&sa, 0).unwrap_err().status, 503);
    }

    #[test]
    fn token_exchange_body_and_response() {
        assert_eq!(
            token_request_body("a.b.c"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c"
        );
        let ok = br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#;
        assert_eq!(
            parse_token_response(200, ok, "a.b.c", "VERTEX_API_KEY").unwrap(),
            ("ya29.x".to_owned(), 3599)
        );
        let refused = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        let e = parse_token_response(400, refused, "a.b.c", "VERTEX_API_KEY_2").unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (502, Some("upstream_authentication_failed"))
        );
        assert!(e.message.contains("in VERTEX_API_KEY_2:"), "{}", e.message);
        assert!(e.message.contains("Invalid JWT Signature."));
        assert_eq!(
            parse_token_response(200, b"<html>", "a.b.c", "VERTEX_API_KEY")
                .unwrap_err()
                .status,
            502
        );
        // A redirect (with a JSON body or none) is not the account's fault either.
        for body in [&b""[..], br#"{"error":"moved"}"#] {
            let e = parse_token_response(302, body, "a.b.c", "VERTEX_API_KEY").unwrap_err();
            assert_eq!(e.code.as_deref(), Some("upstream_redirect"));
            assert!(!e.is_credential_refused());
        }
        // The endpoint's own trouble is not the account's fault.
        let e = parse_token_response(
            503,
            br#"{"error":"backend_error"}"#,
            "a.b.c",
            "VERTEX_API_KEY",
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("upstream_unavailable"));
        // A token endpoint that echoes the assertion does not get it to the client.
        let echo = br#"{"error":"invalid_grant","error_description":"bad assertion a.b.c"}"#;
        let e = parse_token_response(400, echo, "a.b.c", "VERTEX_API_KEY").unwrap_err();
        assert!(!e.message.contains("a.b.c"), "{}", e.message);
    }

    #[test]
    fn token_cache_refreshes_five_minutes_early() {
        let mut c = TokenCache::new();
        assert_eq!(c.get(0), None);
        c.put("t".into(), 3600, 1000);
        assert_eq!(c.get(1000), Some("t"));
        assert_eq!(c.get(1000 + 3600 - 301), Some("t"));
        assert_eq!(c.get(1000 + 3600 - 300), None);
        assert_eq!(c.get(10_000), None);
    }

    #[test]
    fn urls_follow_the_publisher() {
        assert_eq!(
            default_base_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base_url("global"),
            "https://aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base_url("eu"),
            "https://aiplatform.eu.rep.googleapis.com"
        );
        assert_eq!(
            default_base_url("us"),
            "https://aiplatform.us.rep.googleapis.com"
        );
        let base = location_base(&default_base_url("us-east5"), "p1", "us-east5");
        assert_eq!(
            endpoint(&base, "gemini-2.5-pro", true),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            endpoint(&base, "gemini-2.5-pro", false),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/google/models/gemini-2.5-pro:generateContent"
        );
        assert_eq!(
            endpoint(&base, "claude-sonnet-4-5@20250929", false),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
        );
        assert!(endpoint(&base, "claude-sonnet-4-5", true).ends_with(":streamRawPredict"));
        assert_eq!(
            auth_headers("ya29")[0],
            ("authorization", "Bearer ya29".to_owned())
        );
    }

    #[test]
    fn claude_bodies_drop_model_and_name_the_vertex_version() {
        let req = request(
            json!({"model": "vertex/claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        );
        let b: Value =
            serde_json::from_slice(&build_request(&req, "claude-sonnet-4-5", false).unwrap())
                .unwrap();
        assert!(b.get("model").is_none());
        assert_eq!(b["anthropic_version"], ANTHROPIC_VERSION);
        assert_eq!(b["stream"], true);
        assert_eq!(b["messages"][0]["content"][0]["text"], "hi");
        let b: Value =
            serde_json::from_slice(&build_request(&req, "gemini-2.5-pro", false).unwrap()).unwrap();
        assert_eq!(
            b["contents"][0],
            json!({"role": "user", "parts": [{"text": "hi"}]})
        );
        let bad = request(json!({"model": "m", "messages": [], "logit_bias": {"1": 1}}));
        assert!(build_request(&bad, "gemini-2.5-pro", false)
            .unwrap_err()
            .message
            .contains("Vertex AI"));
    }

    #[test]
    fn errors_and_streams_follow_the_shape_of_the_body() {
        let quota = br#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.","status":"RESOURCE_EXHAUSTED"}}"#;
        let e = translate_error(Publisher::Anthropic, 429, None, quota);
        assert_eq!(
            (e.status, e.message.starts_with("Vertex AI: ")),
            (429, true)
        );
        let overloaded =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            translate_error(Publisher::Anthropic, 529, None, overloaded).status,
            503
        );
        let mut t = StreamTranslator::new(Publisher::Google);
        let mut parts = Vec::new();
        t.finish(&mut parts);
        assert!(matches!(&parts[0], StreamPart::Error(e) if e.message.contains("Vertex AI")));
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},"finishReason":"STOP"}]}"#;
        let r = translate_response(Publisher::Google, body).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("hi"));
    }
}
