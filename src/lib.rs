//! Switchyard: an AI gateway for many LLM providers, running as a Cloudflare Worker.
//!
//! One request flows: [`pipeline`] (route, authenticate) → [`chat_body`] / [`canonical`] (the
//! request, raw or typed) → [`routing`] (plan, retries, breakers) → [`providers`] (build the
//! provider's request, translate its answer or stream with [`sse`] and [`formats`]) → back out,
//! with [`error`] rendering every failure in OpenAI's shape.
//!
//! | module | holds |
//! | --- | --- |
//! | [`pipeline`] | the request pipeline over the platform traits: routes, admin API, chat attempts |
//! | [`routing`] | model resolution, `providerOptions.gateway`, the plan, retry policy, breakers, report |
//! | [`providers`] | the provider registry and one module per upstream protocol |
//! | [`formats`] | the OpenAI encoder for translated responses and chunks |
//! | [`canonical`] | the typed chat request, stream parts, usage, finish reasons |
//! | [`chat_body`] | the top-level raw view of a chat body (fast path: forward as sent) |
//! | [`catalog`] | the generated model table and lookups |
//! | [`sse`] | the incremental SSE decoder and encoders |
//! | [`auth`] | gateway keys (SHA-256 digests, isolate cache), admin token |
//! | [`config`] | settings read once per isolate from the environment |
//! | [`platform`] | the traits the core reaches the world through: clock, upstream, KV |
//! | [`error`] | the one error type, grouped by cause |
//! | [`ids`] | generation, key and request ids |
//! | [`fields`] | the newline-joined lists the edge's JavaScript and the core exchange |
//! | `edge` | wasm32 only: the Workers fetch handler and trait adapters |
pub mod auth;
pub mod canonical;
pub mod catalog;
pub mod chat_body;
pub mod config;
#[cfg(target_arch = "wasm32")]
pub mod edge;
pub mod error;
pub mod fields;
pub mod formats;
pub mod ids;
pub mod pipeline;
pub mod platform;
pub mod providers;
pub mod routing;
pub mod sse;
