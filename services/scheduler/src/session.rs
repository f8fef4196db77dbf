//! One worker stream: `Hello` -> `Welcome`, then credits to the
//! dispatcher, writes to the writer, until the worker leaves or the
//! scheduler shuts down.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regsweep_common::Shutdown;
use regsweep_proto::duration_from_std;
use regsweep_proto::v1::{self, connect_request, connect_response::Message};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::acks::Vouching;
use crate::dispatch::{DispatchEvent, DispatchHandle, SessionTx};
use crate::error::ApiError;
use crate::protocol;
use crate::store::{HeartbeatWrite, JobStore, Registration, SessionRef};
use crate::writer::{PendingAck, WriteOp};

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
    /// How long heartbeat acks may vouch for a worker's attempts.
    pub vouching: Vouching,
    pub shutdown: Shutdown,
}

/// Runs a session to its end. Protocol errors and shutdown end the
/// response stream with a status; a worker that simply goes away ends it
/// quietly and may resume before its heartbeat expires.
pub async fn run(ctx: SessionContext, mut inbound: Streaming<v1::ConnectRequest>, out: SessionTx) {
    if let Err(status) = serve(&ctx, &mut inbound, &out).await {
        out.fail(status);
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
    let acks = Acks { heartbeats: hello.heartbeat_acks, ends: hello.end_acks };
    let hello = protocol::hello(hello).map_err(ApiError::from)?;
    let kinds: HashSet<String> = hello.capacity.keys().cloned().collect();
    let registration =
        ctx.store.register_worker(&hello, ctx.heartbeat_ttl).await.map_err(ApiError::from)?;
    let session = SessionRef { worker_id: registration.worker_id, epoch: registration.epoch };
    let span = tracing::info_span!("session", worker_id = %session.worker_id, epoch = session.epoch, name = %hello.name);
    let ending = hello.ending.len();
    let connected = Connected { session, kinds, registration, acks, ending };
    connected.serve(ctx, inbound, out).instrument(span).await
}

struct Connected {
    session: SessionRef,
    kinds: HashSet<String>,
    registration: Registration,
    acks: Acks,
    /// Attempts whose end the worker sends again first (`Hello.ending`).
    ending: usize,
}

/// What the worker asked to have acknowledged.
#[derive(Clone, Copy)]
struct Acks {
    /// Heartbeats: the worker fences itself on them.
    heartbeats: bool,
    /// Recorded ends of attempts: the worker keeps each until then.
    ends: bool,
}

impl Connected {
    async fn serve(
        self,
        ctx: &SessionContext,
        inbound: &mut Streaming<v1::ConnectRequest>,
        out: &SessionTx,
    ) -> Result<(), Status> {
        let Self { session, kinds, registration, acks, ending } = self;
        tracing::info!(
            resumed = registration.resumed,
            stale = registration.stale.len(),
            lost = registration.lost,
            ending,
            "worker connected"
        );
        out.send(Message::Welcome(v1::Welcome {
            worker_id: session.worker_id.to_string(),
            session_epoch: u64::try_from(session.epoch).unwrap_or_default(),
            heartbeat_interval: Some(duration_from_std(ctx.heartbeat_interval)),
            heartbeat_ttl: Some(duration_from_std(ctx.heartbeat_ttl)),
            // The registration wrote a heartbeat.
            ack_valid_for: acks.heartbeats.then(|| duration_from_std(ctx.vouching.written())),
            end_acks: acks.ends,
        }));
        for run in registration.stale {
            out.send(Message::Cancel(v1::Cancel {
                job_id: run.job_id,
                attempt: run.attempt,
                reason: run.reason.to_string(),
            }));
        }
        ctx.dispatch.send(DispatchEvent::Joined { session, out: out.clone() }).await;
        let _connected = crate::gauges::Connected::new();
        if !registration.capacity_override.is_empty() {
            ctx.dispatch
                .send(DispatchEvent::SetCapacity {
                    session,
                    capacity: registration.capacity_override.clone(),
                })
                .await;
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
            let stream = Stream { session, kinds: &kinds, acks, out };
            if let Err(status) = handle(ctx, &stream, &mut draining, message).await {
                break Err(status);
            }
        };
        ctx.dispatch.send(DispatchEvent::Left { session }).await;
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

/// What a message is handled with.
struct Stream<'a> {
    session: SessionRef,
    kinds: &'a HashSet<String>,
    acks: Acks,
    out: &'a SessionTx,
}

async fn handle(
    ctx: &SessionContext,
    stream: &Stream<'_>,
    draining: &mut bool,
    message: connect_request::Message,
) -> Result<(), Status> {
    use connect_request::Message as M;
    let Stream { session, kinds, out, acks } = *stream;
    let write = |op| async { ctx.writer.send(op).await.map_err(|_| shutting_down()) };
    match message {
        M::Hello(_) => return Err(Status::invalid_argument("hello may only be sent once")),
        M::Heartbeat(heartbeat) => return self::heartbeat(ctx, stream, heartbeat).await,
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
                ctx.dispatch
                    .send(DispatchEvent::Credit {
                        session,
                        kind: credit.kind,
                        n: credit.n,
                        generation: credit.capacity_generation,
                    })
                    .await;
            }
        }
        M::JobUpdate(update) => {
            let update = protocol::update(session.worker_id, update).map_err(ApiError::from)?;
            let ack_end = acks.ends && update.status != v1::JobStatus::Running;
            write(WriteOp::Update(update, out.clone(), ack_end.then_some(session))).await?;
        }
        M::LogChunk(chunk) => {
            let log = protocol::log_chunk(session.worker_id, chunk).map_err(ApiError::from)?;
            write(WriteOp::Log(log)).await?;
        }
        M::Draining(_) => {
            if !*draining {
                *draining = true;
                ctx.dispatch.send(DispatchEvent::Draining { session }).await;
                ctx.store.set_draining(session).await.map_err(ApiError::from)?;
                tracing::info!("worker draining");
            }
        }
    }
    Ok(())
}

