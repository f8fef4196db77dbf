//! A hook around every request a client sends, so that a process can hold
//! all its requests to one registry to a rate and learn from the
//! registry's answers (the scrubber's token bucket and AIMD concurrency).

use std::future::Future;
use std::pin::Pin;

/// Called before every request attempt (retries included) and with every
/// answer's status.
pub trait Gate: Send + Sync {
    /// Resolves when the request may be sent.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The status the registry answered (0 when no answer came).
    fn observe(&self, status: u16);
}
