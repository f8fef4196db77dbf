//! One stream to the scheduler: Hello/Welcome, then assignments in,
//! updates, logs, credits and heartbeats out, until the stream is lost or
//! the worker has drained.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regsweep_common::{Shutdown, grpc};
use regsweep_proto::duration_to_std;
use regsweep_proto::v1::{
    self, JobStatus, connect_request::Message as Out, connect_response::Message as In,
    worker_service_client::WorkerServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::job::{self, AttemptControl, Outgoing};
use crate::state::{Attempt, Drain, WorkerState};

const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Lines per log chunk (the scheduler accepts up to 1000).
const MAX_LINES_PER_CHUNK: usize = 500;
/// Outgoing items forwarded per round before credits are sent.
const MAX_FORWARD_BATCH: usize = 1024;

/// How a session ended.
#[derive(Debug)]
pub enum End {
    /// Drained: every attempt ended and was reported.
    Drained,
    /// The stream failed or closed; reconnect. `welcomed` says whether it
    /// got as far as `Welcome`.
    Lost { reason: String, welcomed: bool },
    /// The scheduler refused this worker (bad Hello): reconnecting would
    /// not help.
    Rejected(tonic::Status),
}

struct Stream {
    tx: mpsc::Sender<v1::ConnectRequest>,
}

impl Stream {
    /// Sends or, if the stream is gone, keeps the message for the next one.
    async fn send(&self, state: &mut WorkerState, message: Out) -> Result<(), ()> {
        let request = v1::ConnectRequest { message: Some(message) };
        match self.tx.send(request).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(request)) => {
                if matches!(request.message, Some(Out::JobUpdate(_) | Out::LogChunk(_))) {
                    state.pending.push_back(request);
                }
                Err(())
            }
        }
    }
}

fn lost(reason: impl Into<String>, welcomed: bool) -> End {
    End::Lost { reason: reason.into(), welcomed }
}

/// An open stream: where to send, what comes back, how often to beat.
struct Opened {
    stream: Stream,
    inbound: tonic::Streaming<v1::ConnectResponse>,
    interval: Duration,
}

/// Connects, says Hello and takes the Welcome (which also sets the lease
/// on this worker's attempts).
async fn open(state: &mut WorkerState, scheduler: &str) -> Result<Opened, End> {
    let channel = grpc::connect(scheduler).await.map_err(|e| lost(e.to_string(), false))?;
    let mut client = WorkerServiceClient::new(grpc::client(channel))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(1024);
    let stream = Stream { tx };
    state.requeue_unrecorded();
    let hello_sent = std::time::Instant::now();
    if stream.tx.send(state.hello()).await.is_err() {
        return Err(lost("request stream closed before hello", false));
    }
    let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Err(lost(format!("connect: {}", status.message()), false)),
    };
    let welcome = match inbound.message().await {
        Ok(Some(v1::ConnectResponse { message: Some(In::Welcome(w)) })) => w,
        Ok(Some(_)) => return Err(lost("expected welcome", false)),
        Ok(None) => return Err(lost("stream closed before welcome", false)),
        Err(status) if status.code() == Code::InvalidArgument => return Err(End::Rejected(status)),
        Err(status) => return Err(lost(status.message().to_string(), false)),
    };
    if state.worker_id.as_deref() != Some(welcome.worker_id.as_str()) {
        tracing::info!(worker_id = %welcome.worker_id, "registered with scheduler");
    }
    state.worker_id = Some(welcome.worker_id.clone());
    state.capacity_generation = 0;
    state.end_acks = welcome.end_acks;
    // A validity that does not convert vouches for nothing (not: no fence).
    let valid_for = welcome.ack_valid_for.as_ref().map(|d| duration_to_std(d).unwrap_or_default());
    state.lease.welcomed(hello_sent, valid_for);
    let interval = welcome
        .heartbeat_interval
        .as_ref()
        .and_then(duration_to_std)
        .unwrap_or(Duration::from_secs(5))
        .max(Duration::from_millis(100));
    Ok(Opened { stream, inbound, interval })
}

