//! The routing plan: the ordered list of (model, provider) attempts for one request.

use super::resolve::resolve_allowed;
use super::{Breakers, RoutingOptions, Target};
use crate::config::Config;
use crate::error::GatewayError;
use std::collections::HashMap;

/// One planned attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The gateway model id this attempt serves (the primary or a fallback model).
    pub model_id: String,
    pub target: Target,
}

/// A request's two independent uniform draws in [0, 1): which provider takes the first place
/// when weights decide it, and which credential of each provider is tried first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draws {
    pub provider: f64,
    pub credential: f64,
}

/// Load-balancing weights per model id and provider (`ROUTING_WEIGHTS`).
pub type Weights = HashMap<String, HashMap<String, f64>>;

/// Plans the attempts for `primary` and the fallback models in `opts.models`:
/// each model's providers allowed by `only` in catalog order (or by a weighted draw for the
/// first place), then `order`'s providers moved first; each provider then becomes one attempt
/// per credential, starting at a drawn one so that load spreads evenly over a provider's keys;
/// open breakers move last.
pub fn plan(
    primary: &str,
    opts: &RoutingOptions,
    config: &Config,
    weights: &Weights,
    breakers: &Breakers,
    now_ms: u64,
    draws: Draws,
) -> Result<Vec<Attempt>, GatewayError> {
    let Draws {
        provider: random,
        credential: spread,
    } = draws;
    // Each model once, in the order first named.
    let mut seen = vec![primary];
    let fallbacks = opts.models.iter().flatten().filter(|m| {
        let new = !seen.contains(&m.as_str());
        seen.push(m.as_str());
        new
    });
    let mut attempts = Vec::new();
    let mut first_error = None;
    for (i, model_id) in std::iter::once(&primary.to_owned())
        .chain(fallbacks)
        .enumerate()
    {
        let allowed = |p: &str| {
            opts.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == p))
        };
        let mut targets = match resolve_allowed(model_id, config, &allowed) {
            Ok(t) => t,
            Err(e) => {
                if i == 0 && e.status == 404 {
                    return Err(e);
                }
                if i > 0 && e.status == 404 {
                    return Err(GatewayError::invalid_param(
                        "providerOptions.gateway.models",
                        format!(
                            "Unknown fallback model {} (from the request's \
                             `providerOptions.gateway.models` or the key's routing defaults).",
                            crate::error::shown_model(model_id)
                        ),
                    ));
                }
                first_error.get_or_insert(e);
                continue;
            }
        };
        if let Some(w) = weights.get(model_id.as_str()) {
            weighted_first(&mut targets, w, breakers, now_ms, random);
        }
        if let Some(order) = &opts.order {
            // `order`'s providers first, in its order; the others keep their places (the
            // weighted draw's, or the catalog's), also when `order` names none of them.
            targets.sort_by_key(|t| {
                order
                    .iter()
                    .position(|p| p == t.provider.name)
                    .unwrap_or(usize::MAX)
            });
        }
        for target in targets {
            let n = target.credentials.max(1);
            let first = ((spread.clamp(0.0, 1.0) * f64::from(n)) as u8).min(n - 1);
            attempts.extend((0..n).map(|i| Attempt {
                model_id: model_id.clone(),
                target: Target {
                    credential: (first + i) % n,
                    ..target.clone()
                },
            }));
        }
    }
    // Healthy credentials first, over every model: an open breaker is tried only when nothing
    // else is left.
    attempts.sort_by_key(|a| breakers.is_open(a.target.key(), now_ms));
    if attempts.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            GatewayError::invalid_param(
                "providerOptions.gateway.only",
                format!(
                    "No provider allowed by `only` (the request's `providerOptions.gateway.only` \
                     or the key's routing defaults) serves `{primary}`{}.",
                    if opts.models.is_some() {
                        " or its fallback models"
                    } else {
                        ""
                    }
                ),
            )
        }));
    }
    Ok(attempts)
}

