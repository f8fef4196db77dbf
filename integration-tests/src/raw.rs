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

/// A `tag_cleanup` job of one repository, created by hand and held running
/// by a bare worker that heartbeats it: the attempt a scrubber accepts a
/// plan from, for tests that hand the scrubber a plan themselves.
pub struct HeldCleanup {
    pub job_id: i64,
    pub attempt: u32,
    pub registry: String,
    pub repository: String,
    worker: RawWorker,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl HeldCleanup {
    /// Creates the job and holds it; no other worker of `tag_cleanup` may
    /// be connected to `scheduler`.
    pub async fn start(scheduler: &Scheduler, registry: &str, repository: &str) -> Self {
        let args = serde_json::json!({"registry": registry, "repository": repository});
        let job = scheduler
            .jobs()
            .await
            .create_job(v1::CreateJobRequest {
                kind: "tag_cleanup".into(),
                args: Some(regsweep_proto::json_to_struct(args)),
                ..Default::default()
            })
            .await
            .expect("create the cleanup job")
            .into_inner()
            .job
            .expect("job");
        let mut worker = RawWorker::connect(scheduler, "plan-holder", &[("tag_cleanup", 1)]).await;
        worker.send(credit("tag_cleanup", 1)).await;
        let In::Assign(v1::Assign { job: Some(assigned), .. }) = worker.next().await else {
            panic!("expected the cleanup job")
        };
        assert_eq!(assigned.id, job.id, "another tag_cleanup job was waiting");
        worker.send(update(job.id, assigned.attempt, v1::JobStatus::Running)).await;
        let tx = worker.tx.clone();
        let running =
            vec![v1::RunningJob { job_id: job.id, attempt: assigned.attempt, progress: 0.0 }];
        let heartbeats = tokio::spawn(async move {
            loop {
                let beat = Out::Heartbeat(v1::Heartbeat {
                    running: running.clone(),
                    ..Default::default()
                });
                if tx.send(v1::ConnectRequest { message: Some(beat) }).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self {
            job_id: job.id,
            attempt: assigned.attempt,
            registry: registry.into(),
            repository: repository.into(),
            worker,
            heartbeats,
        }
    }

    /// A plan of `images` from this attempt, from a repository ten times as
    /// large as the plan (so the blast-radius guard lets it run).
    pub fn plan(&self, images: Vec<v1::ImageDeletion>) -> v1::SubmitDeletionsRequest {
        let tags: u64 = images.iter().map(|i| i.tags.len().max(1) as u64).sum();
        let digests = images.iter().filter(|i| i.delete_digest).count() as u64;
        v1::SubmitDeletionsRequest {
            job_id: self.job_id,
            attempt: self.attempt,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            images,
            size: Some(v1::PlanSize {
                repository_tags: tags * 10,
                repository_images: images_total(digests),
                deleted_tags: tags,
                deleted_images: digests,
                leaves_only_latest: false,
            }),
        }
    }

    /// Ends the attempt `Done`, as a worker does after submitting, and
    /// waits until the scheduler has it so.
    pub async fn finish(self, scheduler: &Scheduler) {
        self.worker.send(update(self.job_id, self.attempt, v1::JobStatus::Done)).await;
        let jobs = scheduler.jobs().await;
        crate::wait_until("the cleanup job to end", Duration::from_secs(10), || {
            let mut jobs = jobs.clone();
            async move {
                let request = v1::GetJobRequest { id: self.job_id };
                let job = jobs.get_job(request).await.ok()?.into_inner().job?;
                (job.status() == v1::JobStatus::Done).then_some(())
            }
        })
        .await;
        self.heartbeats.abort();
    }
}

fn images_total(deleted: u64) -> u64 {
    deleted.max(1) * 10
}
