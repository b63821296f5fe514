//! Gateway configuration, read once per isolate from the worker's environment.
//!
//! Reading goes through a lookup function so the same code serves the edge (secrets and vars)
//! and native tests (a map). Secret values are held here and nowhere else; `Debug` redacts them.

use crate::providers::{Protocol, ProviderSpec, PROVIDERS};
use crate::routing::{RetryPolicy, Weights};
use std::collections::HashMap;

/// Default body limit for inbound requests (10 MiB); override with `MAX_REQUEST_BYTES`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Default per-attempt time to first byte (to first content for a stream): 10 minutes, the
/// official OpenAI and Anthropic SDKs' own default. A non-streamed answer arrives whole, and a
/// reasoning model may think for minutes before its first token: a shorter default would cut
/// (and pay again for) generations that succeed when the provider is called directly. Keys and
/// requests set `timeoutMs` for quicker failover.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;
/// Default time for a whole request, every attempt included: room for one fallback after an
/// attempt that ran to its timeout.
pub const DEFAULT_TOTAL_TIMEOUT_MS: u64 = 900_000;
/// Default time a gateway-key lookup stays cached in the isolate; override with `KEY_CACHE_TTL_MS`.
pub const DEFAULT_KEY_CACHE_TTL_MS: u64 = 30_000;

/// How many credentials one provider may have: `<PROVIDER>_API_KEY`, then `<PROVIDER>_API_KEY_2`
/// up to `<PROVIDER>_API_KEY_9`.
pub const MAX_CREDENTIALS: usize = 9;

/// One provider's resolved settings.
pub struct ProviderConfig {
    pub spec: &'static ProviderSpec,
    /// The gateway's credentials for this provider, in the order of their variables (empty when
    /// none is set). Requests spread over them; one that fails is retried on the next.
    pub api_keys: Vec<String>,
    /// Base URL without a trailing slash.
    pub base_url: String,
}

/// Vertex AI settings beyond the credential (`VERTEX_API_KEY` holds the service-account JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexConfig {
    /// `VERTEX_PROJECT`, else the service account's `project_id`.
    pub project: Option<String>,
    /// `VERTEX_LOCATION`, default `global`.
    pub location: String,
    /// `VERTEX_TOKEN_URL`, else the service account's `token_uri`.
    pub token_url: Option<String>,
}

pub struct Config {
    pub admin_token: Option<String>,
    pub vertex: VertexConfig,
    /// Retry limits (`RETRY_MAX_ATTEMPTS` per provider, `RETRY_BASE_DELAY_MS`).
    pub retry: RetryPolicy,
    /// Per-attempt time to first byte unless a request says otherwise (`DEFAULT_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// Whole-request time unless a request says otherwise (`DEFAULT_TOTAL_TIMEOUT_MS`).
    pub total_timeout_ms: u64,
    /// Consecutive failures that open a provider's breaker (`BREAKER_THRESHOLD`).
    pub breaker_threshold: u32,
    /// How long an open breaker keeps a provider out (`BREAKER_COOLDOWN_MS`).
    pub breaker_cooldown_ms: u64,
    /// Load-balancing weights (`ROUTING_WEIGHTS`, JSON `{"model": {"provider": weight}}`).
    pub weights: Weights,
    /// Parallel to [`PROVIDERS`].
    pub providers: Vec<ProviderConfig>,
    /// Allowed CORS origins; `*` allows any.
    pub cors_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub key_cache_ttl_ms: u64,
}

