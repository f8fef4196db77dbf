//! The dispatcher: one task per replica that owns the open credits of the
//! worker sessions connected to it and turns them into claims.
//!
//! Claims are batched across sessions: one statement claims up to every
//! open slot of a kind, filling the least-loaded worker first. While a
//! claim runs, credits and notifications queue up, so the next claim is as
//! large as the traffic needs (group commit, without a timer).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use regsweep_common::backoff::Backoff;
use regsweep_common::{Shutdown, trace};
use regsweep_proto::v1::{self, connect_response::Message};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::store::{ClaimSlot, JobRecord, JobStore, SessionRef, StoreEvent};

pub use crate::outbound::SessionTx;

/// What sessions tell the dispatcher.
#[derive(Debug)]
pub enum DispatchEvent {
    Joined {
        session: SessionRef,
        out: SessionTx,
    },
    Credit {
        session: SessionRef,
        kind: String,
        n: u32,
        generation: u64,
    },
    /// Apply an operator's capacity (on join, for a worker id that has one).
    SetCapacity {
        session: SessionRef,
        capacity: HashMap<String, u32>,
    },
    Draining {
        session: SessionRef,
    },
    Left {
        session: SessionRef,
    },
}

/// Starts a new capacity generation: open credits of the changed kinds are
/// dropped, and the worker grants again what is free under the new
/// capacity. Credits in flight from before are recognised by their older
/// generation and ignored, so a lowered capacity is never exceeded.
fn set_capacity(state: &mut SessionState, capacity: HashMap<String, u32>) {
    state.generation += 1;
    for kind in capacity.keys() {
        state.credits.remove(kind);
    }
    state
        .out
        .send(Message::SetCapacity(v1::SetCapacity { capacity, generation: state.generation }));
}

/// Events queued for the dispatcher before sessions wait for room: a
/// dispatcher slow to claim (its database slow) then slows the streams
/// that send it credits, instead of queueing without limit.
const MAX_EVENTS: usize = 4096;

/// How long a dispatcher tries to read what a failed claim took, blocked
/// (nothing can be claimed while the database does not answer anyway).
const UNHEARD_CLAIM_READ: Duration = Duration::from_secs(5);

/// Clonable handle sessions use to reach the dispatcher.
#[derive(Clone, Debug)]
pub struct DispatchHandle {
    tx: mpsc::Sender<DispatchEvent>,
}

impl DispatchHandle {
    pub async fn send(&self, event: DispatchEvent) {
        // Only fails once the dispatcher stopped, at shutdown.
        let _ = self.tx.send(event).await;
    }
}

struct SessionState {
    epoch: i64,
    out: SessionTx,
    credits: HashMap<String, u32>,
    draining: bool,
    /// Generation of the last `SetCapacity` sent; credits of older ones
    /// are ignored.
    generation: u64,
}

