//! Retry policy: which failures are worth another attempt, and how long to wait before it.

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The provider answered with this HTTP status.
    Status(u16),
    /// No connection, or it broke before a response.
    Network,
    /// No response head (or first token, for streams) in time.
    Timeout,
    /// A 2xx whose body could not be read as the protocol's JSON.
    Malformed,
    /// A stream that ended or failed before its first content.
    StreamFailed,
    /// An error reported inside a stream before its first content, with a retryable cause.
    StreamError { retryable: bool },
    /// The gateway could not build the provider's request (a parameter it cannot honour);
    /// nothing was sent.
    Refused,
    /// The gateway's own settings for this provider are unusable (an unreadable service
    /// account, no project); nothing was sent.
    Misconfigured,
    /// The provider refused an access token the gateway had cached (Vertex AI): the next try
    /// gets a new one.
    StaleToken,
    /// An answer larger than the gateway reads: the request asked for it, so it is final and
    /// says nothing about the provider's health.
    TooLarge,
    /// A redirect, not followed (it would take the key and the prompt elsewhere): the provider
    /// is not answering at the configured address, and another may.
    Redirected,
    /// The provider refused for want of payment, with this HTTP status (402; OpenAI's 429
    /// `insufficient_quota`; Anthropic's 400 "credit balance is too low"): the operator's to
    /// settle, not retried on that credential, while another may serve.
    Unpaid(u16),
}

impl AttemptOutcome {
    pub fn is_success(self) -> bool {
        matches!(self, AttemptOutcome::Status(200..=299))
    }

    /// Whether another attempt (same provider after a pause, or the next one) may succeed.
    pub fn is_retryable(self) -> bool {
        match self {
            // (498: Groq's flex tier out of capacity, to be retried with a backoff. Every 5xx
            // but 501 and 505, which a retry does not change: also Cloudflare's 520–530, which
            // providers behind it answer during an incident, and Anthropic's 529.)
            AttemptOutcome::Status(s) => {
                matches!(s, 408 | 409 | 429 | 498 | 500..=599) && !matches!(s, 501 | 505)
            }
            AttemptOutcome::Network
            | AttemptOutcome::Timeout
            | AttemptOutcome::Malformed
            | AttemptOutcome::StreamFailed
            | AttemptOutcome::StaleToken
            | AttemptOutcome::Redirected => true,
            AttemptOutcome::StreamError { retryable } => retryable,
            AttemptOutcome::Refused
            | AttemptOutcome::Misconfigured
            | AttemptOutcome::TooLarge
            | AttemptOutcome::Unpaid(_) => false,
        }
    }

    /// A short word for routing metadata and the attempts header.
    pub fn kind(self) -> Option<&'static str> {
        match self {
            AttemptOutcome::Status(200..=299) => None,
            AttemptOutcome::Status(429) => Some("rate_limited"),
            AttemptOutcome::Unpaid(_) => Some("payment_required"),
            AttemptOutcome::Status(498) => Some("capacity_exceeded"),
            AttemptOutcome::Status(s) if s >= 500 => Some("upstream_error"),
            AttemptOutcome::Status(_) => Some("client_error"),
            AttemptOutcome::Network => Some("connection_failed"),
            AttemptOutcome::Timeout => Some("timeout"),
            AttemptOutcome::Malformed => Some("malformed_response"),
            AttemptOutcome::StreamFailed => Some("stream_failed"),
            AttemptOutcome::StreamError { .. } => Some("stream_error"),
            AttemptOutcome::Refused => Some("unsupported_request"),
            AttemptOutcome::Misconfigured => Some("provider_not_configured"),
            AttemptOutcome::StaleToken => Some("token_refused"),
            AttemptOutcome::TooLarge => Some("response_too_large"),
            AttemptOutcome::Redirected => Some("redirected"),
        }
    }
}

