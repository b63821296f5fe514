//! Which provider serves a model id, under which native id.
//!
//! A model id is `provider/model` or `creator/model`. A catalog id resolves to the catalog's offers
//! in order (the creator's own provider first), keeping those the gateway holds a credential for.
//! An id outside the catalog whose first segment names a known provider goes to that provider
//! unchanged (and unpriced).

use crate::catalog::{self, Model};
use crate::config::Config;
use crate::error::GatewayError;
use crate::providers::{self, ProviderSpec};

/// One way to serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: &'static ProviderSpec,
    /// The id the provider's API expects.
    pub native_model: String,
    /// The catalog entry, when the model is in the catalog (and so priced).
    pub model: Option<&'static Model>,
    /// Which of the provider's credentials to use (0-based), and how many it has. `resolve`
    /// gives one target per provider (credential 0); the plan spreads it over all of them.
    pub credential: u8,
    pub credentials: u8,
    /// The credentials' variable numbers (1 for `<ENV>_API_KEY`, 2 for `_2` …), by index.
    pub numbers: [u8; crate::config::MAX_CREDENTIALS],
}

impl Target {
    /// This target's circuit breaker.
    pub fn key(&self) -> super::breaker::Key {
        (self.provider.name, self.credential)
    }

    /// The variable number of this target's credential (`OPENAI_API_KEY_2` → 2).
    pub fn number(&self) -> u8 {
        self.numbers
            .get(usize::from(self.credential))
            .copied()
            .filter(|n| *n > 0)
            .unwrap_or(self.credential + 1)
    }

    /// `openai`, or `openai#2` when the provider has several credentials (numbered as their
    /// variables are). Never the credential itself.
    pub fn label(&self) -> String {
        if self.credentials > 1 {
            format!("{}#{}", self.provider.name, self.number())
        } else {
            self.provider.name.to_owned()
        }
    }
}

/// The providers to try for `model_id`, best first. Never empty on success.
pub fn resolve(model_id: &str, config: &Config) -> Result<Vec<Target>, GatewayError> {
    resolve_allowed(model_id, config, &|_| true)
}

