//! One worker stream: `Hello` -> `Welcome`, then credits to the
//! dispatcher, writes to the writer, until the worker leaves or the
//! scheduler shuts down.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use regsweep_common::Shutdown;
use regsweep_proto::duration_from_std;
use regsweep_proto::v1::{self, connect_request, connect_response::Message};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::dispatch::{DispatchEvent, DispatchHandle, SessionTx, send};
use crate::error::ApiError;
use crate::protocol;
use crate::store::{HeartbeatWrite, JobStore, Registration, SessionRef};
use crate::writer::WriteOp;

/// A worker that connects must say `Hello` within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session needs; cheap to clone.
#[derive(Clone)]
pub struct SessionContext {
    pub store: Arc<dyn JobStore>,
    pub dispatch: DispatchHandle,
    pub writer: mpsc::Sender<WriteOp>,
    pub heartbeat_interval: Duration,
    pub heartbeat_ttl: Duration,
    pub shutdown: Shutdown,
}

/// Runs a session to its end. Protocol errors and shutdown end the
/// response stream with a status; a worker that simply goes away ends it
/// quietly and may resume before its heartbeat expires.
pub async fn run(ctx: SessionContext, mut inbound: Streaming<v1::ConnectRequest>, out: SessionTx) {
    if let Err(status) = serve(&ctx, &mut inbound, &out).await {
        let _ = out.send(Err(status));
    }
}

async fn serve(
    ctx: &SessionContext,
    inbound: &mut Streaming<v1::ConnectRequest>,
    out: &SessionTx,
) -> Result<(), Status> {
    let first = tokio::select! {
        first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message()) => first,
        () = ctx.shutdown.cancelled() => return Err(shutting_down()),
    };
    let hello = match first {
        Ok(Ok(Some(v1::ConnectRequest { message: Some(connect_request::Message::Hello(h)) }))) => h,
        Ok(Ok(None) | Err(_)) => return Ok(()),
        Ok(Ok(Some(_))) => return Err(Status::invalid_argument("the first message must be hello")),
        Err(_) => return Err(Status::deadline_exceeded("no hello within 10s")),
    };
    let hello = protocol::hello(hello).map_err(ApiError::from)?;
    let kinds: HashSet<String> = hello.capacity.keys().cloned().collect();
    let registration =
        ctx.store.register_worker(&hello, ctx.heartbeat_ttl).await.map_err(ApiError::from)?;
    let session = SessionRef { worker_id: registration.worker_id, epoch: registration.epoch };
    let span = tracing::info_span!("session", worker_id = %session.worker_id, epoch = session.epoch, name = %hello.name);
    let connected = Connected { session, kinds, registration };
    connected.serve(ctx, inbound, out).instrument(span).await
}

struct Connected {
    session: SessionRef,
    kinds: HashSet<String>,
    registration: Registration,
}

impl Connected {
    async fn serve(
        self,
        ctx: &SessionContext,
        inbound: &mut Streaming<v1::ConnectRequest>,
        out: &SessionTx,
    ) -> Result<(), Status> {
        let Self { session, kinds, registration } = self;
        tracing::info!(
            resumed = registration.resumed,
            stale = registration.stale.len(),
            lost = registration.lost,
            "worker connected"
        );
        send(
            out,
            Message::Welcome(v1::Welcome {
                worker_id: session.worker_id.to_string(),
                session_epoch: u64::try_from(session.epoch).unwrap_or_default(),
                heartbeat_interval: Some(duration_from_std(ctx.heartbeat_interval)),
                heartbeat_ttl: Some(duration_from_std(ctx.heartbeat_ttl)),
            }),
        );
        for run in registration.stale {
            send(
                out,
                Message::Cancel(v1::Cancel {
                    job_id: run.job_id,
                    attempt: run.attempt,
                    reason: run.reason,
                }),
            );
        }
        ctx.dispatch.send(DispatchEvent::Joined { session, out: out.clone() });
        let _connected = crate::gauges::Connected::new();
        if !registration.capacity_override.is_empty() {
            ctx.dispatch.send(DispatchEvent::SetCapacity {
                session,
                capacity: registration.capacity_override.clone(),
            });
        }

        let mut draining = false;
        let result = loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                () = ctx.shutdown.cancelled() => break Err(shutting_down()),
            };
            let message = match message {
                Ok(Some(v1::ConnectRequest { message: Some(m) })) => m,
                Ok(Some(v1::ConnectRequest { message: None })) => {
                    break Err(Status::invalid_argument("empty message"));
                }
                Ok(None) => break Ok(()),
                Err(status) => {
                    tracing::info!(code = ?status.code(), message = status.message(), "worker stream broke");
                    break Ok(());
                }
            };
            if let Err(status) = handle(ctx, session, &kinds, &mut draining, out, message).await {
                break Err(status);
            }
        };
        ctx.dispatch.send(DispatchEvent::Left { session });
        if draining {
            // Queued behind the worker's last updates, so they land first.
            let _ = ctx.writer.send(WriteOp::Offline(session)).await;
            tracing::info!("worker drained and left");
        } else {
            tracing::info!("worker disconnected");
        }
        result
    }
}

async fn handle(
    ctx: &SessionContext,
    session: SessionRef,
    kinds: &HashSet<String>,
    draining: &mut bool,
    out: &SessionTx,
    message: connect_request::Message,
) -> Result<(), Status> {
    use connect_request::Message as M;
    let write = |op| async { ctx.writer.send(op).await.map_err(|_| shutting_down()) };
    match message {
        M::Hello(_) => return Err(Status::invalid_argument("hello may only be sent once")),
        M::Heartbeat(heartbeat) => {
            if heartbeat.running.len() > protocol::MAX_RUNNING {
                return Err(Status::invalid_argument("heartbeat lists too many jobs"));
            }
            let running = heartbeat.running.iter().map(protocol::running_job).collect();
            write(WriteOp::Heartbeat(HeartbeatWrite { session, running }, out.clone())).await?;
        }
        M::Credit(credit) => {
            if !kinds.contains(&credit.kind) {
                return Err(Status::invalid_argument(format!(
                    "credit for kind {:?} that hello did not declare",
                    credit.kind
                )));
            }
            if credit.n > protocol::MAX_CAPACITY_PER_KIND {
                return Err(Status::invalid_argument("credit larger than any capacity"));
            }
            if !*draining {
                ctx.dispatch.send(DispatchEvent::Credit {
                    session,
                    kind: credit.kind,
                    n: credit.n,
                    generation: credit.capacity_generation,
                });
            }
        }
        M::JobUpdate(update) => {
            let update = protocol::update(session.worker_id, update).map_err(ApiError::from)?;
            write(WriteOp::Update(update, out.clone())).await?;
        }
        M::LogChunk(chunk) => {
            let log = protocol::log_chunk(session.worker_id, chunk).map_err(ApiError::from)?;
            write(WriteOp::Log(log)).await?;
        }
        M::Draining(_) => {
            if !*draining {
                *draining = true;
                ctx.dispatch.send(DispatchEvent::Draining { session });
                ctx.store.set_draining(session).await.map_err(ApiError::from)?;
                tracing::info!("worker draining");
            }
        }
    }
    Ok(())
}

fn shutting_down() -> Status {
    Status::unavailable("scheduler shutting down; reconnect")
}