/// Limits of the attempt loop (from configuration; timeouts may come from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per provider before moving on.
    pub attempts_per_provider: u32,
    /// Attempts in all, over every provider and model.
    pub max_attempts: u32,
    /// First backoff; doubles with each retry of the same provider.
    pub base_delay_ms: u64,
    /// Longest single backoff.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_per_provider: 2,
            max_attempts: 8,
            base_delay_ms: 250,
            max_delay_ms: 8_000,
        }
    }
}

/// Exponential backoff with jitter: for the `retry`-th retry (1-based), a delay drawn uniformly
/// from the upper half of `base × 2^(retry-1)`, capped. `random` is any u32 draw.
pub fn backoff_ms(policy: &RetryPolicy, retry: u32, random: u32) -> u64 {
    let exp = policy
        .base_delay_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
        .min(policy.max_delay_ms);
    let half = exp / 2;
    half + (random as u64 % (half + 1))
}

/// The wait a provider asked for: `retry-after-ms` (milliseconds) wins over `retry-after`
/// (seconds, or an HTTP date: the time from `now_ms` until then).
pub fn retry_after_ms(
    retry_after: Option<&str>,
    retry_after_ms: Option<&str>,
    now_ms: u64,
) -> Option<u64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(ms.ceil() as u64);
        }
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(u64::try_from(at_ms).ok()?.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_and_failures() {
        for s in [
            408, 409, 429, 498, 500, 502, 503, 504, 520, 522, 524, 529, 530,
        ] {
            assert!(AttemptOutcome::Status(s).is_retryable(), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 422, 501, 505] {
            assert!(!AttemptOutcome::Status(s).is_retryable(), "{s}");
        }
        assert!(AttemptOutcome::Network.is_retryable());
        assert!(AttemptOutcome::Timeout.is_retryable());
        assert!(AttemptOutcome::Malformed.is_retryable());
        assert!(AttemptOutcome::StreamFailed.is_retryable());
        assert!(!AttemptOutcome::StreamError { retryable: false }.is_retryable());
        assert!(!AttemptOutcome::Refused.is_retryable());
        assert!(!AttemptOutcome::Misconfigured.is_retryable());
        assert_eq!(AttemptOutcome::Refused.kind(), Some("unsupported_request"));
        assert_eq!(AttemptOutcome::Status(503).kind(), Some("upstream_error"));
        assert_eq!(AttemptOutcome::Status(200).kind(), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 1000,
            ..Default::default()
        };
        assert!((50..=100).contains(&backoff_ms(&p, 1, 0)));
        assert_eq!(backoff_ms(&p, 1, 0), 50);
        assert_eq!(backoff_ms(&p, 1, 50), 100);
        assert!((100..=200).contains(&backoff_ms(&p, 2, 12345)));
        assert!(
            (500..=1000).contains(&backoff_ms(&p, 30, u32::MAX)),
            "capped"
        );
        let draws: std::collections::HashSet<u64> =
            (0..20).map(|r| backoff_ms(&p, 3, r * 7)).collect();
        assert!(draws.len() > 5, "jitter spreads retries");
    }

    #[test]
    fn retry_after_headers() {
        let now = 1_445_412_470_000; // 2015-10-21 07:27:50 GMT
        assert_eq!(retry_after_ms(Some("2"), None, now), Some(2000));
        assert_eq!(retry_after_ms(Some("0.5"), None, now), Some(500));
        assert_eq!(
            retry_after_ms(Some("1"), Some("250"), now),
            Some(250),
            "ms wins"
        );
        assert_eq!(
            retry_after_ms(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None, now),
            Some(10_000),
            "an HTTP date: the time until then"
        );
        assert_eq!(
            retry_after_ms(Some("Wed, 21 Oct 2015 07:20:00 GMT"), None, now),
            Some(0),
            "a date already past: no wait"
        );
        assert_eq!(retry_after_ms(Some("soon"), None, now), None);
        assert_eq!(retry_after_ms(None, None, now), None);
        assert_eq!(retry_after_ms(Some("-3"), None, now), None);
    }
}
