//! `providerOptions.gateway` (the Vercel AI Gateway's field names), per request or as a key's
//! defaults.

use crate::error::GatewayError;
use crate::providers;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Routing options; every field optional. Request options override key defaults field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingOptions {
    /// Providers to try first, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
    /// The only providers allowed, for the primary model and every fallback model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// Fallback models, tried in order once the primary model's providers are exhausted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Per-attempt time to first byte, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Time for the whole request, all attempts included, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout_ms: Option<u64>,
}

const PARAM: &str = "providerOptions.gateway";

/// The most fallback models a request or key may name.
pub const MAX_FALLBACK_MODELS: usize = 16;

/// The longest `timeoutMs` / `totalTimeoutMs` a request or key may ask for: one hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The most JSON routing options take (`providerOptions.gateway`, a key's `routing`).
pub const MAX_OPTIONS_BYTES: usize = 16 * 1024;

impl RoutingOptions {
    /// Reads `providerOptions.gateway` from a request's raw `providerOptions` field. Options for
    /// particular providers (`providerOptions.anthropic` …) are not passed on: one that asks for
    /// something (not `{}` or `null`) is refused with a 400 naming it rather than dropped.
    pub fn from_provider_options(raw: Option<&RawValue>) -> Result<RoutingOptions, GatewayError> {
        let Some(raw) = raw else {
            return Ok(RoutingOptions::default());
        };
        let not_object = || {
            GatewayError::invalid_param("providerOptions", "`providerOptions` must be an object.")
        };
        if raw.get().trim() == "null" {
            return Ok(RoutingOptions::default()); // (as clients write an unset field)
        }
        if !raw.get().starts_with('{') {
            return Err(not_object());
        }
        let outer: std::collections::BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(raw.get()).map_err(|_| not_object())?;
        let mut gateway = None;
        for (name, value) in outer {
            if name == "gateway" {
                gateway = Some(value);
                continue;
            }
            let v = value.get().trim();
            if v != "null" && !(v.starts_with('{') && v[1..v.len() - 1].trim().is_empty()) {
                let field = format!("providerOptions.{name}");
                return Err(GatewayError::invalid_param(
                    &field,
                    format!(
                        "`{field}` is not supported: the gateway takes only \
                         `providerOptions.gateway`. Send what the provider should do as Chat \
                         Completions fields (`reasoning_effort`, `response_format`, …)."
                    ),
                ));
            }
        }
        match gateway {
            None => Ok(RoutingOptions::default()),
            Some(g) if g.get().trim() == "null" => Ok(RoutingOptions::default()),
            Some(g) => Self::parse(g.get(), PARAM),
        }
    }

