//! The one retry backoff of every component: exponential, doubling from a
//! first step up to a ceiling, each delay jittered to between half of its
//! step and the whole step ("equal jitter"). A delay never exceeds the
//! ceiling an operator set, and callers that failed together spread out.
//!
//! Job retries use it too: the stores take the steps and each update's
//! jitter as parameters (`steps_secs`, `jitter`), so the formula is here
//! only.

use std::time::Duration;

/// Exponential backoff from `first` to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// `max` below `first` is taken as `first`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < first.as_nanos() { first } else { max };
        Self { first, max }
    }

    /// The step of retry `retry` (0 for the first): `first` doubled
    /// `retry` times, at most `max`.
    pub fn step(&self, retry: u32) -> Duration {
        self.first.saturating_mul(2u32.saturating_pow(retry.min(31))).min(self.max)
    }

    /// The delay before retry `retry`: its step, jittered.
    pub fn delay(&self, retry: u32) -> Duration {
        self.step(retry).mul_f64(jitter())
    }

    /// The steps of the first `n` retries, in seconds.
    pub fn steps_secs(&self, n: u32) -> Vec<f64> {
        (0..n).map(|retry| self.step(retry).as_secs_f64()).collect()
    }

    /// Successive delays, for a loop that retries until it succeeds.
    pub fn retries(self) -> Retries {
        Retries { backoff: self, retry: 0 }
    }
}

/// A jitter factor, between 0.5 (included) and 1 (excluded).
pub fn jitter() -> f64 {
    rand::random_range(0.5..1.0)
}

/// The delays of a run of failures; `reset` after a success.
#[derive(Clone, Debug)]
pub struct Retries {
    backoff: Backoff,
    retry: u32,
}

impl Retries {
    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.retry);
        self.retry = self.retry.saturating_add(1);
        delay
    }

    pub fn reset(&mut self) {
        self.retry = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn steps_double_up_to_the_ceiling() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let steps: Vec<u128> = (0..6).map(|r| b.step(r).as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.step(u32::MAX), 1000 * MS, "no overflow");
        assert_eq!(Backoff::new(Duration::from_secs(1), Duration::ZERO).step(3).as_secs(), 1);
        assert_eq!(b.steps_secs(3), [0.1, 0.2, 0.4]);
    }

    #[test]
    fn delays_lie_between_half_a_step_and_the_step() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        for retry in 0..8 {
            for _ in 0..200 {
                let (delay, step) = (b.delay(retry), b.step(retry));
                assert!(delay >= step / 2 && delay < step, "{delay:?} for {step:?}");
            }
        }
    }

    /// Each delay lies within its step's jitter window: at least half of
    /// it (so it grew), below all of it.
    #[test]
    fn retries_grow_and_reset() {
        let mut r = Backoff::new(100 * MS, 400 * MS).retries();
        for step in [100, 200, 400, 400] {
            let delay = r.next_delay();
            assert!(delay >= step * MS / 2 && delay < step * MS, "{delay:?} for {step} ms");
        }
        r.reset();
        assert!(r.next_delay() < 100 * MS);
    }
}
