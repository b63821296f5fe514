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
/// Default longest silence of a provider once its stream has started delivering content: two
/// minutes. Before content the attempt's timeout applies (and the attempt can still fall back);
/// after it, a provider that stops sending would otherwise hold the client's request open for as
/// long as the connection lives. Providers that pause on purpose send keep-alives (Anthropic's
/// `ping`), which count. Override with `STREAM_IDLE_TIMEOUT_MS` (0: no limit).
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 120_000;
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
    /// Each credential's variable number (1 for `<ENV>_API_KEY`, 2 for `_2` …), parallel to
    /// `api_keys`: errors and the attempts header name credentials by it, gaps or not.
    pub key_numbers: Vec<u8>,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Why the provider cannot be used though it has a credential (its base URL is not
    /// usable), naming the variable; it is then treated as not configured.
    pub unusable: Option<String>,
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
    /// `VERTEX_STRUCTURED_OUTPUTS` (`1`/`true`): the Google Cloud organization allows Claude's
    /// structured outputs (`output_config.format`, strict tools), which its policy
    /// `constraints/vertexai.allowedPartnerModelFeatures` disables by default.
    pub structured_outputs: bool,
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
    /// Longest silence of a stream after its content started (`STREAM_IDLE_TIMEOUT_MS`; 0: none).
    pub stream_idle_timeout_ms: u64,
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
    /// What was wrong with the settings and what was done instead, one line each, naming
    /// variables, never their values (the edge logs them once per isolate).
    pub warnings: Vec<String>,
}

/// The most a duration setting may be: one hour (as for a request's own timeouts).
const MAX_SETTING_MS: u64 = 3_600_000;
/// The largest body a Worker receives on Cloudflare's Free and Pro plans (100 MB).
const MAX_BODY_SETTING: u64 = 100_000_000;