pub async fn session(
    state: &mut WorkerState,
    scheduler: &str,
    shutdown: &Shutdown,
    grace: Duration,
) -> End {
    let Opened { stream, mut inbound, interval } = match open(state, scheduler).await {
        Ok(opened) => opened,
        Err(end) => return end,
    };
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The deadline a heartbeat was sent early for, when the lease lapsed.
    let mut beat_early_for = None;

    if let Err(end) = resume(state, &stream).await {
        return end;
    }
    let mut batch = Vec::with_capacity(MAX_FORWARD_BATCH);
    loop {
        Drain::check(state);
        if state.drain.active && state.is_idle() {
            close(stream, inbound).await;
            return End::Drained;
        }
        let give_back_at = state.drain.give_back_at.filter(|_| !state.drain.gave_back);
        // Draining, a worker waits for the scheduler (ends recorded) only
        // so long: then it leaves with what is unreported.
        let give_up_at = state.drain.give_up_at;
        let lapse = state.lease.deadline().filter(|d| Some(*d) != beat_early_for);
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(v1::ConnectResponse { message: Some(message) })) => {
                    if handle(state, &stream, message).await.is_err() {
                        return lost("stream closed", true);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return lost("scheduler closed the stream", true),
                Err(status) => return lost(format!("{:?}: {}", status.code(), status.message()), true),
            },
            n = state.outbox_rx.recv_many(&mut batch, MAX_FORWARD_BATCH) => {
                if n > 0 && forward(state, &stream, std::mem::take(&mut batch)).await.is_err() {
                    return lost("stream closed", true);
                }
            }
            _ = heartbeat.tick() => {
                if send_heartbeat(state, &stream).await.is_err() {
                    return lost("stream closed", true);
                }
            }
            // Lapsed (its attempts were given back): ask for an ack now, so
            // assignments are not given back for long.
            () = sleep_until(lapse), if lapse.is_some() => {
                beat_early_for = lapse;
                if send_heartbeat(state, &stream).await.is_err() {
                    return lost("stream closed", true);
                }
            }
            () = shutdown.cancelled(), if !state.drain.active => {
                tracing::info!(running = state.running.len(), ?grace, "draining");
                state.drain.start(grace);
                if stream.send(state, Out::Draining(v1::Draining {})).await.is_err() {
                    return lost("stream closed", true);
                }
            }
            () = sleep_until(give_back_at), if give_back_at.is_some() => {}
            () = sleep_until(give_up_at), if give_up_at.is_some() => {
                close(stream, inbound).await;
                return lost("draining took too long", true);
            }
        }
    }
}

/// Picks up on a new stream where the last one left off: replays what was
/// not sent (ends before anything newer), says again that it drains, and
/// grants the free slots as credits.
async fn resume(state: &mut WorkerState, stream: &Stream) -> Result<(), End> {
    while let Some(request) = state.pending.pop_front() {
        let Some(message) = request.message else { continue };
        let ended = match &message {
            Out::JobUpdate(u) if u.status != i32::from(JobStatus::Running) => Some(u.clone()),
            _ => None,
        };
        if stream.send(state, message).await.is_err() {
            // Kept at the back of `pending`: first again, ahead of what
            // was not replayed yet.
            if let Some(unsent) = state.pending.pop_back() {
                state.pending.push_front(unsent);
            }
            return Err(lost("stream closed while replaying", true));
        }
        // Handed to the stream at last: the attempt is over (its slot is
        // granted with the credits below).
        if let Some(update) = ended {
            state.end_sent(update);
        }
    }
    if state.drain.active && stream.send(state, Out::Draining(v1::Draining {})).await.is_err() {
        return Err(lost("stream closed", true));
    }
    let kinds: Vec<String> = state.capacity.keys().cloned().collect();
    for kind in kinds {
        let n = state.free(&kind);
        if n > 0 && stream.send(state, state.credit(kind, n)).await.is_err() {
            return Err(lost("stream closed", true));
        }
    }
    Ok(())
}

/// Closes our half of the stream, which tells the scheduler we are gone
/// (what the stream holds still goes out first), and reads what it still
/// sends until it ends its half, for at most five seconds.
async fn close(stream: Stream, mut inbound: tonic::Streaming<v1::ConnectResponse>) {
    drop(stream);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
}

