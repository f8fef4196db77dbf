//! What a worker knows across reconnections: its identity, its capacity,
//! the attempts it runs, and what it could not send yet.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use regsweep_proto::v1;

use crate::job::{AttemptControl, AttemptKey};
use crate::lease::Lease;
use crate::outbox::{self, OutboxReceiver, OutboxSender};
use crate::services::Services;

/// Early cancels remembered (cancel before its assignment arrived).
const MAX_EARLY_CANCELS: usize = 10_000;

/// One attempt this worker runs. It stays here until its final update is
/// handed to a live stream, so a reconnection still reports it; then that
/// update waits in `unrecorded` until the scheduler says it is written.
pub struct Attempt {
    pub kind: String,
    pub control: Arc<AttemptControl>,
    pub next_log_seq: u32,
}

pub struct WorkerState {
    pub name: String,
    pub capacity: BTreeMap<String, u32>,
    pub running: HashMap<AttemptKey, Attempt>,
    /// The id of the last Welcome, sent as `resume_worker_id`.
    pub worker_id: Option<String>,
    /// Updates and logs taken from the outbox that no stream accepted.
    pub pending: VecDeque<v1::ConnectRequest>,
    /// Final updates handed to the current stream and not yet named by
    /// `EndsRecorded`, in the order they were sent: sent again, first, on
    /// the next stream if this one breaks (a stream's buffers, or a
    /// replica that dies before writing, lose them otherwise).
    unrecorded: Vec<v1::JobUpdate>,
    /// Whether the current stream's scheduler acknowledges ends.
    pub end_acks: bool,
    pub outbox_tx: OutboxSender,
    pub outbox_rx: OutboxReceiver,
    early_cancels: HashSet<AttemptKey>,
    early_order: VecDeque<AttemptKey>,
    pub drain: Drain,
    /// Generation of the last `SetCapacity` applied in the current stream
    /// (0 at every Welcome); sent with every credit.
    pub capacity_generation: u64,
    /// What jobs reach besides the stream; shared by every attempt.
    pub services: Arc<Services>,
    /// The lease heartbeat acks keep on every attempt.
    pub lease: Lease,
}

impl WorkerState {
    pub fn new(
        name: String,
        capacity: BTreeMap<String, u32>,
        services: Arc<Services>,
        max_log_lines: usize,
    ) -> Self {
        let (outbox_tx, outbox_rx) = outbox::outbox(max_log_lines);
        Self {
            services,
            name,
            capacity,
            running: HashMap::new(),
            worker_id: None,
            pending: VecDeque::new(),
            unrecorded: Vec::new(),
            end_acks: false,
            outbox_tx,
            outbox_rx,
            early_cancels: HashSet::new(),
            early_order: VecDeque::new(),
            drain: Drain::default(),
            capacity_generation: 0,
            lease: Lease::new(),
        }
    }

