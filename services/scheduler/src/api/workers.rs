//! `regsweep.v1.WorkerService`: each `Connect` stream is a session task.

use regsweep_proto::v1::{self, worker_service_server::WorkerService};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::session::{self, SessionContext};

/// Accepts worker streams.
#[derive(Clone)]
pub struct WorkerApi {
    ctx: SessionContext,
    sessions: TaskTracker,
}

impl WorkerApi {
    /// Sessions run on `sessions`, so shutdown can wait for them.
    pub fn new(ctx: SessionContext, sessions: TaskTracker) -> Self {
        Self { ctx, sessions }
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type ConnectStream = UnboundedReceiverStream<Result<v1::ConnectResponse, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        if self.ctx.shutdown.is_triggered() {
            return Err(Status::unavailable("scheduler shutting down"));
        }
        let (out, rx) = mpsc::unbounded_channel();
        self.sessions.spawn(session::run(self.ctx.clone(), request.into_inner(), out));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}
