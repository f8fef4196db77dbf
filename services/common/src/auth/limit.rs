//! Per-caller request rate limits: a token bucket per caller (a token's
//! name, or the peer address when no tokens are required), holding a
//! second's worth of requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Callers remembered at most; beyond it, full (idle) buckets are dropped.
const MAX_CALLERS: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
pub struct RateLimits {
    rate: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    pub fn new(rate: f64) -> Self {
        Self { rate, buckets: Mutex::default() }
    }

    /// The limit, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one request from `caller`'s bucket, or says how long until
    /// one is there.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        let burst = self.rate.max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            let rate = self.rate;
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate < burst
            });
            // Still full of active callers (many addresses): start over
            // rather than grow without bound; whoever has that many
            // addresses is not held by per-address limits anyway.
            if buckets.len() >= MAX_CALLERS {
                buckets.clear();
            }
        }
        let bucket =
            buckets.entry(caller.to_string()).or_insert(Bucket { tokens: burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_and_others_are_untouched() {
        let limits = RateLimits::new(5.0);
        for _ in 0..5 {
            limits.take("a").expect("within the burst");
        }
        let wait = limits.take("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        limits.take("b").expect("another caller has its own bucket");
    }
}