impl Config {
    /// Builds the configuration from `lookup(NAME)`, which returns a var or secret if set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let vertex = VertexConfig {
            project: non_empty("VERTEX_PROJECT").map(|v| v.trim().to_owned()),
            location: non_empty("VERTEX_LOCATION")
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| "global".to_owned()),
            token_url: non_empty("VERTEX_TOKEN_URL").map(|v| v.trim().to_owned()),
        };
        let providers = PROVIDERS
            .iter()
            .map(|spec| ProviderConfig {
                spec,
                api_keys: std::iter::once(format!("{}_API_KEY", spec.env))
                    .chain((2..=MAX_CREDENTIALS).map(|i| format!("{}_API_KEY_{i}", spec.env)))
                    .filter_map(|name| non_empty(&name).map(|k| k.trim().to_owned()))
                    .collect(),
                base_url: non_empty(&format!("{}_BASE_URL", spec.env))
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| match spec.protocol {
                        Protocol::Vertex => {
                            crate::providers::vertex::default_base_url(&vertex.location)
                        }
                        _ => spec.default_base_url.to_owned(),
                    }),
            })
            .collect();
        let cors_origins = non_empty("CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let number = |name: &str, default: u64| {
            non_empty(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(default)
        };
        let defaults = RetryPolicy::default();
        Config {
            admin_token: non_empty("ADMIN_TOKEN").map(|v| v.trim().to_owned()),
            vertex,
            retry: RetryPolicy {
                attempts_per_provider: number(
                    "RETRY_MAX_ATTEMPTS",
                    defaults.attempts_per_provider as u64,
                )
                .clamp(1, 10) as u32,
                base_delay_ms: number("RETRY_BASE_DELAY_MS", defaults.base_delay_ms),
                ..defaults
            },
            timeout_ms: number("DEFAULT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS),
            total_timeout_ms: number("DEFAULT_TOTAL_TIMEOUT_MS", DEFAULT_TOTAL_TIMEOUT_MS),
            breaker_threshold: number("BREAKER_THRESHOLD", 3).clamp(1, 1000) as u32,
            breaker_cooldown_ms: number("BREAKER_COOLDOWN_MS", 30_000),
            weights: non_empty("ROUTING_WEIGHTS")
                .map(|v| parse_weights(&v))
                .unwrap_or_default(),
            providers,
            cors_origins,
            max_request_bytes: non_empty("MAX_REQUEST_BYTES")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            key_cache_ttl_ms: non_empty("KEY_CACHE_TTL_MS")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_KEY_CACHE_TTL_MS),
        }
    }

    /// How many credentials the gateway holds for the provider called `name`.
    pub fn credentials(&self, name: &str) -> usize {
        self.provider(name).map_or(0, |p| p.api_keys.len())
    }

    /// The settings of the provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.spec.name == name)
    }

    /// Whether `origin` may call the gateway from a browser.
    pub fn cors_allows(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o == "*" || o == origin)
    }
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("provider", &self.spec.name)
            .field("api_keys", &format!("<{} redacted>", self.api_keys.len()))
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("providers", &self.providers)
            .field("cors_origins", &self.cors_origins)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("key_cache_ttl_ms", &self.key_cache_ttl_ms)
            .field("retry", &self.retry)
            .field("timeout_ms", &self.timeout_ms)
            .field("weights", &self.weights)
            .finish()
    }
}

