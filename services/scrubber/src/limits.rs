//! Per-registry limits shared by every deletion of this process: a token
//! bucket on requests (the registry's rate limit) and an AIMD limit on
//! images in flight that halves on 429/503 and grows back on success.
//!
//! Written here rather than taken from a crate, unlike the per-caller API
//! limits (`governor`): the request rate is a registry setting an operator
//! changes while deletions run, and the tests drive it on tokio's paused
//! clock, whereas a `governor` limiter has a fixed quota and its own clock;
//! and the slot limit adapts (halves on pushback, grows on success), which
//! neither `governor` nor tower's fixed `ConcurrencyLimit` does.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regsweep_proto::{timestamp_to_chrono, v1};
use regsweep_registry::Gate;
use tokio::sync::Notify;

/// At most one halving per this period: one burst of 429s is one signal.
const DECREASE_PERIOD: Duration = Duration::from_secs(1);

/// A pushback recorded on the registry this recently (by any scrubber,
/// before a restart too) starts this process's limits where that pushback
/// left them, halved, rather than at full concurrency for the registry to
/// refuse again.
const PUSHBACK_MEMORY: Duration = Duration::from_secs(600);

struct Bucket {
    tokens: f64,
    // Tokio's clock, so tests can pause time.
    refilled: tokio::time::Instant,
}

pub struct RegistryLimits {
    pub name: String,
    /// Requests per second; 0 for unlimited.
    rate: Mutex<f64>,
    bucket: Mutex<Bucket>,
    max_concurrency: AtomicU32,
    concurrency: AtomicU32,
    in_flight: AtomicU32,
    successes: AtomicU32,
    last_decrease: Mutex<Option<Instant>>,
    freed: Notify,
    /// When the requests of the last second were let through.
    sent: Mutex<VecDeque<tokio::time::Instant>>,
    /// The last pushback not yet reported to the scheduler.
    pushback: Mutex<Option<Pushback>>,
}

/// A registry pushing back: the status, and the requests per second let
/// through over the second before.
#[derive(Clone, Debug, PartialEq)]
pub struct Pushback {
    pub registry: String,
    pub status: u16,
    pub rate: f64,
}

/// Holds one image slot of a registry; frees it when dropped.
pub struct Slot(Arc<RegistryLimits>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.freed.notify_waiters();
    }
}

impl RegistryLimits {
    fn new(name: &str, rate: f64, max_concurrency: u32) -> Self {
        Self {
            name: name.to_string(),
            rate: Mutex::new(rate),
            bucket: Mutex::new(Bucket {
                tokens: burst(rate),
                refilled: tokio::time::Instant::now(),
            }),
            max_concurrency: AtomicU32::new(max_concurrency),
            concurrency: AtomicU32::new(max_concurrency),
            in_flight: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            last_decrease: Mutex::new(None),
            freed: Notify::new(),
            sent: Mutex::default(),
            pushback: Mutex::new(None),
        }
    }

    /// Counts a request let through, and forgets those older than a second.
    fn count_sent(&self) {
        let now = tokio::time::Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.push_back(now);
        forget_before(&mut sent, now);
    }

    /// Requests let through over the last second.
    fn sent_rate(&self) -> usize {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        forget_before(&mut sent, tokio::time::Instant::now());
        sent.len()
    }