impl Config {
    /// Builds the configuration from `lookup(NAME)`, which returns a var or secret if set.
    /// Values that cannot be used fall back to their defaults (or leave a provider out), each
    /// with a line in [`Config::warnings`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let non_empty = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();
        // A location is a name like `us-east5` (it becomes part of a host name).
        let location = match non_empty("VERTEX_LOCATION").map(|l| l.to_ascii_lowercase()) {
            Some(l) if l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => l,
            Some(_) => {
                warnings.push(
                    "`VERTEX_LOCATION` is not a location name (letters, digits, `-`); `global` \
                     is used."
                        .to_owned(),
                );
                "global".to_owned()
            }
            None => "global".to_owned(),
        };
        let project = non_empty("VERTEX_PROJECT");
        if project.as_deref().is_some_and(|p| !is_project_id(p)) {
            warnings.push(
                "`VERTEX_PROJECT` is not a project id (lowercase letters, digits, `-`, and `.` or \
                 `:` for a domain's, as `example.com:my-project`); Vertex AI is not called until \
                 it is."
                    .to_owned(),
            );
        }
        let vertex = VertexConfig {
            project,
            location,
            token_url: non_empty("VERTEX_TOKEN_URL"),
            structured_outputs: match non_empty("VERTEX_STRUCTURED_OUTPUTS")
                .map(|v| v.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("0" | "false") => false,
                Some("1" | "true") => true,
                Some(_) => {
                    warnings.push(
                        "`VERTEX_STRUCTURED_OUTPUTS` is neither `1`/`true` nor `0`/`false`; off."
                            .to_owned(),
                    );
                    false
                }
            },
        };
        let providers = PROVIDERS
            .iter()
            .map(|spec| provider_config(spec, &vertex, &non_empty, &mut warnings))
            .collect();
        let cors_origins = non_empty("CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .filter_map(|o| cors_origin(o, &mut warnings))
                    .collect()
            })
            .unwrap_or_default();
        let mut number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| {
            let Some(v) = non_empty(name) else {
                return default;
            };
            // All digits but too large for a number: above any range.
            let parsed = v.parse::<u64>().or_else(|e| {
                if v.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(u64::MAX)
                } else {
                    Err(e)
                }
            });
            match parsed {
                Ok(n) if range.contains(&n) => n,
                Ok(n) => {
                    // Below the least (0 where 0 means nothing): the default; above: the most.
                    let used = if n < *range.start() {
                        default
                    } else {
                        *range.end()
                    };
                    warnings.push(format!(
                        "`{name}` must be from {} to {}; {used} is used.",
                        range.start(),
                        range.end()
                    ));
                    used
                }
                Err(_) => {
                    warnings.push(format!(
                        "`{name}` is not a whole number; the default {default} is used."
                    ));
                    default
                }
            }
        };
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            // 0 (no retries meant) is one try.
            attempts_per_provider: number(
                "RETRY_MAX_ATTEMPTS",
                u64::from(defaults.attempts_per_provider),
                0..=10,
            )
            .max(1) as u32,
            base_delay_ms: number(
                "RETRY_BASE_DELAY_MS",
                defaults.base_delay_ms,
                0..=defaults.max_delay_ms,
            ),
            ..defaults
        };
        let timeout_ms = number("DEFAULT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1..=MAX_SETTING_MS);
        let total_timeout_ms = number(
            "DEFAULT_TOTAL_TIMEOUT_MS",
            DEFAULT_TOTAL_TIMEOUT_MS,
            1..=MAX_SETTING_MS,
        );
        let stream_idle_timeout_ms = number(
            "STREAM_IDLE_TIMEOUT_MS",
            DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            0..=MAX_SETTING_MS,
        );
        // 0 switches the breakers off.
        let breaker_threshold = match number("BREAKER_THRESHOLD", 3, 0..=1000) {
            0 => u32::MAX,
            n => n as u32,
        };
        let breaker_cooldown_ms = number("BREAKER_COOLDOWN_MS", 30_000, 0..=MAX_SETTING_MS);
        let max_request_bytes = number(
            "MAX_REQUEST_BYTES",
            DEFAULT_MAX_REQUEST_BYTES as u64,
            1..=MAX_BODY_SETTING,
        ) as usize;
        let key_cache_ttl_ms = number(
            "KEY_CACHE_TTL_MS",
            DEFAULT_KEY_CACHE_TTL_MS,
            0..=MAX_SETTING_MS,
        );
        let weights = non_empty("ROUTING_WEIGHTS")
            .map(|v| parse_weights(&v, &mut warnings))
            .unwrap_or_default();
        if total_timeout_ms < timeout_ms {
            warnings.push(
                "`DEFAULT_TOTAL_TIMEOUT_MS` is shorter than `DEFAULT_TIMEOUT_MS`: an attempt that \
                 runs to its timeout leaves no time for a fallback."
                    .to_owned(),
            );
        }
        let admin_token = non_empty("ADMIN_TOKEN");
        if admin_token
            .as_deref()
            .is_some_and(|t| t.len() < 16 || t == "change-me-admin-token")
        {
            warnings.push(
                "`ADMIN_TOKEN` is shorter than 16 characters or the example's placeholder: \
                 whoever guesses it manages every gateway key."
                    .to_owned(),
            );
        }
        Config {
            admin_token,
            vertex,
            retry,
            timeout_ms,
            total_timeout_ms,
            stream_idle_timeout_ms,
            breaker_threshold,
            breaker_cooldown_ms,
            weights,
            providers,
            cors_origins,
            max_request_bytes,
            key_cache_ttl_ms,
            warnings,
        }
    }

    /// What to set for the provider `spec` to be usable: its key, or a usable base URL.
    pub fn what_to_set(&self, spec: &ProviderSpec) -> String {
        match self.provider(spec.name).and_then(|p| p.unusable.as_deref()) {
            Some(why) => why.to_owned(),
            None => format!("Set {}_API_KEY.", spec.env),
        }
    }

    /// The variable numbers of the provider's credentials (see [`ProviderConfig::key_numbers`]),
    /// padded with zeros.
    pub fn credential_numbers(&self, name: &str) -> [u8; MAX_CREDENTIALS] {
        let mut out = [0; MAX_CREDENTIALS];
        if let Some(p) = self.provider(name) {
            for (slot, n) in out.iter_mut().zip(&p.key_numbers) {
                *slot = *n;
            }
        }
        out
    }

    /// How many credentials the gateway holds for the provider called `name` (none when its
    /// settings leave it unusable).
    pub fn credentials(&self, name: &str) -> usize {
        self.provider(name)
            .filter(|p| p.unusable.is_none())
            .map_or(0, |p| p.api_keys.len())
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
            .field("stream_idle_timeout_ms", &self.stream_idle_timeout_ms)
            .field("weights", &self.weights)
            .finish()
    }
}