    /// Parses and checks options given as JSON; `param` names them (and each field) in errors.
    pub fn parse(json: &str, param: &str) -> Result<RoutingOptions, GatewayError> {
        // A few provider names, 16 model ids and two numbers: far below this. A larger value
        // is refused before it is parsed into a tree.
        if json.len() > MAX_OPTIONS_BYTES {
            return Err(GatewayError::invalid_param(
                param,
                format!("`{param}` takes at most {MAX_OPTIONS_BYTES} bytes of JSON."),
            ));
        }
        let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|_| {
                GatewayError::invalid_param(param, format!("`{param}` must be an object."))
            })?;
        // The Vercel AI Gateway's `user` and `tags` attribute usage in its dashboard: they ask
        // for nothing an answer shows, so they are taken (checked) without effect.
        const ATTRIBUTION: &[&str] = &["user", "tags"];
        const ROUTING: &[&str] = &["order", "only", "models", "timeoutMs", "totalTimeoutMs"];
        for (name, value) in &fields {
            let field = format!("{param}.{name}");
            if !ROUTING.contains(&name.as_str()) && !ATTRIBUTION.contains(&name.as_str()) {
                return Err(GatewayError::invalid_param(
                    &field,
                    format!(
                        "Unknown option `{field}`; known: {}, {}.",
                        ROUTING.join(", "),
                        ATTRIBUTION.join(", ")
                    ),
                ));
            }
            let ok = match name.as_str() {
                "timeoutMs" | "totalTimeoutMs" => value.is_u64() || value.is_null(),
                "user" => value.is_string() || value.is_null(),
                _ => {
                    value.is_null()
                        || value
                            .as_array()
                            .is_some_and(|a| a.iter().all(|v| v.is_string()))
                }
            };
            if !ok {
                let want = match name.as_str() {
                    _ if name.ends_with("Ms") => "a whole number of milliseconds",
                    "user" => "a string",
                    _ => "an array of strings",
                };
                return Err(GatewayError::invalid_param(
                    &field,
                    format!("`{field}` must be {want}."),
                ));
            }
        }
        fields.retain(|name, _| !ATTRIBUTION.contains(&name.as_str()));
        let opts: RoutingOptions = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| GatewayError::invalid_param(param, format!("Invalid `{param}`: {e}.")))?;
        opts.validate(param)?;
        Ok(opts)
    }

    fn validate(&self, param: &str) -> Result<(), GatewayError> {
        for (field, list) in [("order", &self.order), ("only", &self.only)] {
            for name in list.iter().flatten() {
                if providers::find(name).is_none() {
                    return Err(GatewayError::invalid_param(
                        &format!("{param}.{field}"),
                        format!("Unknown provider `{name}` in `{param}.{field}`."),
                    ));
                }
            }
        }
        if self.only.as_ref().is_some_and(Vec::is_empty) {
            return Err(GatewayError::invalid_param(
                &format!("{param}.only"),
                format!("`{param}.only` must name at least one provider."),
            ));
        }
        if self
            .models
            .as_ref()
            .is_some_and(|m| m.len() > MAX_FALLBACK_MODELS)
        {
            return Err(GatewayError::invalid_param(
                &format!("{param}.models"),
                format!("`{param}.models` names at most {MAX_FALLBACK_MODELS} models."),
            ));
        }
        if let Some(m) = self.models.iter().flatten().find(|m| m.trim().is_empty()) {
            return Err(GatewayError::invalid_param(
                &format!("{param}.models"),
                format!("Invalid fallback model `{m}`."),
            ));
        }
        for (field, v) in [
            ("timeoutMs", self.timeout_ms),
            ("totalTimeoutMs", self.total_timeout_ms),
        ] {
            if v.is_some_and(|ms| ms == 0 || ms > MAX_TIMEOUT_MS) {
                return Err(GatewayError::invalid_param(
                    &format!("{param}.{field}"),
                    format!(
                        "`{param}.{field}` must be a number of milliseconds from 1 to \
                         {MAX_TIMEOUT_MS} (one hour)."
                    ),
                ));
            }
        }
        Ok(())
    }

    /// These options, with `defaults` filling what they leave unset.
    pub fn over(self, defaults: Option<&RoutingOptions>) -> RoutingOptions {
        let Some(d) = defaults else { return self };
        RoutingOptions {
            order: self.order.or_else(|| d.order.clone()),
            only: self.only.or_else(|| d.only.clone()),
            models: self.models.or_else(|| d.models.clone()),
            timeout_ms: self.timeout_ms.or(d.timeout_ms),
            total_timeout_ms: self.total_timeout_ms.or(d.total_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn reads_the_gateway_options_and_refuses_other_providers_options() {
        let r = raw(
            r#"{"gateway":{"order":["vertex","anthropic"],"only":["vertex","anthropic"],"models":["openai/gpt-4o"],"timeoutMs":500},"anthropic":{ }, "openai": null}"#,
        );
        let o = RoutingOptions::from_provider_options(Some(&r)).unwrap();
        assert_eq!(
            o.order.as_deref(),
            Some(&["vertex".to_owned(), "anthropic".to_owned()][..])
        );
        assert_eq!(o.models.as_deref(), Some(&["openai/gpt-4o".to_owned()][..]));
        assert_eq!(o.timeout_ms, Some(500));
        assert_eq!(
            RoutingOptions::from_provider_options(None).unwrap(),
            RoutingOptions::default()
        );
        for unset in [r#"{"anthropic":{}}"#, "null", " null "] {
            assert_eq!(
                RoutingOptions::from_provider_options(Some(&raw(unset))).unwrap(),
                RoutingOptions::default(),
                "{unset}"
            );
        }
        // The Vercel AI Gateway's attribution fields are taken without effect, if well formed.
        let r = raw(r#"{"gateway":{"user":"u-1","tags":["team-a","batch"],"only":["openai"]}}"#);
        let o = RoutingOptions::from_provider_options(Some(&r)).unwrap();
        assert_eq!(o.only.as_deref(), Some(&["openai".to_owned()][..]));
        for (bad, param) in [
            (r#"{"gateway":{"user":7}}"#, "providerOptions.gateway.user"),
            (
                r#"{"gateway":{"tags":"a"}}"#,
                "providerOptions.gateway.tags",
            ),
            (r#"{"gateway":{"byok":{}}}"#, "providerOptions.gateway.byok"),
        ] {
            let e = RoutingOptions::from_provider_options(Some(&raw(bad))).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{bad}");
        }
        // Options for a provider that ask for something are not dropped silently.
        let r = raw(r#"{"gateway":{},"anthropic":{"thinking":{"type":"enabled"}}}"#);
        let e = RoutingOptions::from_provider_options(Some(&r)).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("providerOptions.anthropic"))
        );
        let r = raw(r#"{"openai":[1]}"#);
        let e = RoutingOptions::from_provider_options(Some(&r)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("providerOptions.openai"));
        // A huge list is refused before it becomes a tree.
        let many = vec!["\"openai\""; 100_000].join(",");
        let r = raw(&format!(r#"{{"gateway":{{"order":[{many}]}}}}"#));
        let e = RoutingOptions::from_provider_options(Some(&r)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("providerOptions.gateway"));
    }

    #[test]
    fn bad_options_are_400s_naming_the_field() {
        let param = |s: &str| {
            RoutingOptions::from_provider_options(Some(&raw(s)))
                .unwrap_err()
                .param
                .unwrap()
        };
        assert_eq!(
            param(r#"{"gateway":{"order":"x"}}"#),
            "providerOptions.gateway.order"
        );
        assert_eq!(
            param(r#"{"gateway":{"models":[1]}}"#),
            "providerOptions.gateway.models"
        );
        assert_eq!(
            param(r#"{"gateway":{"timeoutMs":"5"}}"#),
            "providerOptions.gateway.timeoutMs"
        );
        assert_eq!(param(r#"{"gateway":[]}"#), "providerOptions.gateway");
        assert_eq!(
            param(r#"{"gateway":{"only":["nope"]}}"#),
            "providerOptions.gateway.only"
        );
        assert_eq!(
            param(r#"{"gateway":{"only":[]}}"#),
            "providerOptions.gateway.only"
        );
        assert_eq!(
            param(r#"{"gateway":{"order":["openai","zzz"]}}"#),
            "providerOptions.gateway.order"
        );
        assert_eq!(
            param(r#"{"gateway":{"timeoutMs":0}}"#),
            "providerOptions.gateway.timeoutMs"
        );
        let many: Vec<String> = (0..17).map(|i| format!("\"openai/m{i}\"")).collect();
        assert_eq!(
            param(&format!(
                r#"{{"gateway":{{"models":[{}]}}}}"#,
                many.join(",")
            )),
            "providerOptions.gateway.models"
        );
        for huge in ["3600001", "18446744073709551615"] {
            assert_eq!(
                param(&format!(r#"{{"gateway":{{"totalTimeoutMs":{huge}}}}}"#)),
                "providerOptions.gateway.totalTimeoutMs"
            );
        }
        assert!(RoutingOptions::from_provider_options(Some(&raw(
            r#"{"gateway":{"timeoutMs":3600000}}"#
        )))
        .is_ok());
        assert_eq!(
            param(r#"{"gateway":{"retries":3}}"#),
            "providerOptions.gateway.retries"
        );
        assert_eq!(param("[1]"), "providerOptions");
    }

    #[test]
    fn request_options_override_key_defaults_field_by_field() {
        let defaults = RoutingOptions {
            order: Some(vec!["vertex".into()]),
            timeout_ms: Some(1000),
            ..Default::default()
        };
        let req = RoutingOptions {
            timeout_ms: Some(50),
            ..Default::default()
        };
        let merged = req.over(Some(&defaults));
        assert_eq!(merged.order, defaults.order);
        assert_eq!(merged.timeout_ms, Some(50));
    }
}