    /// The pushback seen since the last call, once.
    pub fn take_pushback(&self) -> Option<Pushback> {
        self.pushback.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Waits for a free image slot under the current concurrency.
    pub async fn slot(self: &Arc<Self>) -> Slot {
        loop {
            let notified = self.freed.notified();
            let limit = self.concurrency.load(Ordering::SeqCst);
            let current = self.in_flight.load(Ordering::SeqCst);
            if current < limit
                && self
                    .in_flight
                    .compare_exchange(current, current + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return Slot(self.clone());
            }
            notified.await;
        }
    }

    async fn take_token(&self) {
        loop {
            let wait = {
                let rate = *self.rate.lock().unwrap_or_else(PoisonError::into_inner);
                if rate <= 0.0 {
                    return;
                }
                let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
                let now = tokio::time::Instant::now();
                let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * rate).min(burst(rate));
                bucket.refilled = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn decrease(&self, status: u16) {
        let mut last = self.last_decrease.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < DECREASE_PERIOD) {
            return;
        }
        *last = Some(Instant::now());
        #[allow(clippy::cast_precision_loss)] // a count of one second's requests
        let rate = self.sent_rate() as f64;
        let pushback = Pushback { registry: self.name.clone(), status, rate };
        *self.pushback.lock().unwrap_or_else(PoisonError::into_inner) = Some(pushback);
        let current = self.concurrency.load(Ordering::SeqCst);
        let halved = (current / 2).max(1);
        self.concurrency.store(halved, Ordering::SeqCst);
        self.successes.store(0, Ordering::SeqCst);
        tracing::warn!(registry = %self.name, status, rate, concurrency = halved,
            "registry pushed back, lowering concurrency");
    }

    fn increase(&self) {
        let current = self.concurrency.load(Ordering::SeqCst);
        let max = self.max_concurrency.load(Ordering::SeqCst);
        if current >= max {
            return;
        }
        // Additive increase: one more slot per `current` successes.
        if self.successes.fetch_add(1, Ordering::SeqCst) + 1 >= current {
            self.successes.store(0, Ordering::SeqCst);
            self.concurrency.store(current + 1, Ordering::SeqCst);
            self.freed.notify_waiters();
        }
    }

    pub fn snapshot(&self) -> v1::RegistryLimits {
        v1::RegistryLimits {
            registry: self.name.clone(),
            concurrency: self.concurrency.load(Ordering::SeqCst),
            max_concurrency: self.max_concurrency.load(Ordering::SeqCst),
            rate_limit: *self.rate.lock().unwrap_or_else(PoisonError::into_inner),
            in_flight: self.in_flight.load(Ordering::SeqCst),
        }
    }
}

/// The limits a registry starts with in this process: halved once when
/// its last pushback is recent, as the pushback itself would have done.
fn first_limits(registry: &v1::Registry, max: u32, now: DateTime<Utc>) -> RegistryLimits {
    let limits = RegistryLimits::new(&registry.name, registry.rate_limit, max);
    let recorded = registry.pushback.as_ref().and_then(|p| p.at.as_ref());
    let at = recorded.and_then(timestamp_to_chrono);
    // A pushback stamped ahead of this clock (skew) counts as just now.
    let age = at.map(|at| (now - at).to_std().unwrap_or_default());
    if age.is_some_and(|age| age < PUSHBACK_MEMORY) {
        let halved = (max / 2).max(1);
        limits.concurrency.store(halved, Ordering::SeqCst);
        tracing::info!(registry = %registry.name, concurrency = halved, age = ?age,
            "registry pushed back recently, starting at lower concurrency");
    }
    limits
}

/// Drops the times more than a second before `now`.
fn forget_before(sent: &mut VecDeque<tokio::time::Instant>, now: tokio::time::Instant) {
    while sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        sent.pop_front();
    }
}

/// Tokens the bucket holds at most: a tenth of a second's worth, so no
/// second ever sees more than 110% of the rate.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

impl Gate for RegistryLimits {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.take_token().await;
            self.count_sent();
        })
    }

    fn observe(&self, status: u16) {
        match status {
            429 | 503 => self.decrease(status),
            200..=299 | 404 => self.increase(),
            _ => {}
        }
    }
}

/// The limits of every registry this process talks to.
pub struct Limits {
    default_max: u32,
    registries: Mutex<HashMap<String, Arc<RegistryLimits>>>,
}

impl Limits {
    pub fn new(default_max: u32) -> Self {
        Self { default_max: default_max.max(1), registries: Mutex::default() }
    }

    /// The limits of `registry`, following its current definition.
    pub fn of(&self, registry: &v1::Registry) -> Arc<RegistryLimits> {
        let max = if registry.max_parallel_deletions > 0 {
            registry.max_parallel_deletions
        } else {
            self.default_max
        };
        let mut registries = self.registries.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = registries
            .entry(registry.name.clone())
            .or_insert_with(|| Arc::new(first_limits(registry, max, Utc::now())))
            .clone();
        *limits.rate.lock().unwrap_or_else(PoisonError::into_inner) = registry.rate_limit;
        if limits.max_concurrency.swap(max, Ordering::SeqCst) != max {
            let current = limits.concurrency.load(Ordering::SeqCst);
            limits.concurrency.store(current.min(max).max(1), Ordering::SeqCst);
        }
        limits
    }

