//! Circuit breakers, one per provider, held in the isolate.
//!
//! After `threshold` consecutive retryable failures a provider is open for `cooldown_ms`: plans
//! put it last, so requests stop paying for it while another provider can serve. When the
//! cool-down has passed, the next plan lets one trial through (half-open) and re-arms the
//! cool-down for everyone else; the trial's success closes the breaker, its failure reopens it.

use std::collections::HashMap;

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    open_until: Option<u64>,
}

#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown_ms: u64,
    states: HashMap<&'static str, State>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown_ms: u64) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            cooldown_ms,
            states: HashMap::new(),
        }
    }

    /// Whether `provider` should be avoided now.
    pub fn is_open(&self, provider: &str, now_ms: u64) -> bool {
        self.states
            .get(provider)
            .and_then(|s| s.open_until)
            .is_some_and(|until| now_ms < until)
    }

    /// Called when a plan will try `provider` first among its healthy peers: a provider whose
    /// cool-down has run out gets its one trial, and others keep away until it reports.
    pub fn admit(&mut self, provider: &'static str, now_ms: u64) {
        if let Some(s) = self.states.get_mut(provider) {
            if s.open_until.is_some_and(|until| now_ms >= until) {
                s.open_until = Some(now_ms + self.cooldown_ms);
            }
        }
    }

    pub fn record_success(&mut self, provider: &'static str) {
        self.states.remove(provider);
    }

    /// A retryable failure (5xx, 429, timeout, connection, cut stream).
    pub fn record_failure(&mut self, provider: &'static str, now_ms: u64) {
        let s = self.states.entry(provider).or_default();
        s.failures = s.failures.saturating_add(1);
        if s.failures >= self.threshold {
            s.open_until = Some(now_ms + self.cooldown_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through_after_the_cooldown() {
        let mut b = Breakers::new(2, 1000);
        b.record_failure("anthropic", 0);
        assert!(!b.is_open("anthropic", 1), "one failure is not enough");
        b.record_failure("anthropic", 10);
        assert!(b.is_open("anthropic", 11));
        assert!(b.is_open("anthropic", 1009));
        assert!(
            !b.is_open("anthropic", 1010),
            "half-open after the cool-down"
        );
        b.admit("anthropic", 1010);
        assert!(
            b.is_open("anthropic", 1011),
            "only one trial: others keep away"
        );
        b.record_failure("anthropic", 1020);
        assert!(b.is_open("anthropic", 2000), "a failed trial reopens it");
        assert!(!b.is_open("anthropic", 2020));
        b.admit("anthropic", 2020);
        b.record_success("anthropic");
        assert!(
            !b.is_open("anthropic", 2021),
            "a successful trial closes it"
        );
        b.record_failure("anthropic", 2022);
        assert!(!b.is_open("anthropic", 2023), "the count started over");
    }

    #[test]
    fn a_success_resets_the_count_and_providers_are_independent() {
        let mut b = Breakers::new(3, 1000);
        b.record_failure("a", 0);
        b.record_failure("a", 0);
        b.record_success("a");
        b.record_failure("a", 0);
        b.record_failure("b", 0);
        assert!(!b.is_open("a", 1) && !b.is_open("b", 1));
        b.admit("c", 5); // unknown providers are fine
        assert!(!b.is_open("c", 6));
    }
}