    pub fn running_of(&self, kind: &str) -> u32 {
        let n = self.running.values().filter(|a| a.kind == kind).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Free slots of `kind` (0 while draining).
    pub fn free(&self, kind: &str) -> u32 {
        if self.drain.active {
            return 0;
        }
        self.capacity.get(kind).copied().unwrap_or(0).saturating_sub(self.running_of(kind))
    }

    /// A credit for `n` slots of `kind` under the current capacity.
    pub fn credit(&self, kind: String, n: u32) -> v1::connect_request::Message {
        v1::connect_request::Message::Credit(v1::Credit {
            kind,
            n,
            capacity_generation: self.capacity_generation,
        })
    }

    pub fn running_list(&self) -> Vec<v1::RunningJob> {
        self.running
            .iter()
            .map(|((job_id, attempt), a)| v1::RunningJob {
                job_id: *job_id,
                attempt: *attempt,
                progress: a.control.progress(),
            })
            .collect()
    }

    /// The final update of `key` was handed to the stream: the attempt is
    /// over here (its slot is free), its end kept until recorded.
    pub fn end_sent(&mut self, update: v1::JobUpdate) -> Option<Attempt> {
        let ended = self.running.remove(&(update.job_id, update.attempt));
        if self.end_acks {
            self.unrecorded.push(update);
        }
        ended
    }

    /// The scheduler wrote these ends.
    pub fn ends_recorded(&mut self, recorded: &[v1::JobAttempt]) {
        let recorded: HashSet<AttemptKey> =
            recorded.iter().map(|a| (a.job_id, a.attempt)).collect();
        self.unrecorded.retain(|u| !recorded.contains(&(u.job_id, u.attempt)));
    }

    /// A new stream is opening: the ends the last one did not see
    /// recorded go first, before what it could not send at all.
    pub fn requeue_unrecorded(&mut self) {
        for update in self.unrecorded.drain(..).rev() {
            let message = v1::connect_request::Message::JobUpdate(update);
            self.pending.push_front(v1::ConnectRequest { message: Some(message) });
        }
    }

    /// Attempts over here whose final update waits in `pending`.
    fn ending(&self) -> Vec<v1::JobAttempt> {
        self.pending
            .iter()
            .filter_map(|request| match &request.message {
                Some(v1::connect_request::Message::JobUpdate(u))
                    if u.status != i32::from(v1::JobStatus::Running)
                        && !self.running.contains_key(&(u.job_id, u.attempt)) =>
                {
                    Some(v1::JobAttempt { job_id: u.job_id, attempt: u.attempt })
                }
                _ => None,
            })
            .collect()
    }

    pub fn hello(&self) -> v1::ConnectRequest {
        v1::ConnectRequest {
            message: Some(v1::connect_request::Message::Hello(v1::Hello {
                name: self.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                capacity: self.capacity.clone().into_iter().collect(),
                resume_worker_id: self.worker_id.clone().unwrap_or_default(),
                running: self.running_list(),
                heartbeat_acks: true,
                end_acks: true,
                ending: self.ending(),
            })),
        }
    }

    pub fn remember_early_cancel(&mut self, key: AttemptKey) {
        if self.early_cancels.insert(key) {
            self.early_order.push_back(key);
            if self.early_order.len() > MAX_EARLY_CANCELS
                && let Some(old) = self.early_order.pop_front()
            {
                self.early_cancels.remove(&old);
            }
        }
    }

    pub fn take_early_cancel(&mut self, key: AttemptKey) -> bool {
        self.early_cancels.remove(&key)
    }

    /// Gives every running attempt back: each ends `worker_shutdown`.
    pub fn give_back_all(&mut self) {
        for attempt in self.running.values() {
            crate::job::give_back(&attempt.control);
        }
    }

    /// Whether everything owed to the scheduler was delivered (and every
    /// end recorded, when it says so).
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.pending.is_empty() && self.unrecorded.is_empty()
    }
}

/// Graceful shutdown progress.
#[derive(Debug, Default)]
pub struct Drain {
    pub active: bool,
    /// When running attempts are given back.
    pub give_back_at: Option<Instant>,
    pub gave_back: bool,
    /// When the worker exits even with undelivered updates.
    pub give_up_at: Option<Instant>,
}

impl Drain {
    pub fn start(&mut self, grace: std::time::Duration) {
        if !self.active {
            let now = Instant::now();
            self.active = true;
            self.give_back_at = Some(now + grace);
            self.give_up_at = Some(now + grace + std::time::Duration::from_secs(15));
        }
    }

    /// Gives back running attempts once the grace period is over.
    pub fn check(state: &mut WorkerState) {
        if state.drain.active
            && !state.drain.gave_back
            && state.drain.give_back_at.is_some_and(|t| Instant::now() >= t)
        {
            state.drain.gave_back = true;
            if !state.running.is_empty() {
                tracing::info!(
                    running = state.running.len(),
                    "grace period over, giving jobs back"
                );
            }
            state.give_back_all();
        }
    }

