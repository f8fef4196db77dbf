//! The shutdown signal shared by a service's tasks.
//!
//! A [`Shutdown`] is cancelled once, by the first SIGTERM or SIGINT (or by a
//! test). Every loop selects on [`Shutdown::cancelled`]; each service then
//! stops in an explicit order. A second signal exits the process at once,
//! for the operator whose graceful shutdown is taking too long.

use tokio_util::sync::CancellationToken;

/// Clonable handle on the process's shutdown signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal fired.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Fires the signal when the returned guard drops: on every way out of
    /// a scope, errors included.
    pub fn trigger_on_drop(&self) -> tokio_util::sync::DropGuard {
        self.token.clone().drop_guard()
    }

    /// A child signal: fires with this one, or alone when triggered itself.
    pub fn child(&self) -> Self {
        Self { token: self.token.child_token() }
    }

    /// A signal fired by the first SIGTERM or SIGINT. A second one exits the
    /// process at once with status 130.
    pub fn from_os_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, stopping gracefully");
            trigger.trigger();
            wait_for_signal().await;
            tracing::warn!("second shutdown signal received, exiting now");
            std::process::exit(130);
        });
        shutdown
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; only ctrl-c stops this process");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn child_fires_with_parent() {
        let parent = Shutdown::new();
        let child = parent.child();
        assert!(!child.is_triggered());
        parent.trigger();
        child.cancelled().await;
        assert!(child.is_triggered());
    }

    #[tokio::test]
    async fn child_alone_does_not_fire_parent() {
        let parent = Shutdown::new();
        let child = parent.child();
        child.trigger();
        assert!(!parent.is_triggered());
    }
}