async fn send_heartbeat(state: &mut WorkerState, stream: &Stream) -> Result<(), ()> {
    let running = state.running_list();
    let sequence = state.lease.heartbeat_sent();
    stream.send(state, Out::Heartbeat(v1::Heartbeat { running, sequence })).await
}

async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Acts on one scheduler message.
async fn handle(state: &mut WorkerState, stream: &Stream, message: In) -> Result<(), ()> {
    match message {
        In::Welcome(_) => tracing::warn!("ignoring a second welcome"),
        In::Assign(v1::Assign { job: Some(job), trace_context }) => {
            let key = (job.id, job.attempt);
            let refuse = if state.take_early_cancel(key) {
                Some(JobStatus::Cancel)
            } else if state.drain.active {
                Some(JobStatus::WorkerShutdown)
            } else {
                None
            };
            if let Some(status) = refuse {
                let update = v1::JobUpdate {
                    job_id: job.id,
                    attempt: job.attempt,
                    status: status.into(),
                    ..Default::default()
                };
                stream.send(state, Out::JobUpdate(update.clone())).await?;
                state.end_sent(update);
                return Ok(());
            }
            tracing::debug!(job_id = job.id, attempt = job.attempt, kind = %job.kind, "assigned");
            let control = Arc::new(AttemptControl::default());
            state.running.insert(
                key,
                Attempt { kind: job.kind.clone(), control: control.clone(), next_log_seq: 0 },
            );
            let span = job::span(&job, &trace_context);
            let (outbox, services) = (state.outbox_tx.clone(), state.services.clone());
            job::spawn(job, span, control, outbox, services, state.lease.clone());
        }
        In::Assign(v1::Assign { job: None, .. }) => tracing::warn!("ignoring an empty assignment"),
        In::Cancel(cancel) => {
            let key = (cancel.job_id, cancel.attempt);
            match state.running.get(&key) {
                Some(attempt) => {
                    tracing::info!(job_id = cancel.job_id, attempt = cancel.attempt, reason = %cancel.reason, "cancelling");
                    attempt.control.cancel.cancel();
                }
                None => {
                    tracing::info!(job_id = cancel.job_id, attempt = cancel.attempt, reason = %cancel.reason, "cancel for an attempt not running here");
                    state.remember_early_cancel(key);
                }
            }
        }
        In::EndsRecorded(recorded) => state.ends_recorded(&recorded.attempts),
        In::HeartbeatAck(ack) => {
            let valid_for = ack.valid_for.as_ref().and_then(duration_to_std).unwrap_or_default();
            state.lease.acknowledged(ack.sequence, valid_for);
        }
        In::SetCapacity(set) => {
            // The scheduler dropped its open credits of these kinds: grant
            // again, in the new generation, what is free under the new
            // capacity. Running jobs keep running.
            state.capacity_generation = set.generation;
            let mut kinds: Vec<String> = Vec::new();
            for (kind, n) in set.capacity {
                if state.capacity.contains_key(&kind) {
                    state.capacity.insert(kind.clone(), n);
                    kinds.push(kind);
                }
            }
            tracing::info!(capacity = ?state.capacity, generation = set.generation, "capacity changed");
            for kind in kinds {
                let free = state.free(&kind);
                if free > 0 {
                    stream.send(state, state.credit(kind, free)).await?;
                }
            }
        }
    }
    Ok(())
}

