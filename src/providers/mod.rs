//! The upstream providers: who they are, which protocol they speak, where they live.
//!
//! One module per upstream protocol holds the request builder and the response/stream translator
//! (`openai_compat` needs neither: the body and the stream pass through). This file is the registry.

pub mod anthropic;
pub mod gemini;
pub mod native;
pub mod openai_compat;
mod turns;
pub mod vertex;

/// The wire protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI Chat Completions (`POST {base}/chat/completions`, `Authorization: Bearer`).
    OpenAiCompat,
    /// Anthropic Messages (`POST {base}/v1/messages`, `x-api-key`).
    Anthropic,
    /// Google Gemini (`POST {base}/v1beta/models/{m}:generateContent`, `x-goog-api-key`).
    Gemini,
    /// Google Vertex AI (Gemini and Anthropic models, OAuth service-account tokens).
    Vertex,
}

impl Protocol {
    /// Whether `native_model` can be sent with this protocol. Gemini and Vertex put the model
    /// in the URL's path, where `/`, `..`, `?` or `#` would send the gateway's credential to
    /// another resource; their model ids are one path segment of letters, digits, `.`, `-`,
    /// `_` and `@` (`claude-sonnet-4-6@20250929`). The others carry the model in the body.
    pub fn accepts_model_id(self, native_model: &str) -> bool {
        match self {
            Protocol::Gemini | Protocol::Vertex => {
                native_model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
                    && !native_model.starts_with('.')
            }
            Protocol::OpenAiCompat | Protocol::Anthropic => true,
        }
    }
}

/// One provider the gateway can route to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The provider's name in model ids (`xai` in `xai/grok-3`).
    pub name: &'static str,
    /// `<ENV>_API_KEY` and `<ENV>_BASE_URL` configure it.
    pub env: &'static str,
    /// The base URL as the provider's official SDK takes it (with `/v1` where the SDK has it).
    pub default_base_url: &'static str,
    pub protocol: Protocol,
    /// For an OpenAI-compatible provider whose own SDK takes a bare origin in
    /// `<ENV>_BASE_URL` and adds the API path itself (Groq's `/openai/v1`, Cerebras' `/v1`):
    /// that path, added to a base URL given as a bare origin. Empty: the URL is taken as given
    /// (the OpenAI SDK's reading, path included).
    pub origin_path: &'static str,
}

impl ProviderSpec {
    /// The variable numbered `n` (1 for `OPENAI_API_KEY`, 2 for `OPENAI_API_KEY_2`, …).
    pub fn credential_variable(&self, n: u8) -> String {
        match n {
            0 | 1 => format!("{}_API_KEY", self.env),
            n => format!("{}_API_KEY_{n}", self.env),
        }
    }
}

/// Every provider, in the order model listings name them.
pub static PROVIDERS: &[ProviderSpec] = &[
    spec(
        "openai",
        "OPENAI",
        "https://api.openai.com/v1",
        Protocol::OpenAiCompat,
    ),
    spec(
        "anthropic",
        "ANTHROPIC",
        "https://api.anthropic.com",
        Protocol::Anthropic,
    ),
    spec(
        "google",
        "GOOGLE",
        "https://generativelanguage.googleapis.com",
        Protocol::Gemini,
    ),
    spec(
        "vertex",
        "VERTEX",
        "https://aiplatform.googleapis.com",
        Protocol::Vertex,
    ),
    spec("xai", "XAI", "https://api.x.ai/v1", Protocol::OpenAiCompat),
    // groq-sdk: `GROQ_BASE_URL` defaults to https://api.groq.com, requests go to /openai/v1/….
    from_origin(
        spec(
            "groq",
            "GROQ",
            "https://api.groq.com/openai/v1",
            Protocol::OpenAiCompat,
        ),
        "/openai/v1",
    ),
    // mistralai: server https://api.mistral.ai, requests to /v1/….
    from_origin(
        spec(
            "mistral",
            "MISTRAL",
            "https://api.mistral.ai/v1",
            Protocol::OpenAiCompat,
        ),
        "/v1",
    ),
    spec(
        "deepseek",
        "DEEPSEEK",
        "https://api.deepseek.com/v1",
        Protocol::OpenAiCompat,
    ),
    // cerebras-cloud-sdk: `CEREBRAS_BASE_URL` defaults to https://api.cerebras.ai, requests to
    // /v1/….
    from_origin(
        spec(
            "cerebras",
            "CEREBRAS",
            "https://api.cerebras.ai/v1",
            Protocol::OpenAiCompat,
        ),
        "/v1",
    ),
    spec(
        "fireworks",
        "FIREWORKS",
        "https://api.fireworks.ai/inference/v1",
        Protocol::OpenAiCompat,
    ),
    spec(
        "togetherai",
        "TOGETHERAI",
        "https://api.together.xyz/v1",
        Protocol::OpenAiCompat,
    ),
];

const fn spec(
    name: &'static str,
    env: &'static str,
    default_base_url: &'static str,
    protocol: Protocol,
) -> ProviderSpec {
    ProviderSpec {
        name,
        env,
        default_base_url,
        protocol,
        origin_path: "",
    }
}

/// A provider whose SDK reads `<ENV>_BASE_URL` as a bare origin and adds `origin_path`.
const fn from_origin(spec: ProviderSpec, origin_path: &'static str) -> ProviderSpec {
    ProviderSpec {
        origin_path,
        ..spec
    }
}

/// The provider called `name`, if the gateway knows it.
pub fn find(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Providers the gateway no longer serves, and why (said to clients who still ask for them).
static RETIRED: &[(&str, &str)] = &[(
    "perplexity",
    "Perplexity retired its Chat Completions API (Sonar) on 2026-09-27 for its Agent API, \
     which this gateway does not serve.",
)];

/// Why the provider called `name` is no longer served, if it was once.
pub fn retired(name: &str) -> Option<&'static str> {
    RETIRED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_found_by_name_and_env_names_are_upper_case() {
        for p in PROVIDERS {
            assert_eq!(find(p.name), Some(p));
            assert_eq!(p.env, p.env.to_ascii_uppercase());
            assert!(p.default_base_url.starts_with("https://"));
            assert!(!p.default_base_url.ends_with('/'));
        }
        assert_eq!(find("nope"), None);
    }

    #[test]
    fn base_urls_follow_each_official_sdk() {
        assert!(find("openai").unwrap().default_base_url.ends_with("/v1"));
        assert_eq!(
            find("anthropic").unwrap().default_base_url,
            "https://api.anthropic.com"
        );
        assert_eq!(
            find("google").unwrap().default_base_url,
            "https://generativelanguage.googleapis.com"
        );
    }
}
