//! Circuit breakers, one per provider credential, held in the isolate.
//!
//! After `threshold` consecutive retryable failures a provider's credential is open for
//! `cooldown_ms`: plans put it last, so requests stop paying for it while another credential or
//! provider can serve (a key that is rate-limited does not take the provider's other keys down). When the
//! cool-down has passed, the next attempt on it is its one trial (half-open): everyone else keeps
//! away until the trial reports (or could have: at least the trial's time), and the trial's
//! success closes the breaker, its failure reopens it. A stream reports when it ends
//! ([`Watched`]): only then is it known to have failed or served.

use crate::error::GatewayError;
use crate::formats::openai::Trailer;
use crate::platform::{FetchError, Progress, StreamTransform};
use crate::routing::AttemptOutcome;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    open_until: Option<u64>,
}

#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown_ms: u64,
    states: HashMap<Key, State>,
}

/// A provider and one of its credentials (0-based).
pub type Key = (&'static str, u8);

impl Breakers {
    pub fn new(threshold: u32, cooldown_ms: u64) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            cooldown_ms,
            states: HashMap::new(),
        }
    }

    /// Whether `key` should be avoided now.
    pub fn is_open(&self, key: Key, now_ms: u64) -> bool {
        self.states
            .get(&key)
            .and_then(|s| s.open_until)
            .is_some_and(|until| now_ms < until)
    }

    /// Whether every one of `provider`'s `credentials` should be avoided now.
    pub fn all_open(&self, provider: &'static str, credentials: u8, now_ms: u64) -> bool {
        (0..credentials.max(1)).all(|c| self.is_open((provider, c), now_ms))
    }

    /// Called as an attempt on `key` starts, with the time it may take: a key whose cool-down
    /// has run out gets this attempt as its one trial, and others keep away until it reports
    /// (at the latest when the trial's time is up).
    pub fn admit(&mut self, key: Key, now_ms: u64, trial_ms: u64) {
        if let Some(s) = self.states.get_mut(&key) {
            if s.open_until.is_some_and(|until| now_ms >= until) {
                s.open_until = Some(now_ms.saturating_add(self.cooldown_ms.max(trial_ms)));
            }
        }
    }

    pub fn record_success(&mut self, key: Key) {
        self.states.remove(&key);
    }

    /// A retryable failure (5xx, 429, timeout, connection, cut stream).
    pub fn record_failure(&mut self, key: Key, now_ms: u64) {
        let s = self.states.entry(key).or_default();
        s.failures = s.failures.saturating_add(1);
        if s.failures >= self.threshold {
            s.open_until = Some(now_ms.saturating_add(self.cooldown_ms));
        }
    }
}

/// A stream handed to the client, telling its target's breaker how it ended: a failure the
/// attempt loop would count (a cut, a silence, a translated retryable error event; a
/// passed-through stream's own events are not judged after content) counts against the
/// target, the end of an answer (or a client that left while it was served) is the target's
/// success. Until then the breaker stands as it was: a half-open trial reports only then (others
/// keep away for the time [`Breakers::admit`] gave it).
pub struct Watched {
    inner: Box<dyn StreamTransform>,
    breakers: Rc<RefCell<Breakers>>,
    key: Key,
    now: Rc<dyn Fn() -> u64>,
    reported: bool,
}

impl Watched {
    /// `inner` already has its trailer: a stream that ended within its first read reports now.
    pub fn new(
        inner: Box<dyn StreamTransform>,
        breakers: Rc<RefCell<Breakers>>,
        key: Key,
        now: Rc<dyn Fn() -> u64>,
    ) -> Self {
        let mut w = Watched {
            inner,
            breakers,
            key,
            now,
            reported: false,
        };
        w.report_end();
        w
    }

    fn report_end(&mut self) {
        if self.reported || !self.inner.closed() {
            return;
        }
        let failed = self
            .inner
            .failure()
            .is_some_and(|e| AttemptOutcome::Status(e.status).is_retryable());
        self.report(failed);
    }

    fn report(&mut self, failed: bool) {
        self.reported = true;
        // (Never borrowed across an await: busy only if called from within the breakers.)
        if let Ok(mut breakers) = self.breakers.try_borrow_mut() {
            if failed {
                breakers.record_failure(self.key, (self.now)());
            } else {
                breakers.record_success(self.key);
            }
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.reported {
            self.report(false); // the client left while the provider was serving
        }
    }
}

impl StreamTransform for Watched {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.inner.push(chunk, out);
        self.report_end();
    }

    fn finish(&mut self, out: &mut Vec<u8>, upstream_error: Option<&FetchError>) {
        self.inner.finish(out, upstream_error);
        self.report_end();
    }

    fn progress(&self) -> &Progress {
        self.inner.progress()
    }

    fn set_trailer(&mut self, trailer: Trailer, out: &mut Vec<u8>) {
        self.inner.set_trailer(trailer, out);
        self.report_end();
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }

    fn failure(&self) -> Option<&GatewayError> {
        self.inner.failure()
    }

    fn chunk_identity(&self) -> (Option<&str>, Option<&str>, Option<u64>) {
        self.inner.chunk_identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through_after_the_cooldown() {
        let mut b = Breakers::new(2, 1000);
        b.record_failure(("anthropic", 0), 0);
        assert!(!b.is_open(("anthropic", 0), 1), "one failure is not enough");
        b.record_failure(("anthropic", 0), 10);
        assert!(b.is_open(("anthropic", 0), 11));
        assert!(b.is_open(("anthropic", 0), 1009));
        assert!(
            !b.is_open(("anthropic", 0), 1010),
            "half-open after the cool-down"
        );
        b.admit(("anthropic", 0), 1010, 5000);
        assert!(
            b.is_open(("anthropic", 0), 1011),
            "only one trial: others keep away"
        );
        assert!(
            b.is_open(("anthropic", 0), 5000),
            "also while a trial longer than the cool-down runs"
        );
        b.record_failure(("anthropic", 0), 1020);
        assert!(
            b.is_open(("anthropic", 0), 2000),
            "a failed trial reopens it"
        );
        assert!(!b.is_open(("anthropic", 0), 2020));
        b.admit(("anthropic", 0), 2020, 10);
        b.record_success(("anthropic", 0));
        assert!(
            !b.is_open(("anthropic", 0), 2021),
            "a successful trial closes it"
        );
        b.record_failure(("anthropic", 0), 2022);
        assert!(!b.is_open(("anthropic", 0), 2023), "the count started over");
    }

    #[test]
    fn a_success_resets_the_count_and_providers_are_independent() {
        let mut b = Breakers::new(3, 1000);
        b.record_failure(("a", 0), 0);
        b.record_failure(("a", 0), 0);
        b.record_success(("a", 0));
        b.record_failure(("a", 0), 0);
        b.record_failure(("b", 0), 0);
        assert!(!b.is_open(("a", 0), 1) && !b.is_open(("b", 0), 1));
        b.admit(("c", 0), 5, 10); // unknown providers are fine
        assert!(!b.is_open(("c", 0), 6));
    }

    #[test]
    fn credentials_of_one_provider_are_independent() {
        let mut b = Breakers::new(1, 1000);
        b.record_failure(("openai", 0), 0);
        assert!(b.is_open(("openai", 0), 1));
        assert!(!b.is_open(("openai", 1), 1), "the other key still serves");
        assert!(!b.all_open("openai", 2, 1));
        b.record_failure(("openai", 1), 0);
        assert!(b.all_open("openai", 2, 1));
    }
}