/// Sends what job tasks produced: lines grouped into chunks per attempt
/// (always before that attempt's end), updates, then one credit per kind
/// for the slots that freed up. Once a send fails the rest of the batch is
/// still handed to the stream, so that every message lands in `pending`,
/// in order, for the next stream: an end taken from the outbox is never
/// dropped (its attempt would stay running here, and its job there).
async fn forward(state: &mut WorkerState, stream: &Stream, items: Vec<Outgoing>) -> Result<(), ()> {
    let mut lines: BTreeMap<job::AttemptKey, Vec<v1::JobLogLine>> = BTreeMap::new();
    let mut credits: BTreeMap<String, u32> = BTreeMap::new();
    // An attempt that starts and ends within one batch needs no `running`
    // update: its end sets the start time too.
    let finished: std::collections::HashSet<job::AttemptKey> = items
        .iter()
        .filter_map(|item| match item {
            Outgoing::Finished { key, .. } => Some(*key),
            _ => None,
        })
        .collect();
    let mut sent = Ok(());
    for item in items {
        match item {
            Outgoing::Log { key, line } => lines.entry(key).or_default().push(line),
            Outgoing::Started(key) if finished.contains(&key) => {}
            Outgoing::Started(key) => {
                let update = v1::JobUpdate {
                    job_id: key.0,
                    attempt: key.1,
                    status: JobStatus::Running.into(),
                    ..Default::default()
                };
                sent = sent.and(stream.send(state, Out::JobUpdate(update)).await);
            }
            Outgoing::Finished { key, update } => {
                if let Some(key_lines) = lines.remove(&key) {
                    sent = sent.and(send_lines(state, stream, key, key_lines).await);
                }
                // Not sent: it waits in `pending`, its attempt in `running`.
                if stream.send(state, Out::JobUpdate(update.clone())).await.is_err() {
                    sent = Err(());
                    continue;
                }
                tracing::debug!(job_id = key.0, attempt = key.1, "end of attempt sent");
                if let Some(attempt) = state.end_sent(update)
                    && state.free(&attempt.kind) > 0
                {
                    *credits.entry(attempt.kind).or_default() += 1;
                }
            }
        }
    }
    for (key, key_lines) in lines {
        sent = sent.and(send_lines(state, stream, key, key_lines).await);
    }
    sent?;
    for (kind, n) in credits {
        let n = n.min(state.free(&kind));
        if n > 0 {
            stream.send(state, state.credit(kind, n)).await?;
        }
    }
    Ok(())
}

/// Sends `lines` in chunks; every chunk is handed to the stream (and kept
/// in `pending` if it is gone).
async fn send_lines(
    state: &mut WorkerState,
    stream: &Stream,
    key: job::AttemptKey,
    lines: Vec<v1::JobLogLine>,
) -> Result<(), ()> {
    let mut sent = Ok(());
    for chunk in lines.chunks(MAX_LINES_PER_CHUNK) {
        let Some(attempt) = state.running.get_mut(&key) else { return Ok(()) };
        let seq = attempt.next_log_seq;
        attempt.next_log_seq += 1;
        let message = Out::LogChunk(v1::LogChunk {
            job_id: key.0,
            attempt: key.1,
            seq,
            lines: chunk.to_vec(),
        });
        sent = sent.and(stream.send(state, message).await);
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Services;

    fn state() -> WorkerState {
        let services = Services::new(&["http://127.0.0.1:9".to_string()], &[]).expect("valid url");
        let capacity = [("sleep".to_string(), 2)].into_iter().collect();
        WorkerState::new("w".into(), capacity, Arc::new(services), 100)
    }

    fn finished(job_id: i64) -> Outgoing {
        let update = v1::JobUpdate {
            job_id,
            attempt: 1,
            status: JobStatus::Done.into(),
            ..Default::default()
        };
        Outgoing::Finished { key: (job_id, 1), update }
    }

    /// A stream that breaks under a batch loses none of it: every end
    /// waits in `pending`, in order, and its attempt stays running here.
    #[tokio::test]
    async fn a_batch_forwarded_into_a_broken_stream_is_kept_whole() {
        let mut s = state();
        for job_id in [1, 2] {
            let attempt =
                Attempt { kind: "sleep".into(), control: Arc::default(), next_log_seq: 0 };
            s.running.insert((job_id, 1), attempt);
        }
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let line = v1::JobLogLine { text: "last words".into(), ..Default::default() };
        let items = vec![Outgoing::Log { key: (2, 1), line }, finished(1), finished(2)];
        assert!(forward(&mut s, &Stream { tx }, items).await.is_err());
        let kept: Vec<&str> = s
            .pending
            .iter()
            .map(|r| match &r.message {
                Some(Out::JobUpdate(u)) if u.job_id == 1 => "end 1",
                Some(Out::JobUpdate(u)) if u.job_id == 2 => "end 2",
                Some(Out::LogChunk(c)) if c.job_id == 2 => "log 2",
                _ => "other",
            })
            .collect();
        assert_eq!(kept, ["end 1", "log 2", "end 2"]);
        assert_eq!(s.running.len(), 2, "both still owed to the scheduler");
    }
}
