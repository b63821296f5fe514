//! Switchyard: an AI gateway (crate map is being laid out).
pub mod auth;
pub mod canonical;
pub mod catalog;
pub mod chat_body;
pub mod config;
#[cfg(target_arch = "wasm32")]
pub mod edge;
pub mod error;
pub mod formats;
pub mod ids;
pub mod pipeline;
pub mod platform;
pub mod providers;
pub mod routing;
pub mod sse;
