//! Critical tasks, watched. A scheduler whose dispatcher panicked would go
//! on answering health checks SERVING and never assign a job again; a
//! scrubber whose runner died would never delete again. Every task a
//! process cannot work without is spawned here: the first to end when it
//! was not asked to (a panic, or a return) is logged with its cause and
//! shuts the process down, so health turns NOT_SERVING as the server
//! drains, and the service's `run` returns [`TaskFailure`]: the process
//! exits non-zero and its orchestrator restarts it.
//!
//! A test hook makes one named task fail on demand: with
//! `REGSWEEP_TEST_HOOK_FAIL_TASK=<task>` set, SIGUSR1 makes that task
//! panic. Without the variable nothing listens for SIGUSR1.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;

use crate::Shutdown;

/// The environment variable naming the task the test hook fails.
pub const TEST_HOOK: &str = "REGSWEEP_TEST_HOOK_FAIL_TASK";

/// A critical task ended when it was not asked to.
#[derive(Clone, Debug, thiserror::Error)]
#[error("critical task {task} of the {service} {how}")]
pub struct TaskFailure {
    /// The service the task belongs to (several share a process in
    /// `regsweep dev`).
    pub service: &'static str,
    /// The task's name.
    pub task: &'static str,
    /// How it ended: `panicked: <message>`, or that it returned.
    pub how: String,
}

/// Spawns and watches the critical tasks of one process.
#[derive(Clone, Debug)]
pub struct Supervisor {
    /// The service whose tasks these are, named in every failure.
    service: &'static str,
    /// Triggered by the first failure: the whole process stops.
    shutdown: Shutdown,
    /// The failure the process reports, and whether it was a panic.
    failure: Arc<Mutex<Option<(bool, TaskFailure)>>>,
}

impl Supervisor {
    /// A supervisor of `service`'s tasks that stops the process through
    /// `shutdown`.
    pub fn new(service: &'static str, shutdown: Shutdown) -> Self {
        Self { service, shutdown, failure: Arc::default() }
    }

    /// Spawns `future` as the critical task `task`, which may end only
    /// once `until` fired; any other end is a failure. The handle resolves
    /// when the task ended (and its failure, if any, was recorded).
    pub fn spawn<F>(&self, task: &'static str, until: &Shutdown, future: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = tokio::spawn(armed(task, future));
        let (until, this) = (until.clone(), self.clone());
        tokio::spawn(async move {
            let (panicked, how) = match inner.await {
                Ok(()) if until.is_triggered() => return,
                Ok(()) => (false, "returned before it was asked to stop".to_string()),
                Err(e) if e.is_panic() => {
                    (true, format!("panicked: {}", panic_message(e.into_panic())))
                }
                Err(_) => (false, "was cancelled".to_string()),
            };
            this.fail(panicked, TaskFailure { service: this.service, task, how });
        })
    }

    /// The failure that stopped the process, if a task failed: the first
    /// panic, else the first failure.
    pub fn failure(&self) -> Option<TaskFailure> {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.as_ref().map(|(_, f)| f.clone())
    }

    /// Records `failure` and stops the process. A panic is the cause and
    /// replaces a plain return recorded before it: tasks fed by a task that
    /// panicked see their channels close and may return first, and the
    /// process should name the panic, not its consequence.
    fn fail(&self, panicked: bool, failure: TaskFailure) {
        tracing::error!(service = failure.service, task = failure.task, how = %failure.how,
            "critical task ended, shutting down");
        {
            let mut first = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            match &*first {
                Some((true, _)) => {}
                Some((false, _)) if !panicked => {}
                _ => *first = Some((panicked, failure)),
            }
        }
        self.shutdown.trigger();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

/// `future`, made to panic on SIGUSR1 when the test hook names `task`.
/// [`Supervisor::spawn`] arms every critical task; a service arms a
/// helper it watches itself with this.
pub async fn armed<F: Future<Output = ()>>(task: &'static str, future: F) {
    #[cfg(unix)]
    if std::env::var(TEST_HOOK).is_ok_and(|named| named == task) {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut told) = signal(SignalKind::user_defined1()) {
            tracing::warn!(
                task,
                hook = TEST_HOOK,
                "test hook armed: sigusr1 makes this task panic"
            );
            tokio::select! {
                () = future => {}
                _ = told.recv() => panic!("told to fail by the test hook"),
            }
            return;
        }
    }
    future.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_a_failure_that_stops_the_process() {
        let process = Shutdown::new();
        let supervisor = Supervisor::new("test", process.clone());
        let never = Shutdown::new();
        supervisor.spawn("doomed", &never, async { panic!("boom") }).await.expect("watched");
        let failure = supervisor.failure().expect("a failure");
        assert_eq!((failure.task, failure.how.as_str()), ("doomed", "panicked: boom"));
        assert!(process.is_triggered());
    }

    #[tokio::test]
    async fn a_panic_is_named_over_a_return_it_caused() {
        let process = Shutdown::new();
        let supervisor = Supervisor::new("test", process.clone());
        let never = Shutdown::new();
        supervisor.spawn("listener", &never, async {}).await.expect("watched");
        supervisor.spawn("dispatcher", &never, async { panic!("boom") }).await.expect("watched");
        supervisor.spawn("other", &never, async {}).await.expect("watched");
        let failure = supervisor.failure().expect("a failure");
        assert_eq!((failure.task, failure.how.as_str()), ("dispatcher", "panicked: boom"));
    }

    #[tokio::test]
    async fn returning_unasked_is_a_failure() {
        let process = Shutdown::new();
        let supervisor = Supervisor::new("test", process.clone());
        supervisor.spawn("quitter", &Shutdown::new(), async {}).await.expect("watched");
        assert_eq!(
            supervisor.failure().map(|f| f.how),
            Some("returned before it was asked to stop".to_string())
        );
        assert!(process.is_triggered());
    }

    #[tokio::test]
    async fn ending_when_asked_is_no_failure() {
        let process = Shutdown::new();
        let supervisor = Supervisor::new("test", process.clone());
        let stop = Shutdown::new();
        let waiting = stop.clone();
        let task = supervisor.spawn("loop", &stop, async move { waiting.cancelled().await });
        stop.trigger();
        task.await.expect("watched");
        assert!(supervisor.failure().is_none());
        assert!(!process.is_triggered());
    }

    #[tokio::test]
    async fn the_first_failure_is_kept() {
        let supervisor = Supervisor::new("test", Shutdown::new());
        let never = Shutdown::new();
        supervisor.spawn("first", &never, async { panic!("one") }).await.expect("watched");
        supervisor.spawn("second", &never, async { panic!("two") }).await.expect("watched");
        assert_eq!(supervisor.failure().map(|f| f.task), Some("first"));
    }
}