/// `ROUTING_WEIGHTS`, entry by entry: a weight that is not a non-negative number, or names a
/// provider the gateway does not know, is left out without losing the others.
fn parse_weights(json: &str) -> Weights {
    let parsed: HashMap<String, HashMap<String, serde_json::Value>> =
        serde_json::from_str(json).unwrap_or_default();
    parsed
        .into_iter()
        .map(|(model, per_provider)| {
            let usable = per_provider
                .into_iter()
                .filter(|(p, _)| crate::providers::find(p).is_some())
                .filter_map(|(p, w)| Some((p, w.as_f64().filter(|w| *w >= 0.0)?)))
                .collect::<HashMap<_, _>>();
            (model, usable)
        })
        .filter(|(_, w)| !w.is_empty())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn config(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_keys_base_urls_and_limits() {
        let c = config(&[
            ("OPENAI_API_KEY", " sk-openai "),
            ("ADMIN_TOKEN", "admin-token\n"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("XAI_API_KEY", ""),
            ("CORS_ORIGINS", "https://a.example, https://b.example/"),
            ("MAX_REQUEST_BYTES", "1024"),
        ]);
        let openai = c.provider("openai").unwrap();
        assert_eq!(openai.api_keys, ["sk-openai"]);
        // A secret pasted with a trailing newline still matches what clients send.
        assert_eq!(c.admin_token.as_deref(), Some("admin-token"));
        assert_eq!(openai.base_url, "http://127.0.0.1:9/v1");
        assert!(
            c.provider("xai").unwrap().api_keys.is_empty(),
            "empty means unset"
        );
        assert_eq!(
            c.provider("anthropic").unwrap().base_url,
            "https://api.anthropic.com"
        );
        assert!(c.cors_allows("https://b.example"));
        assert!(!c.cors_allows("https://evil.example"));
        assert_eq!(c.max_request_bytes, 1024);
        assert_eq!(c.key_cache_ttl_ms, DEFAULT_KEY_CACHE_TTL_MS);
        assert_eq!(
            c.provider("vertex").unwrap().base_url,
            "https://aiplatform.googleapis.com"
        );
    }

    #[test]
    fn vertex_follows_its_location_unless_its_base_url_is_set() {
        let c = config(&[
            ("VERTEX_LOCATION", "europe-west4"),
            ("VERTEX_PROJECT", "p1"),
        ]);
        assert_eq!(
            c.provider("vertex").unwrap().base_url,
            "https://europe-west4-aiplatform.googleapis.com"
        );
        assert_eq!(c.vertex.project.as_deref(), Some("p1"));
        let c = config(&[
            ("VERTEX_BASE_URL", "http://127.0.0.1:1/"),
            ("VERTEX_TOKEN_URL", "http://127.0.0.1:1/token"),
        ]);
        assert_eq!(c.provider("vertex").unwrap().base_url, "http://127.0.0.1:1");
        assert_eq!(c.vertex.location, "global");
        assert_eq!(
            c.vertex.token_url.as_deref(),
            Some("http://127.0.0.1:1/token")
        );
    }

    #[test]
    fn reliability_settings_have_defaults_and_overrides() {
        let c = config(&[]);
        assert_eq!(c.retry.attempts_per_provider, 2);
        assert_eq!(
            (c.timeout_ms, c.total_timeout_ms),
            (DEFAULT_TIMEOUT_MS, DEFAULT_TOTAL_TIMEOUT_MS)
        );
        assert!(c.weights.is_empty());
        let c = config(&[
            ("RETRY_MAX_ATTEMPTS", "3"),
            ("RETRY_BASE_DELAY_MS", "10"),
            ("BREAKER_THRESHOLD", "2"),
            ("BREAKER_COOLDOWN_MS", "500"),
            (
                "ROUTING_WEIGHTS",
                r#"{"anthropic/claude-sonnet-4-6":{"anthropic":3,"vertex":1}}"#,
            ),
        ]);
        assert_eq!(
            (c.retry.attempts_per_provider, c.retry.base_delay_ms),
            (3, 10)
        );
        assert_eq!((c.breaker_threshold, c.breaker_cooldown_ms), (2, 500));
        assert_eq!(c.weights["anthropic/claude-sonnet-4-6"]["vertex"], 1.0);
        // One bad entry does not lose the others.
        let c = config(&[(
            "ROUTING_WEIGHTS",
            r#"{"m/a":{"anthropic":"3","vertex":2,"nope":5,"xai":-1},"m/b":{"openai":"x"}}"#,
        )]);
        assert_eq!(c.weights.len(), 1);
        assert_eq!(
            c.weights["m/a"],
            HashMap::from([("vertex".to_owned(), 2.0)])
        );
    }

    #[test]
    fn several_credentials_per_provider_in_variable_order() {
        let c = config(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_API_KEY_2", " sk-2 "),
            ("OPENAI_API_KEY_4", "sk-4"),
            ("OPENAI_API_KEY_10", "ignored: beyond the ninth"),
            ("XAI_API_KEY_2", "xai-only-second"),
        ]);
        assert_eq!(
            c.provider("openai").unwrap().api_keys,
            ["sk-1", "sk-2", "sk-4"]
        );
        assert_eq!(c.credentials("openai"), 3);
        assert_eq!(c.provider("xai").unwrap().api_keys, ["xai-only-second"]);
        assert_eq!(c.credentials("groq"), 0);
        let s = format!("{:?}", c.provider("openai").unwrap());
        assert!(s.contains("<3 redacted>") && !s.contains("sk-"), "{s}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = config(&[
            ("OPENAI_API_KEY", "sk-secret-1"),
            ("ADMIN_TOKEN", "adm-secret-2"),
        ]);
        let s = format!("{c:?}");
        assert!(
            !s.contains("sk-secret-1") && !s.contains("adm-secret-2"),
            "{s}"
        );
        assert!(s.contains("redacted>"));
    }
}