/// Orders `targets` by weight, highest first, with the first place drawn at random in
/// proportion to the weights of the healthy ones. Unweighted providers get weight 0.
fn weighted_first(
    targets: &mut [Target],
    weights: &HashMap<String, f64>,
    breakers: &Breakers,
    now_ms: u64,
    random: f64,
) {
    let weight = |t: &Target| {
        weights
            .get(t.provider.name)
            .copied()
            .unwrap_or(0.0)
            .max(0.0)
    };
    targets.sort_by(|a, b| weight(b).total_cmp(&weight(a)));
    let open = |t: &Target| breakers.all_open(t.provider.name, t.credentials, now_ms);
    let healthy: f64 = targets.iter().filter(|t| !open(t)).map(weight).sum();
    if healthy <= 0.0 {
        return;
    }
    let mut point = random.clamp(0.0, 1.0) * healthy;
    let chosen = targets
        .iter()
        .position(|t| {
            if open(t) {
                return false;
            }
            point -= weight(t);
            point < 0.0
        })
        .unwrap_or(0);
    targets[..=chosen].rotate_right(1);
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

    fn names(a: &[Attempt]) -> Vec<String> {
        a.iter()
            .map(|a| format!("{}@{}", a.target.provider.name, a.model_id))
            .collect()
    }

    fn both() -> Config {
        config(&[
            ("ANTHROPIC_API_KEY", "a"),
            ("VERTEX_API_KEY", "v"),
            ("OPENAI_API_KEY", "o"),
            ("XAI_API_KEY", "x"),
        ])
    }

    const SONNET: &str = "anthropic/claude-sonnet-4-6";

    fn plan_with(opts: RoutingOptions) -> Result<Vec<Attempt>, GatewayError> {
        plan(
            SONNET,
            &opts,
            &both(),
            &Weights::new(),
            &Breakers::new(3, 1000),
            0,
            draws(0.5, 0.0),
        )
    }

    #[test]
    fn catalog_order_then_fallback_models() {
        // The primary named again, or a fallback twice, is tried once.
        let p = plan_with(RoutingOptions {
            models: Some(vec![
                "openai/gpt-4o".into(),
                SONNET.into(),
                "openai/gpt-4o".into(),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            names(&p),
            vec![
                format!("anthropic@{SONNET}"),
                format!("vertex@{SONNET}"),
                "openai@openai/gpt-4o".to_owned()
            ]
        );
    }

    #[test]
    fn order_goes_first_and_only_filters_every_model() {
        let p = plan_with(RoutingOptions {
            order: Some(vec!["vertex".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(names(&p)[0], format!("vertex@{SONNET}"));
        let p = plan_with(RoutingOptions {
            only: Some(vec!["anthropic".into()]),
            models: Some(vec!["openai/gpt-4o".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            names(&p),
            vec![format!("anthropic@{SONNET}")],
            "openai is not in only"
        );
        let e = plan_with(RoutingOptions {
            only: Some(vec!["groq".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("providerOptions.gateway.only"))
        );
    }

    #[test]
    fn unknown_models_are_404_or_400_for_fallbacks() {
        let e = plan(
            "nope/x",
            &RoutingOptions::default(),
            &both(),
            &Weights::new(),
            &Breakers::new(3, 1),
            0,
            draws(0.0, 0.0),
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
        let e = plan_with(RoutingOptions {
            models: Some(vec!["nope/x".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("providerOptions.gateway.models"));
    }

    #[test]
    fn an_unconfigured_primary_falls_to_a_configured_fallback() {
        let c = config(&[("XAI_API_KEY", "x")]);
        let opts = RoutingOptions {
            models: Some(vec!["xai/grok-3".into()]),
            ..Default::default()
        };
        let p = plan(
            "openai/gpt-4o",
            &opts,
            &c,
            &Weights::new(),
            &Breakers::new(3, 1),
            0,
            draws(0.0, 0.0),
        )
        .unwrap();
        assert_eq!(names(&p), vec!["xai@xai/grok-3"]);
        let e = plan(
            "openai/gpt-4o",
            &RoutingOptions::default(),
            &c,
            &Weights::new(),
            &Breakers::new(3, 1),
            0,
            draws(0.0, 0.0),
        )
        .unwrap_err();
        assert_eq!(e.status, 503);
    }

    #[test]
    fn open_breakers_go_last() {
        let mut b = Breakers::new(1, 1000);
        b.record_failure(("anthropic", 0), 0);
        let p = plan(
            SONNET,
            &RoutingOptions::default(),
            &both(),
            &Weights::new(),
            &b,
            10,
            draws(0.0, 0.0),
        )
        .unwrap();
        assert_eq!(names(&p)[0], format!("vertex@{SONNET}"));
        assert_eq!(
            names(&p)[1],
            format!("anthropic@{SONNET}"),
            "still there as a last resort"
        );
        let opts = RoutingOptions {
            models: Some(vec!["openai/gpt-4o".into()]),
            ..Default::default()
        };
        let p = plan(
            SONNET,
            &opts,
            &both(),
            &Weights::new(),
            &b,
            10,
            draws(0.0, 0.0),
        )
        .unwrap();
        assert_eq!(
            names(&p).last().unwrap(),
            &format!("anthropic@{SONNET}"),
            "behind fallback models too"
        );
    }

    #[test]
    fn weights_decide_the_first_place_in_proportion() {
        let mut w = Weights::new();
        w.insert(
            SONNET.into(),
            [("anthropic".to_owned(), 3.0), ("vertex".to_owned(), 1.0)].into(),
        );
        let b = Breakers::new(3, 1000);
        let first = |r: f64| {
            let p = plan(
                SONNET,
                &RoutingOptions::default(),
                &both(),
                &w,
                &b,
                0,
                draws(r, 0.0),
            )
            .unwrap();
            (p[0].target.provider.name, p.len())
        };
        assert_eq!(first(0.0), ("anthropic", 2));
        assert_eq!(first(0.74), ("anthropic", 2));
        assert_eq!(first(0.76), ("vertex", 2));
        assert_eq!(first(0.999), ("vertex", 2));
        let share = (0..1000)
            .filter(|i| first(*i as f64 / 1000.0).0 == "anthropic")
            .count();
        assert_eq!(share, 750);
        // an open breaker takes a provider out of the draw
        let mut open = Breakers::new(1, 1000);
        open.record_failure(("anthropic", 0), 0);
        let p = plan(
            SONNET,
            &RoutingOptions::default(),
            &both(),
            &w,
            &open,
            1,
            draws(0.1, 0.0),
        )
        .unwrap();
        assert_eq!(p[0].target.provider.name, "vertex");
    }

    #[test]
    fn an_order_naming_none_of_a_models_providers_leaves_the_weights_in_charge() {
        let mut w = Weights::new();
        w.insert(
            SONNET.into(),
            [("anthropic".to_owned(), 1.0), ("vertex".to_owned(), 3.0)].into(),
        );
        let first = |order: &[&str], r: f64| {
            let opts = RoutingOptions {
                order: Some(order.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            };
            let p = plan(
                SONNET,
                &opts,
                &both(),
                &w,
                &Breakers::new(3, 1000),
                0,
                draws(r, 0.0),
            )
            .unwrap();
            names(&p)
        };
        // (a key's default `order` meant for other models)
        assert_eq!(first(&["openai"], 0.1)[0], format!("vertex@{SONNET}"));
        assert_eq!(first(&["openai"], 0.9)[0], format!("anthropic@{SONNET}"));
        // one it names goes first whatever the draw
        assert_eq!(
            first(&["anthropic"], 0.1),
            vec![format!("anthropic@{SONNET}"), format!("vertex@{SONNET}")]
        );
    }

    #[test]
    fn only_naming_a_provider_without_a_credential_is_the_operators_503_not_the_clients_400() {
        let anthropic_only = config(&[("ANTHROPIC_API_KEY", "a")]);
        let opts = |only: &[&str], models: Option<Vec<String>>| RoutingOptions {
            only: Some(only.iter().map(|s| s.to_string()).collect()),
            models,
            ..Default::default()
        };
        let run = |o: RoutingOptions, c: &Config| {
            plan(
                SONNET,
                &o,
                c,
                &Weights::new(),
                &Breakers::new(3, 1000),
                0,
                draws(0.5, 0.0),
            )
        };
        // Vertex serves the model; the gateway has no credential for it.
        let e = run(opts(&["vertex"], None), &anthropic_only).unwrap_err();
        assert_eq!(e.status, 503, "{}", e.message);
        assert!(e.message.contains("VERTEX"), "{}", e.message);
        // A fallback model whose providers `only` excludes is not asked for a credential.
        let p = run(
            opts(&["anthropic"], Some(vec!["openai/gpt-4o".into()])),
            &anthropic_only,
        )
        .unwrap();
        assert_eq!(names(&p), vec![format!("anthropic@{SONNET}")]);
        let e = run(
            opts(&["anthropic"], None),
            &config(&[("VERTEX_API_KEY", "v")]),
        )
        .unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.message.contains("ANTHROPIC_API_KEY"), "{}", e.message);
        // Outside the catalog too: the provider named in the id, excluded by `only`.
        let e = plan(
            "groq/not-in-catalog",
            &opts(&["openai"], None),
            &both(),
            &Weights::new(),
            &Breakers::new(3, 1000),
            0,
            draws(0.5, 0.0),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("providerOptions.gateway.only"))
        );
    }

    fn labels(a: &[Attempt]) -> Vec<String> {
        a.iter().map(|a| a.target.label()).collect()
    }

    #[test]
    fn a_provider_with_several_credentials_gets_one_attempt_each_starting_at_the_draw() {
        let c = config(&[
            ("OPENAI_API_KEY", "o1"),
            ("OPENAI_API_KEY_2", "o2"),
            ("OPENAI_API_KEY_3", "o3"),
            ("XAI_API_KEY", "x"),
        ]);
        let opts = RoutingOptions {
            models: Some(vec!["xai/grok-3".into()]),
            ..Default::default()
        };
        let b = Breakers::new(1, 1000);
        let at = |spread: f64| {
            labels(
                &plan(
                    "openai/gpt-4o",
                    &opts,
                    &c,
                    &Weights::new(),
                    &b,
                    0,
                    draws(0.0, spread),
                )
                .unwrap(),
            )
        };
        assert_eq!(at(0.0), ["openai#1", "openai#2", "openai#3", "xai"]);
        assert_eq!(at(0.5), ["openai#2", "openai#3", "openai#1", "xai"]);
        assert_eq!(at(0.99), ["openai#3", "openai#1", "openai#2", "xai"]);
        // Even shares of the first place over the draws.
        let firsts: Vec<String> = (0..300).map(|i| at(i as f64 / 300.0)[0].clone()).collect();
        for k in ["openai#1", "openai#2", "openai#3"] {
            assert_eq!(firsts.iter().filter(|f| *f == k).count(), 100, "{k}");
        }
        // A credential whose breaker is open goes last; the provider's others still lead.
        let mut open = Breakers::new(1, 1000);
        open.record_failure(("openai", 1), 0);
        let p = plan(
            "openai/gpt-4o",
            &opts,
            &c,
            &Weights::new(),
            &open,
            1,
            draws(0.0, 0.5),
        )
        .unwrap();
        assert_eq!(labels(&p), ["openai#3", "openai#1", "xai", "openai#2"]);
    }

    #[test]
    fn weights_count_a_provider_as_open_only_when_all_its_credentials_are() {
        let c = config(&[
            ("ANTHROPIC_API_KEY", "a1"),
            ("ANTHROPIC_API_KEY_2", "a2"),
            ("VERTEX_API_KEY", "v"),
        ]);
        let mut w = Weights::new();
        w.insert(
            SONNET.into(),
            [("anthropic".to_owned(), 1.0), ("vertex".to_owned(), 1.0)].into(),
        );
        let mut b = Breakers::new(1, 1000);
        b.record_failure(("anthropic", 0), 0);
        let first = |b: &Breakers| {
            plan(
                SONNET,
                &RoutingOptions::default(),
                &c,
                &w,
                b,
                1,
                draws(0.1, 0.0),
            )
            .unwrap()[0]
                .target
                .label()
        };
        assert_eq!(
            first(&b),
            "anthropic#2",
            "one key open: the provider still draws"
        );
        b.record_failure(("anthropic", 1), 0);
        assert_eq!(first(&b), "vertex", "both keys open: out of the draw");
    }
}
