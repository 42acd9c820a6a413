//! A rate limit rule for the fake ITSMs: a token bucket of `per_second`
//! requests a second holding at most `burst`. A request that finds it empty
//! is answered 429 the way ServiceNow's inbound REST rate limit rules
//! answer: `Retry-After` (whole seconds until a request would pass),
//! `X-RateLimit-Limit`, `X-RateLimit-Reset` (Unix seconds), `X-RateLimit-Rule`
//! (the rule's sys_id) and an error body. ServiceNow's own rules count per
//! hour; a per-second bucket is the same answer at a pace a test can wait
//! for, and the shape of Jira Cloud's burst limits.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wiremock::ResponseTemplate;

/// The sys_id the fake's rule answers with.
const RULE: &str = "8d2f3a1c1b2a3010a5c0ed7bcc4bcb11";

#[derive(Debug)]
pub(crate) struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Full: `burst` requests may come at once.
    pub(crate) fn new(per_second: f64, burst: f64) -> Bucket {
        assert!(
            per_second > 0.0 && burst >= 1.0,
            "a bucket that lets requests through"
        );
        Bucket {
            per_second,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes a token for a request arriving `now`; `Err(wait)`: none until then.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }

    /// `None` when the request may pass; otherwise ServiceNow's 429.
    pub(crate) fn refuse(&mut self) -> Option<ResponseTemplate> {
        let wait = self.take(Instant::now()).err()?;
        // Whole seconds, rounded up: a client that waits them finds a token.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + wait;
        Some(
            ResponseTemplate::new(429)
                .insert_header("retry-after", retry_after.to_string().as_str())
                .insert_header(
                    "x-ratelimit-limit",
                    ((self.per_second * 3600.0).round() as u64).to_string().as_str(),
                )
                .insert_header("x-ratelimit-reset", reset.as_secs().to_string().as_str())
                .insert_header("x-ratelimit-rule", RULE)
                .set_body_json(json!({
                    "error": {
                        "message": "Rate limit exceeded",
                        "detail": format!("Rate limit rule {RULE} exceeded; retry after {retry_after} seconds"),
                    },
                    "status": "failure",
                })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_its_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(5.0, 2.0);
        b.at = start;
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(b.take(at(0)), Ok(()));
        assert_eq!(b.take(at(0)), Ok(()));
        // Empty: the next token comes 200 ms on.
        assert_eq!(b.take(at(0)), Err(Duration::from_millis(200)));
        assert_eq!(b.take(at(200)), Ok(()));
        assert!(b.take(at(300)).is_err());
        // Idle for a long while: never more than the burst.
        assert_eq!(b.take(at(10_000)), Ok(()));
        assert_eq!(b.take(at(10_000)), Ok(()));
        assert!(b.take(at(10_000)).is_err());
    }
}