/// One `CORS_ORIGINS` entry as browsers send an `Origin`: `scheme://host[:port]` in lower case,
/// without a default port or a path (dropped, with a warning).
fn cors_origin(entry: &str, warnings: &mut Vec<String>) -> Option<String> {
    let o = entry.trim().trim_end_matches('/');
    // `*`, and `null` (what sandboxed frames and files send) are taken as they are.
    if o.is_empty() || o == "*" || o == "null" {
        return (!o.is_empty()).then(|| o.to_owned());
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        warnings.push(
            "`CORS_ORIGINS`: an entry without a scheme (`https://…`) is left out.".to_owned(),
        );
        return None;
    };
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if !path.is_empty() {
        warnings
            .push("`CORS_ORIGINS`: an origin has no path; an entry's path is dropped.".to_owned());
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    Some(format!("{scheme}://{host}"))
}

/// Whether `project` can be a Google Cloud project id: lowercase letters, digits and `-`, and
/// for a domain-scoped project its domain and `:` (`example.com:my-project`). (It goes into
/// Vertex URLs' paths.)
pub fn is_project_id(project: &str) -> bool {
    !project.is_empty()
        && project.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
        })
        && project
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `ROUTING_WEIGHTS`, entry by entry: a model whose value is not an object, a weight that is
/// not a non-negative number, or a provider the gateway does not know is left out (with a
/// warning) without losing the others.
fn parse_weights(json: &str, warnings: &mut Vec<String>) -> Weights {
    let Ok(parsed) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
    else {
        warnings.push(
            "`ROUTING_WEIGHTS` is not a JSON object of models; no weights are used.".to_owned(),
        );
        return Weights::default();
    };
    let mut weights = Weights::default();
    for (model, per_provider) in parsed {
        let Some(per_provider) = per_provider.as_object() else {
            warnings.push(format!(
                "`ROUTING_WEIGHTS`: the entry for `{model}` is not an object of weights; left out."
            ));
            continue;
        };
        // Weights apply to a model id as requests name it: one in the catalog, or
        // `provider/model` of a known provider.
        let known = crate::catalog::find(&model).is_some()
            || model
                .split_once('/')
                .is_some_and(|(p, m)| !m.is_empty() && crate::providers::find(p).is_some());
        if !known {
            warnings.push(format!(
                "`ROUTING_WEIGHTS`: `{model}` is not a model id (`provider/model`); its weights \
                 never apply."
            ));
        }
        let mut usable = HashMap::new();
        for (p, w) in per_provider {
            match (crate::providers::find(p), w.as_f64().filter(|w| *w >= 0.0)) {
                (Some(_), Some(w)) => {
                    usable.insert(p.clone(), w);
                }
                _ => warnings.push(format!(
                    "`ROUTING_WEIGHTS`: `{model}` → `{p}` is not a known provider with a \
                     non-negative number; left out."
                )),
            }
        }
        if !usable.is_empty() {
            weights.insert(model, usable);
        }
    }
    weights
}