/// How long a heartbeat waits for room in the writer's queue before the
/// leader, with its database in trouble, vouches for it unwritten.
const HEARTBEAT_QUEUE_WAIT: Duration = Duration::from_millis(250);

/// Queues a heartbeat for the writer, which acknowledges it once written.
/// While the database is in trouble a replica holding the lease clock
/// acknowledges it at once for as long as no expiry can happen (`acks`).
/// When the writer's queue stays full while the trouble goes on (it is
/// stuck retrying), the write is dropped: reaping waits a TTL of steady
/// database, in which later heartbeats are written.
async fn heartbeat(
    ctx: &SessionContext,
    stream: &Stream<'_>,
    heartbeat: v1::Heartbeat,
) -> Result<(), Status> {
    if heartbeat.running.len() > protocol::MAX_RUNNING {
        return Err(Status::invalid_argument("heartbeat lists too many jobs"));
    }
    let running = heartbeat.running.iter().map(protocol::running_job).collect();
    let received = Instant::now();
    let ack =
        stream.acks.heartbeats.then_some(PendingAck { sequence: heartbeat.sequence, received });
    let op = WriteOp::Heartbeat(
        HeartbeatWrite { session: stream.session, running, end_acks: stream.acks.ends },
        stream.out.clone(),
        ack,
    );
    loop {
        match tokio::time::timeout(HEARTBEAT_QUEUE_WAIT, ctx.writer.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(op);
                vouch_unwritten(ctx, stream, ack.map(|a| a.sequence));
                return Ok(());
            }
            Ok(Err(_)) => return Err(shutting_down()),
            Err(_)
                if ctx.vouching.in_trouble()
                    && vouch_unwritten(ctx, stream, ack.map(|a| a.sequence)) =>
            {
                tracing::debug!("writer queue full, database in trouble: heartbeat not written");
                return Ok(());
            }
            Err(_) => {}
        }
    }
}

/// Acknowledges heartbeat `ack` before it is written, if this replica may
/// vouch for it now; says whether it did.
fn vouch_unwritten(ctx: &SessionContext, stream: &Stream<'_>, ack: Option<u64>) -> bool {
    let (Some(sequence), Some(valid_for)) = (ack, ctx.vouching.unwritten(Instant::now())) else {
        return false;
    };
    let valid_for = Some(duration_from_std(valid_for));
    stream.out.send(Message::HeartbeatAck(v1::HeartbeatAck { sequence, valid_for }));
    true
}

fn shutting_down() -> Status {
    Status::unavailable("scheduler shutting down; reconnect")
}