/// [`resolve`] among the providers `allowed` admits (a request's `only`): empty when it admits
/// none of the model's providers; a 503 naming what to set when it admits some and the gateway
/// holds a credential for none of those (not a refusal of the client's `only`).
pub fn resolve_allowed(
    model_id: &str,
    config: &Config,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<Vec<Target>, GatewayError> {
    let configured = |p: &ProviderSpec| config.credentials(p.name) > 0;
    if let Some(model) = catalog::find(model_id) {
        let all: Vec<Target> = model
            .offers
            .iter()
            .filter(|o| allowed(o.provider))
            .filter_map(|o| {
                Some(Target {
                    provider: providers::find(o.provider)?,
                    native_model: o.native_id.to_owned(),
                    model: Some(model),
                    credential: 0,
                    credentials: config.credentials(o.provider) as u8,
                    numbers: config.credential_numbers(o.provider),
                })
            })
            .collect();
        let usable: Vec<Target> = all
            .iter()
            .filter(|t| configured(t.provider))
            .cloned()
            .collect();
        if usable.is_empty() && !all.is_empty() {
            let names: Vec<&str> = all.iter().map(|t| t.provider.name).collect();
            let set: Vec<String> = all.iter().map(|t| config.what_to_set(t.provider)).collect();
            return Err(GatewayError::not_configured(format!(
                "The model `{model_id}` is served by {}, and this gateway cannot use {}: {}",
                names.join(", "),
                if names.len() == 1 {
                    "it"
                } else {
                    "any of them"
                },
                set.join(" Or: "),
            )));
        }
        return Ok(usable);
    }
    let (provider_name, native) = model_id
        .split_once('/')
        .ok_or_else(|| unprefixed(model_id))?;
    if let Some(why) = providers::retired(provider_name) {
        let mut e = GatewayError::model_not_found(model_id);
        e.message = format!(
            "The model {} is not served: {why}",
            crate::error::shown_model(model_id)
        );
        return Err(e);
    }
    // (A model id that looks like a key, pasted in the wrong place, is sent nowhere.)
    let provider = providers::find(provider_name)
        .filter(|p| {
            !native.is_empty()
                && p.protocol.accepts_model_id(native)
                && !crate::error::looks_secret(native)
        })
        .ok_or_else(|| GatewayError::model_not_found(model_id))?;
    if !allowed(provider.name) {
        return Ok(Vec::new());
    }
    if !configured(provider) {
        return Err(GatewayError::not_configured(format!(
            "The provider `{}` is not configured on this gateway. {}",
            provider.name,
            config.what_to_set(provider)
        )));
    }
    Ok(vec![Target {
        provider,
        native_model: native.to_owned(),
        model: None,
        credential: 0,
        credentials: config.credentials(provider.name) as u8,
        numbers: config.credential_numbers(provider.name),
    }])
}

/// A model id without its provider (`gpt-4o`, as a client that only changed its base URL
/// sends): a 404 that names the ids it may have meant.
fn unprefixed(model_id: &str) -> GatewayError {
    let meant: Vec<&str> = catalog::all()
        .iter()
        .map(|m| m.id)
        .filter(|id| id.split_once('/').is_some_and(|(_, m)| m == model_id))
        .take(3)
        .collect();
    let mut e = GatewayError::model_not_found(model_id);
    let named = crate::error::shown_model(model_id);
    e.message = if meant.is_empty() {
        format!(
            "The model {named} does not exist or is not served by this gateway; model ids \
             are `provider/model` (`openai/gpt-4o`)."
        )
    } else {
        format!(
            "The model {named} does not exist on this gateway, whose model ids are \
             `provider/model`: did you mean `{}`?",
            meant.join("` or `")
        )
    };
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    #[test]
    fn a_catalog_model_goes_to_its_configured_providers_in_order() {
        let c = config(&[("ANTHROPIC_API_KEY", "a"), ("VERTEX_API_KEY", "v")]);
        let t = resolve("anthropic/claude-sonnet-4-6", &c).unwrap();
        assert_eq!(t[0].provider.name, "anthropic");
        assert!(t[0].native_model.starts_with("claude-sonnet-4-6"));
        assert!(t[0].model.is_some());
        let only_vertex = config(&[("VERTEX_API_KEY", "v")]);
        let t = resolve("anthropic/claude-sonnet-4-6", &only_vertex).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].provider.name, "vertex");
    }

    #[test]
    fn an_unlisted_model_of_a_known_provider_is_forwarded_unpriced() {
        let c = config(&[("XAI_API_KEY", "x")]);
        let t = resolve("xai/grok-99-preview", &c).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].provider.name, "xai");
        assert_eq!(t[0].native_model, "grok-99-preview");
        assert_eq!(t[0].model, None);
        // slashes after the first belong to the native id
        let c = config(&[("FIREWORKS_API_KEY", "f")]);
        let t = resolve("fireworks/accounts/x/models/y-unlisted", &c).unwrap();
        assert_eq!(t[0].native_model, "accounts/x/models/y-unlisted");
        // Gemini and Vertex ids of their usual shapes
        let c = config(&[("GOOGLE_API_KEY", "g"), ("VERTEX_API_KEY", "v")]);
        let t = resolve("google/gemini-9.0-flash-exp_01", &c).unwrap();
        assert_eq!(t[0].native_model, "gemini-9.0-flash-exp_01");
        let t = resolve("vertex/claude-opus-9@20990101", &c).unwrap();
        assert_eq!(t[0].native_model, "claude-opus-9@20990101");
    }

    #[test]
    fn unknown_providers_and_models_are_404_model_not_found() {
        // Gemini and Vertex put the model in the URL: only one plain path segment is a model
        // there (no way to steer the gateway's credential to another resource).
        let c = config(&[("OPENAI_API_KEY", "o"), ("GOOGLE_API_KEY", "g")]);
        for id in [
            "nope/x",
            "gpt-4o",
            "openai/",
            "/x",
            "",
            "google/../../v1beta/tunedModels/foo:countTokens?x=",
            "google/gemini-x/../../files",
            "google/gemini-x?key=1",
            "google/gemini-x#",
            "google/..",
            "vertex/../../../../v1/projects/other/locations/x",
            "google/gemini x",
        ] {
            let e = resolve(id, &c).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_deref()),
                (404, Some("model_not_found")),
                "{id:?}"
            );
        }
    }

    #[test]
    fn an_id_without_its_provider_is_told_the_ids_it_may_mean() {
        let c = config(&[("OPENAI_API_KEY", "o")]);
        let e = resolve("gpt-4o", &c).unwrap_err();
        assert!(
            e.message.contains("did you mean `openai/gpt-4o`"),
            "{}",
            e.message
        );
        let e = resolve("no-such-model", &c).unwrap_err();
        assert!(e.message.contains("`provider/model`"), "{}", e.message);
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
    }

    #[test]
    fn a_retired_provider_is_a_404_saying_why() {
        let c = config(&[("OPENAI_API_KEY", "o"), ("PERPLEXITY_API_KEY", "p")]);
        let e = resolve("perplexity/sonar-pro", &c).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (404, Some("model_not_found"))
        );
        assert!(e.message.contains("Agent API"), "{}", e.message);
    }

    #[test]
    fn a_provider_without_credentials_is_a_configuration_error_naming_the_variable() {
        let c = config(&[]);
        let e = resolve("groq/some-model-not-in-catalog", &c).unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.message.contains("GROQ_API_KEY"), "{}", e.message);
        let e = resolve("openai/gpt-4o", &c).unwrap_err();
        assert!(e.message.contains("OPENAI_API_KEY"), "{}", e.message);
    }
}
