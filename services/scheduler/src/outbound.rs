//! The response half of a worker stream as the worker sees it: every
//! message in order, but at most one `Cancel` per attempt, and a bounded
//! number unread: a worker that stops reading has its stream ended.
//!
//! A stream is reliable, so a second `Cancel` for the same attempt says nothing new;
//! yet the writer finds an attempt stale once per update or heartbeat
//! that names it, and a session whose queued messages land at once (after
//! a database outage, say) would otherwise send a round of cancels per
//! message. A new stream starts afresh: what the old one sent may be lost.

use std::collections::HashSet;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use regsweep_proto::v1::{self, connect_response::Message};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use crate::{kinds, protocol};

type Item = Result<v1::ConnectResponse, Status>;

/// Cancels a stream remembers at most.
const MAX_REMEMBERED: usize = 100_000;

/// Messages a stream holds unread. A worker that reads has far fewer
/// waiting: assignments are bounded by its credits (at most every kind's
/// largest capacity), cancels by what it runs (twice that, counting the
/// attempts it ends meanwhile), the rest are one per heartbeat or write.
pub const MAX_UNREAD: usize =
    2 * kinds::WORKER_KINDS.len() * protocol::MAX_CAPACITY_PER_KIND as usize + 1024;

/// A new worker stream: the sending half every task shares, and the
/// response stream tonic reads.
pub fn channel(max_unread: usize) -> (SessionTx, Outbound) {
    let (tx, rx) = mpsc::channel(max_unread.max(1));
    let overflow = CancellationToken::new();
    let outbound = Outbound {
        rx,
        cancelled: HashSet::new(),
        overflow: Box::pin(overflow.clone().cancelled_owned()),
        ended: false,
    };
    (SessionTx { tx, overflow }, outbound)
}

/// The sending half of a worker stream. Never waits: the dispatcher and
/// the writer serve every stream and must not stall on one. A stream full
/// of unread messages is ended instead (`RESOURCE_EXHAUSTED`); its worker
/// resumes on a new one, where what it missed is made good (assignments
/// it does not name in `Hello` are given back, ends it did not hear
/// recorded it sends again).
#[derive(Clone, Debug)]
pub struct SessionTx {
    tx: mpsc::Sender<Item>,
    overflow: CancellationToken,
}

impl SessionTx {
    /// Queues `message`; a closed stream is ignored (it is ending, and the
    /// store's fencing covers what it misses).
    pub fn send(&self, message: Message) {
        self.push(Ok(v1::ConnectResponse { message: Some(message) }));
    }

    /// Ends the stream with `status` once what is queued before it went out.
    pub fn fail(&self, status: Status) {
        self.push(Err(status));
    }

    fn push(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                if !self.overflow.is_cancelled() {
                    tracing::warn!(
                        unread = self.tx.max_capacity(),
                        "worker stream not read; ending it"
                    );
                }
                self.overflow.cancel();
            }
        }
    }
}

/// Reads a session's outgoing messages, dropping repeated cancels.
pub struct Outbound {
    rx: mpsc::Receiver<Item>,
    cancelled: HashSet<(i64, u32)>,
    /// Resolves when a send found the stream full.
    overflow: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl Outbound {
    /// A queued message, without waiting.
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Result<Item, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }

    /// Whether `item` goes out: anything but a `Cancel` already sent.
    fn admits(&mut self, item: &Item) -> bool {
        match item {
            Ok(v1::ConnectResponse { message: Some(Message::Cancel(c)) }) => {
                // A long-lived stream forgets now and then: a repeated
                // cancel is noise, never harm.
                if self.cancelled.len() >= MAX_REMEMBERED {
                    self.cancelled.clear();
                }
                self.cancelled.insert((c.job_id, c.attempt))
            }
            _ => true,
        }
    }
}

impl Stream for Outbound {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.overflow.as_mut().poll(cx).is_ready() {
            self.ended = true;
            let status = Status::resource_exhausted(format!(
                "more than {} messages unread on this stream; reconnect",
                self.rx.max_capacity()
            ));
            return Poll::Ready(Some(Err(status)));
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) if !self.admits(&item) => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    fn cancel(job_id: i64, attempt: u32) -> Item {
        let cancel = v1::Cancel { job_id, attempt, reason: "stale attempt".into() };
        Ok(v1::ConnectResponse { message: Some(Message::Cancel(cancel)) })
    }

    fn ids(items: &[Item]) -> Vec<(i64, u32)> {
        items
            .iter()
            .filter_map(|i| match i {
                Ok(v1::ConnectResponse { message: Some(Message::Cancel(c)) }) => {
                    Some((c.job_id, c.attempt))
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn each_attempt_is_cancelled_once_and_everything_else_passes() {
        let (tx, rx) = channel(16);
        for item in [cancel(1, 1), cancel(1, 1), cancel(2, 1), cancel(1, 2), cancel(2, 1)] {
            tx.push(item);
        }
        tx.send(Message::Welcome(v1::Welcome::default()));
        tx.fail(Status::unavailable("bye"));
        drop(tx);
        let out: Vec<Item> = rx.collect().await;
        assert_eq!(ids(&out), [(1, 1), (2, 1), (1, 2)]);
        assert_eq!(out.len(), 5, "the welcome and the error pass: {out:?}");
    }

    /// A stream its worker does not read ends with `RESOURCE_EXHAUSTED`
    /// at once, ahead of what it holds; senders never wait.
    #[tokio::test]
    async fn a_stream_not_read_ends_when_full() {
        let (tx, mut rx) = channel(2);
        for n in 0..5 {
            tx.push(cancel(n, 1));
        }
        let first = rx.next().await.expect("an item");
        let status = first.expect_err("the stream ends");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(rx.next().await.is_none(), "nothing after the end");
        tx.send(Message::Welcome(v1::Welcome::default()));
    }

    #[tokio::test]
    async fn a_stream_read_in_time_never_ends() {
        let (tx, mut rx) = channel(2);
        for n in 0..10 {
            tx.push(cancel(n, 1));
            assert_eq!(ids(&[rx.next().await.expect("an item")]), [(n, 1)]);
        }
    }
}
