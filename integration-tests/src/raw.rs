//! A worker made of the bare protocol, as one written in another language
//! would speak it: the test decides every message.

use std::time::Duration;

use regsweep_proto::v1::{self, connect_request::Message as Out, connect_response::Message as In};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::services::Scheduler;

pub struct RawWorker {
    tx: mpsc::Sender<v1::ConnectRequest>,
    pub rx: Streaming<v1::ConnectResponse>,
    /// The id from `Welcome`.
    pub id: String,
}

impl RawWorker {
    /// Says `Hello` with `capacity` and waits for `Welcome`.
    pub async fn connect(scheduler: &Scheduler, name: &str, capacity: &[(&str, u32)]) -> Self {
        let hello = v1::Hello {
            name: name.into(),
            version: "test".into(),
            capacity: capacity.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..Default::default()
        };
        Self::hello(scheduler, hello).await
    }

    /// Says this `Hello` and waits for `Welcome`.
    pub async fn hello(scheduler: &Scheduler, hello: v1::Hello) -> Self {
        let (tx, rx) = mpsc::channel(64);
        tx.send(v1::ConnectRequest { message: Some(Out::Hello(hello)) }).await.expect("send hello");
        let mut rx = scheduler
            .workers()
            .await
            .connect(ReceiverStream::new(rx))
            .await
            .expect("connect")
            .into_inner();
        let Some(In::Welcome(welcome)) = next(&mut rx).await else { panic!("expected welcome") };
        Self { tx, rx, id: welcome.worker_id }
    }

    pub async fn send(&self, message: Out) {
        self.tx.send(v1::ConnectRequest { message: Some(message) }).await.expect("send");
    }

    /// The next message from the scheduler (within 10 s).
    pub async fn next(&mut self) -> In {
        next(&mut self.rx).await.expect("a message")
    }
}

async fn next(rx: &mut Streaming<v1::ConnectResponse>) -> Option<In> {
    tokio::time::timeout(Duration::from_secs(10), rx.message())
        .await
        .expect("scheduler answered in time")
        .expect("stream healthy")
        .and_then(|m| m.message)
}

/// A job update message.
pub fn update(job_id: i64, attempt: u32, status: v1::JobStatus) -> Out {
    Out::JobUpdate(v1::JobUpdate { job_id, attempt, status: status.into(), ..Default::default() })
}

/// A credit message of generation 0.
pub fn credit(kind: &str, n: u32) -> Out {
    Out::Credit(v1::Credit { kind: kind.into(), n, capacity_generation: 0 })
}
