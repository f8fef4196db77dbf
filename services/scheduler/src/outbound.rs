//! The response half of a worker stream as the worker sees it: every
//! message in order, but at most one `Cancel` per attempt. A stream is
//! reliable, so a second `Cancel` for the same attempt says nothing new;
//! yet the writer finds an attempt stale once per update or heartbeat
//! that names it, and a session whose queued messages land at once (after
//! a database outage, say) would otherwise send a round of cancels per
//! message. A new stream starts afresh: what the old one sent may be lost.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use regsweep_proto::v1::{self, connect_response::Message};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

type Item = Result<v1::ConnectResponse, Status>;

/// Cancels a stream remembers at most.
const MAX_REMEMBERED: usize = 100_000;

/// Reads a session's outgoing messages, dropping repeated cancels.
pub struct Outbound {
    rx: mpsc::UnboundedReceiver<Item>,
    cancelled: HashSet<(i64, u32)>,
}

impl Outbound {
    pub fn new(rx: mpsc::UnboundedReceiver<Item>) -> Self {
        Self { rx, cancelled: HashSet::new() }
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
        let (tx, rx) = mpsc::unbounded_channel();
        for item in [cancel(1, 1), cancel(1, 1), cancel(2, 1), cancel(1, 2), cancel(2, 1)] {
            tx.send(item).expect("send");
        }
        let welcome = v1::Welcome::default();
        tx.send(Ok(v1::ConnectResponse { message: Some(Message::Welcome(welcome)) }))
            .expect("send");
        tx.send(Err(Status::unavailable("bye"))).expect("send");
        drop(tx);
        let out: Vec<Item> = Outbound::new(rx).collect().await;
        assert_eq!(ids(&out), [(1, 1), (2, 1), (1, 2)]);
        assert_eq!(out.len(), 5, "the welcome and the error pass: {out:?}");
    }
}
