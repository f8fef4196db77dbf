//! What job tasks hand to the connection, in order: starts, ends and log
//! lines.
//!
//! Bounded by log lines. A worker cut off from its scheduler keeps running
//! its attempts, and nothing reads the outbox until a stream is open again:
//! unbounded, a chatty job would grow the worker's memory for as long as
//! the outage lasts. Starts and ends are always kept (at most two per
//! attempt, and attempts are bounded by capacity; an end is the result
//! the scheduler must not lose). Past the line limit the oldest line goes,
//! and its attempt gets one line saying how many of its lines went, sent
//! ahead of its next lines and always before its end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use regsweep_proto::v1;
use tokio::sync::Notify;

use crate::job::{AttemptKey, Outgoing};

/// Log lines a worker keeps for its scheduler by default.
pub const DEFAULT_MAX_LINES: usize = 10_000;

/// Creates an outbox keeping at most `max_lines` log lines (at least one).
pub fn outbox(max_lines: usize) -> (OutboxSender, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
        max_lines: max_lines.max(1),
    });
    (OutboxSender { shared: shared.clone() }, OutboxReceiver { shared })
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
    max_lines: usize,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every
        // change is one push or remove), so a poisoned lock is still used.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    lines: usize,
    /// Lines dropped per attempt since the last take, with the time of
    /// the newest one.
    dropped: BTreeMap<AttemptKey, Dropped>,
}

struct Dropped {
    count: u64,
    last: Option<regsweep_proto::pbjson_types::Timestamp>,
}

impl Queue {
    fn push(&mut self, item: Outgoing, max_lines: usize) {
        if matches!(item, Outgoing::Log { .. }) {
            if self.lines >= max_lines {
                self.drop_oldest_line();
            }
            self.lines += 1;
        }
        self.items.push_back(item);
    }

    /// Removes the oldest log line. Only starts and ends can stand before
    /// it, and they are few.
    fn drop_oldest_line(&mut self) {
        let Some(at) = self.items.iter().position(|i| matches!(i, Outgoing::Log { .. })) else {
            return;
        };
        if let Some(Outgoing::Log { key, line }) = self.items.remove(at) {
            self.lines -= 1;
            let dropped = self.dropped.entry(key).or_insert(Dropped { count: 0, last: None });
            dropped.count += 1;
            dropped.last = line.time;
        }
    }

    /// Takes up to `limit` items into `buf`: first one line per attempt
    /// that lost lines, then the queue in order.
    fn take(&mut self, buf: &mut Vec<Outgoing>, limit: usize, max_lines: usize) -> usize {
        let before = buf.len();
        for (key, dropped) in std::mem::take(&mut self.dropped) {
            let text = format!(
                "{} earlier log lines dropped: the scheduler was unreachable and a worker keeps \
                 at most {max_lines} lines for it",
                dropped.count
            );
            let line = v1::JobLogLine { attempt: key.1, time: dropped.last, text };
            buf.push(Outgoing::Log { key, line });
        }
        while buf.len() - before < limit {
            let Some(item) = self.items.pop_front() else { break };
            if matches!(item, Outgoing::Log { .. }) {
                self.lines -= 1;
            }
            buf.push(item);
        }
        buf.len() - before
    }
}

/// The job tasks' end: never blocks, never fails.
#[derive(Clone)]
pub struct OutboxSender {
    shared: Arc<Shared>,
}

impl OutboxSender {
    pub fn send(&self, item: Outgoing) {
        self.shared.queue().push(item, self.shared.max_lines);
        self.shared.ready.notify_one();
    }
}

/// The connection's end.
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl OutboxReceiver {
    /// Waits for at least one item, then moves up to `limit` into `buf`
    /// (dropped-line notices may add one per attempt beyond it). Cancel
    /// safe: items are only taken once the wait is over.
    pub async fn recv_many(&mut self, buf: &mut Vec<Outgoing>, limit: usize) -> usize {
        loop {
            let taken = self.shared.queue().take(buf, limit.max(1), self.shared.max_lines);
            if taken > 0 {
                return taken;
            }
            // A send between the take and here leaves a permit behind.
            self.shared.ready.notified().await;
        }
    }

    pub fn is_empty(&self) -> bool {
        let queue = self.shared.queue();
        queue.items.is_empty() && queue.dropped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: AttemptKey, text: &str) -> Outgoing {
        Outgoing::Log {
            key,
            line: v1::JobLogLine { attempt: key.1, time: None, text: text.into() },
        }
    }

    fn end(key: AttemptKey) -> Outgoing {
        let update = v1::JobUpdate { job_id: key.0, attempt: key.1, ..Default::default() };
        Outgoing::Finished { key, update }
    }

    fn texts(items: &[Outgoing]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Outgoing::Log { key, line } => format!("{}:{}", key.0, line.text),
                Outgoing::Started(key) => format!("{}:started", key.0),
                Outgoing::Finished { key, .. } => format!("{}:end", key.0),
            })
            .collect()
    }

    #[tokio::test]
    async fn past_the_limit_the_oldest_lines_go_and_say_so_but_ends_and_starts_stay() {
        let (tx, mut rx) = outbox(3);
        tx.send(Outgoing::Started((1, 1)));
        for n in 0..5 {
            tx.send(line((1, 1), &format!("a{n}")));
        }
        tx.send(line((2, 1), "b0"));
        tx.send(end((1, 1)));
        let mut buf = Vec::new();
        let n = rx.recv_many(&mut buf, 100).await;
        assert_eq!(n, buf.len());
        let texts = texts(&buf);
        assert!(texts[0].starts_with("1:3 earlier log lines dropped"), "{texts:?}");
        assert_eq!(&texts[1..], ["1:started", "1:a3", "1:a4", "2:b0", "1:end"]);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn a_notice_goes_once_and_counts_start_again() {
        let (tx, mut rx) = outbox(1);
        tx.send(line((1, 1), "a0"));
        tx.send(line((1, 1), "a1"));
        let mut buf = Vec::new();
        rx.recv_many(&mut buf, 100).await;
        assert_eq!(buf.len(), 2);
        tx.send(line((1, 1), "a2"));
        buf.clear();
        rx.recv_many(&mut buf, 100).await;
        assert_eq!(texts(&buf), ["1:a2"]);
    }

    #[tokio::test]
    async fn takes_at_most_the_limit_and_keeps_the_rest_in_order() {
        let (tx, mut rx) = outbox(100);
        for n in 0..5 {
            tx.send(line((1, 1), &format!("a{n}")));
        }
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 2).await, 2);
        assert_eq!(rx.recv_many(&mut buf, 10).await, 3);
        assert_eq!(texts(&buf), ["1:a0", "1:a1", "1:a2", "1:a3", "1:a4"]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send() {
        let (tx, mut rx) = outbox(10);
        let waiter = tokio::spawn(async move {
            let mut buf = Vec::new();
            rx.recv_many(&mut buf, 10).await;
            texts(&buf)
        });
        tokio::task::yield_now().await;
        tx.send(end((7, 2)));
        assert_eq!(waiter.await.expect("receiver"), ["7:end"]);
    }
}
