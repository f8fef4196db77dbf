//! `regsweep.v1.WorkerService`: each `Connect` stream is a session task.

use regsweep_proto::v1::{self, worker_service_server::WorkerService};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use crate::outbound::{self, Outbound};
use crate::session::{self, SessionContext};

/// Accepts worker streams.
#[derive(Clone)]
pub struct WorkerApi {
    ctx: SessionContext,
    sessions: TaskTracker,
    /// One permit per stream this replica may serve.
    streams: Arc<Semaphore>,
    max_streams: u32,
}

/// How long a refused worker is told to wait before it tries again.
const STREAMS_RETRY_AFTER: Duration = Duration::from_secs(5);

impl WorkerApi {
    /// Sessions run on `sessions`, so shutdown can wait for them; at most
    /// `max_streams` at once.
    pub fn new(ctx: SessionContext, sessions: TaskTracker, max_streams: u32) -> Self {
        let streams = Arc::new(Semaphore::new(max_streams as usize));
        Self { ctx, sessions, streams, max_streams }
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        request: Request<Streaming<v1::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        if self.ctx.shutdown.is_triggered() {
            return Err(Status::unavailable("scheduler shutting down"));
        }
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            tracing::warn!(max = self.max_streams, "refusing a worker stream: too many");
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "this scheduler serves {} worker streams already; retry later or another replica",
                    self.max_streams
                ),
                ErrorDetails::with_retry_info(Some(STREAMS_RETRY_AFTER)),
            ));
        };
        let (out, outbound) = outbound::channel(outbound::MAX_UNREAD);
        let session = session::run(self.ctx.clone(), request.into_inner(), out);
        self.sessions.spawn(async move {
            session.await;
            drop(permit);
        });
        Ok(Response::new(outbound))
    }
}
