//! The leader's cleanup loop: runs the limited-capacity selection on
//! every tick and whenever a cleanup ends (to refill its slot at once).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_common::Shutdown;
use regsweep_policy::Cadence;
use tokio::sync::Notify;

use crate::store::Fence;
use crate::store::catalog::{CatalogStore, SelectionConfig};

/// What the leader needs to run the selection.
#[derive(Clone)]
pub struct CleanupLoop {
    pub catalog: Arc<dyn CatalogStore>,
    pub selection: SelectionConfig,
    pub tick: Duration,
    /// Notified when a cleanup job ends (on any replica).
    pub wake: Arc<Notify>,
}

/// The run after a completed one, for the store.
pub fn advance(cadence: &str, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Cadence::parse(cadence).ok()?.advance(due, now)
}

impl CleanupLoop {
    /// Selects cleanups each tick until `stop`, under `fence`.
    pub async fn run(self, stop: Shutdown, fence: Fence) {
        loop {
            let selected = self.catalog.select_cleanups(&self.selection, advance, fence);
            let again = match selected.await {
                Ok(s) => {
                    if !s.ended.is_empty() {
                        tracing::debug!(repositories = s.ended.len(), "ended cleanups closed");
                    }
                    if s.stale > 0 {
                        tracing::warn!(repositories = s.stale, "stale cleanups marked unfinished");
                    }
                    if !s.started.is_empty() || s.armed > 0 || !s.advanced.is_empty() {
                        tracing::info!(
                            started = s.started.len(),
                            running = s.running,
                            capacity = self.selection.capacity,
                            armed = s.armed,
                            advanced = ?s.advanced,
                            "cleanup selection"
                        );
                    }
                    s.arming_incomplete
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cleanup selection failed");
                    false
                }
            };
            if again {
                // A due policy still has repositories to mark: go on at
                // once, but let shutdown in.
                if stop.is_triggered() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.tick) => {}
                () = self.wake.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