pub struct Dispatcher {
    store: Arc<dyn JobStore>,
    events: mpsc::Receiver<DispatchEvent>,
    store_events: mpsc::Receiver<StoreEvent>,
    sessions: HashMap<Uuid, SessionState>,
    /// Kinds that may have due jobs.
    dirty: BTreeSet<String>,
    /// Kind claimed last, for round-robin between kinds.
    last_kind: Option<String>,
    poll_interval: Duration,
    max_batch: u32,
    /// Wakes the leader's cleanup selection to refill a freed slot.
    cleanup_ended: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn JobStore>,
        store_events: mpsc::Receiver<StoreEvent>,
        poll_interval: Duration,
        max_batch: u32,
        cleanup_ended: Arc<Notify>,
    ) -> (DispatchHandle, Self) {
        let (tx, events) = mpsc::channel(MAX_EVENTS);
        let dispatcher = Self {
            store,
            events,
            store_events,
            sessions: HashMap::new(),
            dirty: BTreeSet::new(),
            last_kind: None,
            poll_interval,
            max_batch,
            cleanup_ended,
        };
        (DispatchHandle { tx }, dispatcher)
    }

    pub async fn run(mut self, shutdown: Shutdown) {
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.apply(event);
            }
            while let Ok(event) = self.store_events.try_recv() {
                self.apply_store(event);
            }
            if let Some(kind) = self.next_kind() {
                tokio::select! {
                    () = self.claim(&kind) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.apply(event),
                    None => break,
                },
                Some(event) = self.store_events.recv() => self.apply_store(event),
                _ = poll.tick() => self.mark_all_dirty(),
                () = shutdown.cancelled() => break,
            }
        }
        tracing::debug!("dispatcher stopped");
    }

    fn apply(&mut self, event: DispatchEvent) {
        match event {
            DispatchEvent::Joined { session, out } => {
                self.sessions.insert(
                    session.worker_id,
                    SessionState {
                        epoch: session.epoch,
                        out,
                        credits: HashMap::new(),
                        draining: false,
                        generation: 0,
                    },
                );
            }
            DispatchEvent::SetCapacity { session, capacity } => {
                if let Some(state) = self.current(session) {
                    set_capacity(state, capacity);
                }
            }
            DispatchEvent::Credit { session, kind, n, generation } => {
                if let Some(state) = self.current(session) {
                    if state.draining || generation != state.generation {
                        return;
                    }
                    let credits = state.credits.entry(kind.clone()).or_default();
                    *credits = credits.saturating_add(n);
                    self.dirty.insert(kind);
                }
            }
            DispatchEvent::Draining { session } => {
                if let Some(state) = self.current(session) {
                    state.draining = true;
                    state.credits.clear();
                }
            }
            DispatchEvent::Left { session } => {
                if self.current(session).is_some() {
                    self.sessions.remove(&session.worker_id);
                }
            }
        }
    }

    fn apply_store(&mut self, event: StoreEvent) {
        match event {
            StoreEvent::JobsAvailable(kind) => {
                self.dirty.insert(kind);
            }
            StoreEvent::Resync => {
                self.mark_all_dirty();
                self.cleanup_ended.notify_one();
            }
            StoreEvent::CleanupEnded => self.cleanup_ended.notify_one(),
            StoreEvent::CancelRequested { worker_id, job_id, attempt, reason } => {
                if let Some(state) = self.sessions.get(&worker_id) {
                    state.out.send(Message::Cancel(v1::Cancel { job_id, attempt, reason }));
                }
            }
            StoreEvent::CapacityChanged { worker_id, capacity } => {
                if let Some(state) = self.sessions.get_mut(&worker_id) {
                    tracing::info!(%worker_id, ?capacity, "applying capacity");
                    set_capacity(state, capacity);
                }
            }
        }
    }

    fn current(&mut self, session: SessionRef) -> Option<&mut SessionState> {
        self.sessions.get_mut(&session.worker_id).filter(|s| s.epoch == session.epoch)
    }

    fn mark_all_dirty(&mut self) {
        for state in self.sessions.values() {
            for (kind, n) in &state.credits {
                if *n > 0 {
                    self.dirty.insert(kind.clone());
                }
            }
        }
    }

    /// The next dirty kind with open credits, after the last one claimed.
    fn next_kind(&mut self) -> Option<String> {
        let open: BTreeSet<&String> = self
            .sessions
            .values()
            .flat_map(|s| s.credits.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k))
            .collect();
        self.dirty.retain(|kind| open.contains(kind));
        let after = self.last_kind.clone().unwrap_or_default();
        let next = self
            .dirty
            .range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded))
            .next()
            .or_else(|| self.dirty.iter().next())
            .cloned();
        self.last_kind.clone_from(&next);
        next
    }

    /// Reserves up to `max_batch` open slots of `kind`, least-loaded worker
    /// first, claims that many jobs, hands them out and returns unused
    /// slots.
    async fn claim(&mut self, kind: &str) {
        let slots = self.reserve(kind);
        if slots.is_empty() {
            self.dirty.remove(kind);
            return;
        }
        let started = std::time::Instant::now();
        let token = Uuid::new_v4();
        let jobs = match self.store.claim(kind, &slots, token).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(kind, error = %e, "claim failed");
                let unheard = self.unheard_claim(token, &slots).await;
                if unheard.is_empty() {
                    self.release(kind, &slots, &HashMap::new());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                tracing::info!(kind, claimed = unheard.len(), "a failed claim had committed");
                unheard
            }
        };
        tracing::debug!(kind, slots = slots.len(), claimed = jobs.len(), elapsed = ?started.elapsed(), "claimed");
        if jobs.len() < slots.len() {
            self.dirty.remove(kind);
        }
        let mut used: HashMap<Uuid, u32> = HashMap::new();
        for job in jobs {
            let Some(worker_id) = job.worker_id else { continue };
            *used.entry(worker_id).or_default() += 1;
            match self.sessions.get(&worker_id) {
                Some(state) => {
                    record_claim(&job);
                    state.out.send(Message::Assign(assign(&job)));
                }
                // The session left while the claim ran: the job is found
                // lost when the worker resumes, or taken back when it dies.
                None => {
                    tracing::warn!(job_id = job.id, %worker_id, "claimed for a session that left")
                }
            }
        }
        self.release(kind, &slots, &used);
    }

    /// What a failed claim took, if it committed after all (its answer
    /// lost with its connection): read by its token until the database
    /// answers, for at most `UNHEARD_CLAIM_READ`. Handed out at once, those
    /// jobs do not wait for their workers' heartbeat TTL to be given back.
    /// Read later, or never, they still are given back then: a claim found
    /// here is one still running under this token, so never one since
    /// given back or claimed again.
    async fn unheard_claim(&self, token: Uuid, slots: &[ClaimSlot]) -> Vec<JobRecord> {
        let workers: Vec<Uuid> = slots.iter().map(|s| s.session.worker_id).collect();
        let deadline = tokio::time::Instant::now() + UNHEARD_CLAIM_READ;
        let mut retries = Backoff::new(Duration::from_millis(50), Duration::from_secs(1)).retries();
        loop {
            // The read waits for the claim to end: bounded too, in case
            // the claim hangs in the database.
            let read = tokio::time::timeout_at(deadline, self.store.claimed(token, &workers));
            match read.await {
                Ok(Ok(jobs)) => return jobs,
                Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "reading what a failed claim took");
                    tokio::time::sleep(retries.next_delay()).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read what a failed claim took");
                    return Vec::new();
                }
                Err(_) => {
                    tracing::warn!("cannot read what a failed claim took: no answer in time");
                    return Vec::new();
                }
            }
        }
    }

    /// Takes slots one at a time from the worker with the most open slots
    /// of `kind` (the least loaded), so a batch spreads over workers.
    fn reserve(&mut self, kind: &str) -> Vec<ClaimSlot> {
        let mut heap: BinaryHeap<(u32, Uuid)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let credits = s.credits.get(kind).copied().unwrap_or(0);
                (credits > 0 && !s.draining).then_some((credits, *id))
            })
            .collect();
        let mut slots = Vec::new();
        while slots.len() < self.max_batch as usize {
            let Some((credits, id)) = heap.pop() else { break };
            let Some(state) = self.sessions.get_mut(&id) else { continue };
            slots.push(ClaimSlot { session: SessionRef { worker_id: id, epoch: state.epoch } });
            if let Some(c) = state.credits.get_mut(kind) {
                *c -= 1;
            }
            if credits > 1 {
                heap.push((credits - 1, id));
            }
        }
        slots
    }

    /// Gives back the reserved slots that got no job. (No event is applied
    /// while a claim runs, so no capacity change can have intervened.)
    fn release(&mut self, kind: &str, slots: &[ClaimSlot], used: &HashMap<Uuid, u32>) {
        let mut reserved: BTreeMap<Uuid, (i64, u32)> = BTreeMap::new();
        for slot in slots {
            reserved.entry(slot.session.worker_id).or_insert((slot.session.epoch, 0)).1 += 1;
        }
        for (worker_id, (epoch, n)) in reserved {
            let unused = n.saturating_sub(used.get(&worker_id).copied().unwrap_or(0));
            if unused == 0 {
                continue;
            }
            if let Some(state) = self.current(SessionRef { worker_id, epoch })
                && !state.draining
            {
                *state.credits.entry(kind.to_string()).or_default() += unused;
            }
        }
    }
}

/// The `Assign` of a claimed job, with a dispatch span that continues the
/// job's trace; the worker's run span is its child.
fn assign(job: &JobRecord) -> v1::Assign {
    let proto = Some(job.to_proto());
    // A span per claimed job only pays when it is exported.
    if !trace::exporting() {
        return v1::Assign { job: proto, trace_context: Default::default() };
    }
    let span = tracing::info_span!(
        parent: None,
        "dispatch",
        job_id = job.id,
        attempt = job.attempt,
        kind = %job.kind,
    );
    trace::set_parent_from(&span, job.trace_context.as_deref());
    v1::Assign { job: proto, trace_context: trace::carrier(&span) }
}

/// Counts a claim and how long the job waited for it once due.
fn record_claim(job: &JobRecord) {
    let waited = job.claimed_at.unwrap_or_else(chrono::Utc::now) - job.scheduled_at;
    metrics::histogram!("regsweep_claim_latency_seconds", "kind" => job.kind.clone())
        .record(waited.to_std().unwrap_or_default().as_secs_f64());
    metrics::counter!("regsweep_jobs_claimed_total", "kind" => job.kind.clone()).increment(1);
}
