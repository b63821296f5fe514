//! Gateway configuration, read once per isolate from the worker's environment.
//!
//! Reading goes through a lookup function so the same code serves the edge (secrets and vars)
//! and native tests (a map). Secret values are held here and nowhere else; `Debug` redacts them.

use crate::providers::{Protocol, ProviderSpec, PROVIDERS};

/// Default body limit for inbound requests (10 MiB); override with `MAX_REQUEST_BYTES`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Default time a gateway-key lookup stays cached in the isolate; override with `KEY_CACHE_TTL_MS`.
pub const DEFAULT_KEY_CACHE_TTL_MS: u64 = 30_000;

/// One provider's resolved settings.
pub struct ProviderConfig {
    pub spec: &'static ProviderSpec,
    pub api_key: Option<String>,
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
                api_key: non_empty(&format!("{}_API_KEY", spec.env)).map(|k| k.trim().to_owned()),
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
        Config {
            admin_token: non_empty("ADMIN_TOKEN"),
            vertex,
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
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
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
            .finish()
    }
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
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("XAI_API_KEY", ""),
            ("CORS_ORIGINS", "https://a.example, https://b.example/"),
            ("MAX_REQUEST_BYTES", "1024"),
        ]);
        let openai = c.provider("openai").unwrap();
        assert_eq!(openai.api_key.as_deref(), Some("sk-openai"));
        assert_eq!(openai.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            c.provider("xai").unwrap().api_key,
            None,
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
        assert!(s.contains("<redacted>"));
    }
}
