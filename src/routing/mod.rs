//! Routing: which providers serve a request, in which order, and what to do when one fails.
//!
//! Everything here is a pure function of its inputs (request options, key defaults, catalog,
//! configuration, provider health, a random draw), so the whole policy is tested natively.
//! The attempt loop that applies it lives in the pipeline.

mod breaker;
mod options;
mod plan;
mod report;
mod resolve;
mod retry;

pub use breaker::{Breakers, Watched};
pub use options::RoutingOptions;
pub use plan::{plan, Attempt, Draws, Weights};
pub use report::RoutingReport;
pub use resolve::{resolve, Target};
pub use retry::{backoff_ms, retry_after_ms, AttemptOutcome, RetryPolicy};