/// One provider's settings: its credentials (`<ENV>_API_KEY`, `_2` … `_9`, each remembered with
/// its variable's number) and its base URL.
fn provider_config(
    spec: &'static ProviderSpec,
    vertex: &VertexConfig,
    non_empty: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> ProviderConfig {
    for odd in [
        format!("{}_API_KEY_1", spec.env),
        format!("{}_API_KEY_0", spec.env),
        format!("{}_API_KEY_10", spec.env),
    ] {
        if non_empty(&odd).is_some() {
            warnings.push(format!(
                "`{odd}` is not read: the first credential is `{}_API_KEY`, then `_2` … `_9`.",
                spec.env
            ));
        }
    }
    let (key_numbers, api_keys): (Vec<u8>, Vec<String>) = (1..=MAX_CREDENTIALS as u8)
        .filter_map(|n| {
            let name = match n {
                1 => format!("{}_API_KEY", spec.env),
                n => format!("{}_API_KEY_{n}", spec.env),
            };
            non_empty(&name).map(|key| (n, key))
        })
        .unzip();
    let var = format!("{}_BASE_URL", spec.env);
    let (base_url, unusable) = match non_empty(&var) {
        None => (
            match spec.protocol {
                Protocol::Vertex => crate::providers::vertex::default_base_url(&vertex.location),
                _ => spec.default_base_url.to_owned(),
            },
            None,
        ),
        Some(url) => match usable_base_url(&url, spec.protocol) {
            Ok((mut url, note)) => {
                if let Some(note) = note {
                    warnings.push(format!("`{var}` {note}"));
                }
                // A bare origin, as this provider's own SDK takes it: its API path is added.
                let path_start = url.find("://").map_or(0, |i| i + 3);
                if !spec.origin_path.is_empty() && !url[path_start..].contains('/') {
                    url.push_str(spec.origin_path);
                }
                (url, None)
            }
            Err(why) => {
                let why = format!("`{var}` is not a usable URL ({why}).");
                if !api_keys.is_empty() {
                    warnings.push(format!("{why} `{}` is left out.", spec.name));
                }
                (String::new(), Some(why))
            }
        },
    };
    ProviderConfig {
        spec,
        api_keys,
        key_numbers,
        base_url,
        unusable,
    }
}

/// A base URL as the gateway uses it: `http(s)://host[:port][/path]`, without a trailing slash,
/// credentials, query or fragment. For the providers whose official SDKs take a bare origin
/// (Anthropic, Google, Vertex), a version path given by mistake is dropped (with a note), as the
/// gateway adds it.
fn usable_base_url(url: &str, protocol: Protocol) -> Result<(String, Option<String>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"))
        .ok_or("it must start with https:// or http://")?;
    let url = format!("{}://{rest}", scheme.to_ascii_lowercase());
    let url = url.as_str();
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("no host".to_owned());
    }
    if authority.contains('@') {
        return Err("credentials belong in the key variables, not in the URL".to_owned());
    }
    if url.contains(['?', '#']) || url.contains(char::is_whitespace) {
        return Err("no query, fragment or spaces".to_owned());
    }
    let url = url.trim_end_matches('/');
    let version = match protocol {
        Protocol::Anthropic | Protocol::Vertex => &["/v1"][..],
        Protocol::Gemini => &["/v1beta", "/v1"][..],
        _ => &[][..],
    };
    let host_start = url.find("://").map_or(0, |i| i + 3);
    for v in version {
        let cut = url.len().saturating_sub(v.len());
        if cut > host_start && url.is_char_boundary(cut) && url[cut..].eq_ignore_ascii_case(v) {
            let origin = &url[..cut];
            return Ok((
                origin.to_owned(),
                Some(format!(
                    "ends in `{v}`, which the gateway adds itself: it is used without it."
                )),
            ));
        }
    }
    Ok((url.to_owned(), None))
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
        assert_eq!(c.stream_idle_timeout_ms, DEFAULT_STREAM_IDLE_TIMEOUT_MS);
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
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for bad in ["projects/p1", "My Project", "p1?x=1", "../p"] {
            let c = config(&[("VERTEX_PROJECT", bad)]);
            assert!(
                c.warnings.iter().any(|w| w.contains("VERTEX_PROJECT")),
                "{bad}: {:?}",
                c.warnings
            );
        }
        for good in ["my-project-123", "example.com:my-project", "123456789012"] {
            assert!(is_project_id(good), "{good}");
        }
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
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // A model id without its provider (or of no known provider) would never match.
        for typo in ["claude-sonnet-4-6", "antropic/claude-sonnet-4-6", "openai/"] {
            let c = config(&[(
                "ROUTING_WEIGHTS",
                &format!(r#"{{"{typo}":{{"anthropic":1}}}}"#),
            )]);
            assert!(
                c.warnings.iter().any(|w| w.contains("never apply")),
                "{typo}: {:?}",
                c.warnings
            );
        }
        let c = config(&[(
            "ROUTING_WEIGHTS",
            r#"{"openai/gpt-5-unlisted":{"openai":1}}"#,
        )]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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
        // Gaps are fine: each credential keeps its variable's number, by which errors and the
        // attempts header name it.
        assert_eq!(
            c.provider("openai").unwrap().api_keys,
            ["sk-1", "sk-2", "sk-4"]
        );
        assert_eq!(c.provider("openai").unwrap().key_numbers, [1, 2, 4]);
        assert_eq!(c.credentials("openai"), 3);
        assert_eq!(c.provider("xai").unwrap().api_keys, ["xai-only-second"]);
        assert_eq!(c.credential_numbers("xai")[0], 2);
        assert_eq!(c.credentials("groq"), 0);
        // A tenth key is not read, and the settings say so (naming the variable only).
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("`OPENAI_API_KEY_10` is not read")
                && !c.warnings[0].contains("beyond"),
            "{:?}",
            c.warnings
        );
        let s = format!("{:?}", c.provider("openai").unwrap());
        assert!(s.contains("<3 redacted>") && !s.contains("sk-"), "{s}");
    }

    #[test]
    fn settings_that_cannot_be_used_fall_back_with_a_warning() {
        let c = config(&[
            ("DEFAULT_TIMEOUT_MS", "0"),
            ("DEFAULT_TOTAL_TIMEOUT_MS", "6e5"),
            ("MAX_REQUEST_BYTES", "10MB"),
            ("KEY_CACHE_TTL_MS", "99999999999"),
            ("STREAM_IDLE_TIMEOUT_MS", "-5"),
            ("BREAKER_THRESHOLD", "0"),
            (
                "ROUTING_WEIGHTS",
                r#"{"m":{"openai":1},"n":5,"o":{"nobody":2,"xai":"3"}}"#,
            ),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1/"),
            ("GOOGLE_API_KEY", "g"),
            (
                "GOOGLE_BASE_URL",
                "https://generativelanguage.googleapis.com/v1beta",
            ),
            ("XAI_API_KEY", "x"),
            ("XAI_BASE_URL", "api.x.ai/v1"),
            ("GROQ_API_KEY", "q"),
            ("GROQ_BASE_URL", "https://user:pw@api.groq.com/openai/v1"),
        ]);
        assert_eq!(
            c.timeout_ms, DEFAULT_TIMEOUT_MS,
            "0 would time every attempt out"
        );
        assert_eq!(c.total_timeout_ms, DEFAULT_TOTAL_TIMEOUT_MS);
        assert_eq!(c.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(c.key_cache_ttl_ms, MAX_SETTING_MS);
        assert_eq!(c.stream_idle_timeout_ms, DEFAULT_STREAM_IDLE_TIMEOUT_MS);
        assert_eq!(c.breaker_threshold, u32::MAX, "0 switches breakers off");
        assert_eq!(c.weights.len(), 1, "the good entry kept: {:?}", c.weights);
        assert_eq!(
            c.provider("anthropic").unwrap().base_url,
            "https://api.anthropic.com"
        );
        assert_eq!(
            c.provider("google").unwrap().base_url,
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(c.credentials("xai"), 0, "no usable URL: left out");
        assert_eq!(c.credentials("groq"), 0);
        assert!(c
            .what_to_set(crate::providers::find("xai").unwrap())
            .contains("`XAI_BASE_URL` is not a usable URL"));
        let w = c.warnings.join("\n");
        for name in [
            "DEFAULT_TIMEOUT_MS",
            "DEFAULT_TOTAL_TIMEOUT_MS",
            "MAX_REQUEST_BYTES",
            "KEY_CACHE_TTL_MS",
            "ROUTING_WEIGHTS`: the entry for `n`",
            "`o` → `nobody`",
            "`o` → `xai`",
            "ANTHROPIC_BASE_URL",
            "GOOGLE_BASE_URL",
            "XAI_BASE_URL",
            "GROQ_BASE_URL",
        ] {
            assert!(w.contains(name), "{name} in {w}");
        }
        assert!(
            !w.contains("pw@") && !w.contains("api.x.ai"),
            "values never shown: {w}"
        );
        // Origins as browsers send them.
        let c = config(&[
            (
                "CORS_ORIGINS",
                "HTTPS://App.Example:443/, https://b.example/app, c.example, http://d.example:8080",
            ),
            ("ADMIN_TOKEN", "change-me-admin-token"),
        ]);
        assert_eq!(
            c.cors_origins,
            [
                "https://app.example",
                "https://b.example",
                "http://d.example:8080"
            ]
        );
        let c2 = config(&[("CORS_ORIGINS", "null, http://localhost:3000")]);
        assert_eq!(c2.cors_origins, ["null", "http://localhost:3000"]);
        let c2 = config(&[
            ("OPENAI_API_KEY", "k"),
            ("OPENAI_BASE_URL", "HTTPS://Proxy.example/v1"),
        ]);
        assert_eq!(
            c2.provider("openai").unwrap().base_url,
            "https://Proxy.example/v1"
        );
        assert!(c2.warnings.is_empty(), "{:?}", c2.warnings);
        // As each official SDK reads its variable: Groq's and Cerebras' take a bare origin and
        // add their API path; a URL with a path (the OpenAI SDK's reading) is taken as given.
        let c3 = config(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9000"),
            ("GROQ_BASE_URL", "http://127.0.0.1:9000/"),
            ("CEREBRAS_BASE_URL", "http://127.0.0.1:9000"),
            ("MISTRAL_BASE_URL", "https://api.mistral.ai"),
            ("XAI_BASE_URL", "http://127.0.0.1:9000"),
            ("FIREWORKS_BASE_URL", "http://127.0.0.1:9000/custom"),
        ]);
        for (provider, want) in [
            ("openai", "http://127.0.0.1:9000"),
            ("groq", "http://127.0.0.1:9000/openai/v1"),
            ("cerebras", "http://127.0.0.1:9000/v1"),
            ("mistral", "https://api.mistral.ai/v1"),
            ("xai", "http://127.0.0.1:9000"),
            ("fireworks", "http://127.0.0.1:9000/custom"),
        ] {
            assert_eq!(c3.provider(provider).unwrap().base_url, want, "{provider}");
        }
        let c4 = config(&[("GROQ_BASE_URL", "https://api.groq.com/openai/v1")]);
        assert_eq!(
            c4.provider("groq").unwrap().base_url,
            "https://api.groq.com/openai/v1"
        );
        assert!(c.cors_allows("https://app.example") && c.cors_allows("https://b.example"));
        let w = c.warnings.join("\n");
        assert!(
            w.contains("path") && w.contains("without a scheme") && w.contains("ADMIN_TOKEN"),
            "{w}"
        );
        // Edges: a one-letter host, `/V1` in capitals, a number too large for any range, a
        // first credential numbered `_1`, a location that is not a name.
        let c = config(&[
            ("ANTHROPIC_API_KEY", "a"),
            ("ANTHROPIC_BASE_URL", "http://a/V1"),
            ("KEY_CACHE_TTL_MS", "99999999999999999999999"),
            ("OPENAI_API_KEY_1", "sk-one"),
            ("VERTEX_LOCATION", "evil.example/x"),
        ]);
        assert_eq!(c.provider("anthropic").unwrap().base_url, "http://a");
        assert_eq!(c.key_cache_ttl_ms, MAX_SETTING_MS);
        assert_eq!(c.credentials("openai"), 0);
        assert_eq!(c.vertex.location, "global");
        let w = c.warnings.join("\n");
        assert!(
            w.contains("`OPENAI_API_KEY_1` is not read") && w.contains("VERTEX_LOCATION"),
            "{w}"
        );
        assert!(!w.contains("evil") && !w.contains("sk-one"), "{w}");
        // All fine: nothing to say.
        let c = config(&[("OPENAI_API_KEY", "sk")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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
