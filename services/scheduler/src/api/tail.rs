//! Following a job's log: stored lines first, then new ones as flushes on
//! this replica announce them (and by polling, for lines written through
//! other replicas), until the job is terminal and everything was sent, or
//! until this scheduler stops (UNAVAILABLE: follow again elsewhere).

use std::sync::Arc;
use std::time::Duration;

use regsweep_common::{Shutdown, paging};
use regsweep_proto::v1;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::error::ApiError;
use crate::store::{JobStore, LogCursor};

/// Lines per message.
const PAGE: u32 = 1000;
/// How often to look when nothing is announced (writes through another
/// replica are not announced here).
const POLL: Duration = Duration::from_millis(500);

pub struct Tail {
    pub store: Arc<dyn JobStore>,
    pub written: broadcast::Receiver<i64>,
    pub id: i64,
    pub attempt: Option<u32>,
    /// Where to start: after this position, or at the first line.
    pub cursor: Option<LogCursor>,
    /// What the position tokens it gives are bound to.
    pub fingerprint: String,
    pub shutdown: Shutdown,
    /// The caller's deadline: a follow otherwise lasts as long as the job.
    pub deadline: Option<tokio::time::Instant>,
}

impl Tail {
    pub async fn run(mut self, tx: mpsc::Sender<Result<v1::TailJobLogsResponse, Status>>) {
        let followed = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.follow(&tx))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("deadline exceeded"))),
            None => self.follow(&tx).await,
        };
        if let Err(status) = followed {
            let _ = tx.send(Err(status)).await;
        }
    }

    async fn follow(
        &mut self,
        tx: &mpsc::Sender<Result<v1::TailJobLogsResponse, Status>>,
    ) -> Result<(), Status> {
        let mut cursor = self.cursor;
        loop {
            // Read the status before the lines: lines written before the
            // job turned terminal are then surely in this read.
            let job = self.store.get_job(self.id).await.map_err(ApiError::from)?;
            let Some(job) = job else {
                return Err(Status::not_found(format!("job {} was purged", self.id)));
            };
            let (lines, next) = self
                .store
                .job_logs(self.id, self.attempt, cursor, PAGE)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| Status::not_found(format!("job {} was purged", self.id)))?;
            cursor = Some(next);
            let full = lines.len() == PAGE as usize;
            if !lines.is_empty() || job.status.is_terminal() {
                let message = v1::TailJobLogsResponse {
                    lines: lines.iter().map(|l| l.to_proto()).collect(),
                    status: job.status.into(),
                    next_page_token: paging::encode_token(&self.fingerprint, next.to_i64()),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
            if full {
                continue;
            }
            if job.status.is_terminal() {
                return Ok(());
            }
            self.wait().await;
            if tx.is_closed() {
                return Ok(());
            }
            if self.shutdown.is_triggered() {
                // Not the job's end: the follower goes on elsewhere, from
                // its last position.
                return Err(Status::unavailable("scheduler shutting down; follow again"));
            }
        }
    }

    /// Waits for a flush that touched this job, the poll period, or
    /// shutdown.
    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = self.shutdown.cancelled() => return,
                written = self.written.recv() => match written {
                    Ok(id) if id == self.id => return,
                    Ok(_) => {}
                    // Missed announcements may include ours: read again.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        deadline.as_mut().await;
                        return;
                    }
                },
            }
        }
    }
}