    /// The pushbacks seen since the last call, one per registry at most.
    pub fn take_pushbacks(&self) -> Vec<Pushback> {
        let registries = self.registries.lock().unwrap_or_else(PoisonError::into_inner);
        registries.values().filter_map(|l| l.take_pushback()).collect()
    }

    pub fn snapshot(&self) -> Vec<v1::RegistryLimits> {
        let registries = self.registries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = registries.values().map(|l| l.snapshot()).collect();
        all.sort_by(|a, b| a.registry.cmp(&b.registry));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(rate: f64, max: u32) -> v1::Registry {
        v1::Registry {
            name: "r".into(),
            rate_limit: rate,
            max_parallel_deletions: max,
            ..Default::default()
        }
    }

    #[test]
    fn halves_on_pushback_and_grows_back() {
        let limits = Limits::new(8).of(&registry(0.0, 8));
        limits.observe(429);
        assert_eq!(limits.snapshot().concurrency, 4);
        // A second 429 in the same burst is the same signal.
        limits.observe(503);
        assert_eq!(limits.snapshot().concurrency, 4);
        for _ in 0..4 {
            limits.observe(202);
        }
        assert_eq!(limits.snapshot().concurrency, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_the_rate() {
        let limits = Limits::new(8).of(&registry(20.0, 8));
        let started = tokio::time::Instant::now();
        for _ in 0..42 {
            limits.acquire().await;
        }
        // 2 tokens of burst, then 20 per second: 40 more take 2 seconds.
        assert_eq!(started.elapsed().as_secs(), 2);
    }

    /// A pushback is kept with the rate of the second before it, once per
    /// burst, until it is taken for the scheduler.
    #[tokio::test(start_paused = true)]
    async fn a_pushback_is_kept_with_the_rate_sent_before_it() {
        let all = Limits::new(8);
        let limits = all.of(&registry(0.0, 8));
        for _ in 0..5 {
            limits.acquire().await;
        }
        tokio::time::advance(Duration::from_millis(1500)).await;
        for _ in 0..7 {
            limits.acquire().await;
        }
        assert!(all.take_pushbacks().is_empty(), "none before a 429");
        limits.observe(429);
        let seen = Pushback { registry: "r".into(), status: 429, rate: 7.0 };
        assert_eq!(all.take_pushbacks(), [seen], "the 5 sent 1.5 s ago are not counted");
        assert!(all.take_pushbacks().is_empty(), "taken once");
        limits.observe(503);
        assert!(all.take_pushbacks().is_empty(), "the same burst");
    }

    /// A restarted scrubber starts a registry that pushed back recently at
    /// half its slots, and grows back from there; an old pushback, or one
    /// not recorded, costs nothing.
    #[test]
    fn a_recent_pushback_starts_the_limits_halved() {
        let now = Utc::now();
        let pushed_back = |ago: Duration| v1::Registry {
            pushback: Some(v1::RegistryPushback {
                rate: 40.0,
                status: 429,
                at: Some(regsweep_proto::timestamp_from_chrono(
                    now - chrono::Duration::from_std(ago).expect("a span"),
                )),
            }),
            ..registry(0.0, 8)
        };
        let recent = first_limits(&pushed_back(Duration::from_secs(30)), 8, now);
        assert_eq!(recent.snapshot().concurrency, 4);
        for _ in 0..4 {
            recent.observe(202);
        }
        assert_eq!(recent.snapshot().concurrency, 5, "and grows back on success");
        let old = first_limits(&pushed_back(PUSHBACK_MEMORY + Duration::from_secs(1)), 8, now);
        assert_eq!(old.snapshot().concurrency, 8);
        assert_eq!(first_limits(&registry(0.0, 8), 8, now).snapshot().concurrency, 8);
        let one = first_limits(&pushed_back(Duration::ZERO), 1, now);
        assert_eq!(one.snapshot().concurrency, 1, "never below one slot");
        let ahead =
            first_limits(&pushed_back(Duration::ZERO), 8, now - chrono::Duration::seconds(5));
        assert_eq!(ahead.snapshot().concurrency, 4, "stamped by a clock ahead of this one");
    }

    #[tokio::test]
    async fn slots_follow_the_concurrency() {
        let limits = Limits::new(2).of(&registry(0.0, 2));
        let a = limits.slot().await;
        let _b = limits.slot().await;
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.slot().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let _c = waiting.await.expect("slot after a release");
        assert_eq!(limits.snapshot().in_flight, 2);
    }
}
