//! Per-caller request rate limits: `governor`'s keyed limiter, one bucket
//! per caller (a token's name, or the peer address when no tokens are
//! required), holding a second's worth of requests.

use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Callers remembered at most; beyond it, callers whose buckets are full
/// again (idle) are forgotten.
const MAX_CALLERS: usize = 10_000;

/// The longest wait between two requests a limit may ask for.
const SLOWEST_PERIOD: Duration = Duration::from_secs(3600);

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

#[derive(Debug)]
pub struct RateLimits {
    rate: f64,
    quota: Quota,
    /// Replaced whole only when more than `MAX_CALLERS` callers are active.
    limiter: RwLock<Keyed>,
}

impl RateLimits {
    /// Limits of `rate` requests per second per caller (more than zero),
    /// with a burst of a second's worth, at least one.
    pub fn new(rate: f64) -> Self {
        // At least one request an hour: a slower rate (or one that is not
        // a number) would need a period governor cannot hold (it panics
        // past 584 years), and means nothing for an API anyway.
        let period =
            Duration::try_from_secs_f64(1.0 / rate).unwrap_or(SLOWEST_PERIOD).min(SLOWEST_PERIOD);
        // `with_period` refuses only a zero period (an infinite rate).
        let quota =
            Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
        // A float-to-int `as` saturates: NaN and negatives give 0, then 1.
        let burst = NonZeroU32::new(rate as u32).unwrap_or(NonZeroU32::MIN);
        let quota = quota.allow_burst(burst);
        Self { rate, quota, limiter: RwLock::new(RateLimiter::keyed(quota)) }
    }

    /// The limit, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes one request from `caller`'s bucket, or says how long until
    /// one is there (and gives the name back, for the log). The name is
    /// taken by value: the limiter's map is keyed by owned names, and the
    /// caller's own is moved in rather than copied for every request.
    pub fn take(&self, caller: String) -> Result<(), Limited> {
        let limited = |wait| Limited { wait, caller: caller.clone() };
        {
            let limiter = self.limiter.read().unwrap_or_else(PoisonError::into_inner);
            if limiter.len() < MAX_CALLERS {
                return check(&limiter, &caller).map_err(limited);
            }
        }
        let mut limiter = self.limiter.write().unwrap_or_else(PoisonError::into_inner);
        limiter.retain_recent();
        // Still full of active callers (many addresses): start over rather
        // than grow without bound; whoever has that many addresses is not
        // held by per-address limits anyway.
        if limiter.len() >= MAX_CALLERS {
            *limiter = RateLimiter::keyed(self.quota);
        }
        check(&limiter, &caller).map_err(limited)
    }
}

/// A request over its caller's limit.
#[derive(Debug)]
pub struct Limited {
    /// Until the caller's next request is allowed.
    pub wait: Duration,
    pub caller: String,
}

fn check(limiter: &Keyed, caller: &String) -> Result<(), Duration> {
    limiter
        .check_key(caller)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_and_others_are_untouched() {
        let limits = RateLimits::new(5.0);
        for _ in 0..5 {
            limits.take("a".into()).expect("within the burst");
        }
        let wait = limits.take("a".into()).expect_err("over the burst").wait;
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        limits.take("b".into()).expect("another caller has its own bucket");
    }

    #[test]
    fn any_rate_makes_a_limit_without_panicking() {
        for rate in [1e-11, 1e-300, f64::MIN_POSITIVE, 0.0, -1.0, f64::NAN, 1e12, f64::INFINITY] {
            let limits = RateLimits::new(rate);
            limits.take("a".into()).expect("the first request is allowed");
        }
        let slowest = RateLimits::new(1e-11);
        slowest.take("a".into()).expect("the first request is allowed");
        let wait = slowest.take("a".into()).expect_err("the second waits").wait;
        assert!(wait <= SLOWEST_PERIOD, "{wait:?}");
    }

    #[test]
    fn callers_past_the_bound_are_forgotten_not_kept() {
        let limits = RateLimits::new(1.0);
        for i in 0..MAX_CALLERS + 10 {
            limits.take(format!("caller-{i}")).expect("a new caller has its burst");
        }
        let remembered = limits.limiter.read().unwrap().len();
        assert!(remembered <= MAX_CALLERS, "{remembered} callers remembered");
    }
}