    pub fn gave_up(&self) -> bool {
        self.give_up_at.is_some_and(|t| Instant::now() >= t)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn state() -> WorkerState {
        let services = Services::new(&["http://127.0.0.1:9".to_string()], &[]).expect("valid url");
        WorkerState::new(
            "w".into(),
            [("sleep".to_string(), 2)].into_iter().collect(),
            Arc::new(services),
            100,
        )
    }

    #[tokio::test]
    async fn free_slots_follow_running_and_drain() {
        let mut s = state();
        assert_eq!(s.free("sleep"), 2);
        s.running.insert(
            (1, 1),
            Attempt { kind: "sleep".into(), control: Arc::default(), next_log_seq: 0 },
        );
        assert_eq!(s.free("sleep"), 1);
        assert_eq!(s.free("false"), 0);
        s.drain.start(std::time::Duration::ZERO);
        assert_eq!(s.free("sleep"), 0);
        Drain::check(&mut s);
        assert!(s.running[&(1, 1)].control.cancel.is_cancelled());
        assert!(s.running[&(1, 1)].control.give_back.load(Ordering::SeqCst));
    }

    fn end(job_id: i64, status: v1::JobStatus) -> v1::JobUpdate {
        v1::JobUpdate { job_id, attempt: 1, status: status.into(), ..Default::default() }
    }

    /// Ends handed to a stream that broke before they were recorded go
    /// first on the next one, and its Hello says they follow; recorded
    /// ones are forgotten.
    #[tokio::test]
    async fn unrecorded_ends_are_sent_again_and_announced() {
        let mut s = state();
        s.end_acks = true;
        for job_id in [1, 2, 3] {
            let control = Arc::default();
            s.running
                .insert((job_id, 1), Attempt { kind: "sleep".into(), control, next_log_seq: 0 });
        }
        s.end_sent(end(1, v1::JobStatus::Done));
        s.end_sent(end(2, v1::JobStatus::Error));
        s.end_sent(end(3, v1::JobStatus::Done));
        assert!(s.running.is_empty(), "their slots are free at once");
        s.ends_recorded(&[v1::JobAttempt { job_id: 2, attempt: 1 }]);
        assert!(!s.is_idle(), "ends not recorded are owed");
        // The stream broke; a log chunk could not be sent at all.
        let chunk = v1::connect_request::Message::LogChunk(v1::LogChunk::default());
        s.pending.push_back(v1::ConnectRequest { message: Some(chunk) });
        s.requeue_unrecorded();
        let order: Vec<Option<i64>> = s
            .pending
            .iter()
            .map(|r| match &r.message {
                Some(v1::connect_request::Message::JobUpdate(u)) => Some(u.job_id),
                _ => None,
            })
            .collect();
        assert_eq!(order, [Some(1), Some(3), None]);
        let Some(v1::connect_request::Message::Hello(hello)) = s.hello().message else {
            panic!("hello");
        };
        let ending: Vec<i64> = hello.ending.iter().map(|a| a.job_id).collect();
        assert_eq!((ending, hello.running.len(), hello.end_acks), (vec![1, 3], 0, true));
    }

    /// A scheduler that does not acknowledge ends is not waited on.
    #[tokio::test]
    async fn without_end_acks_an_end_sent_is_done_with() {
        let mut s = state();
        s.end_sent(end(1, v1::JobStatus::Done));
        assert!(s.is_idle());
    }

    #[tokio::test]
    async fn early_cancels_are_bounded() {
        let mut s = state();
        for i in 0..(MAX_EARLY_CANCELS as i64 + 5) {
            s.remember_early_cancel((i, 1));
        }
        assert!(!s.take_early_cancel((0, 1)));
        assert!(s.take_early_cancel((MAX_EARLY_CANCELS as i64 + 4, 1)));
    }
}
