//! A scheduler and a worker that answer policy previews of a local
//! registry: how the tag benchmarks make `tag_cleanup` read a repository
//! and take the job's own measure of it.

use anyhow::{Context, Result};
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::v1::{self, policy_service_client::PolicyServiceClient};
use tonic::transport::Channel;

/// One preview's figures, by the job's own clock.
pub struct Timing {
    pub tags_per_second: f64,
    /// Listing, reading and planning.
    pub planning_ms: f64,
    /// From the plan to the job's end: reading the untagged children of
    /// indexes for the reclaim figure, and reporting.
    pub after_plan_ms: f64,
    pub reclaimable_bytes: u64,
}

pub struct Previews {
    policies: PolicyServiceClient<Channel>,
    channel: Channel,
    _worker: Worker,
    _scheduler: Scheduler,
    _db: TestDb,
}

impl Previews {
    /// Services over the registry at `url`, with a dry-run policy `bench`
    /// covering every repository.
    pub async fn start(url: &str) -> Result<Self> {
        let db = TestDb::create().await;
        let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
        let worker = Worker::spawn_with(&scheduler.url, "bench-worker", &[], false);
        let channel = scheduler.channel().await;
        let mut registries =
            v1::registry_service_client::RegistryServiceClient::new(channel.clone());
        let definition =
            v1::Registry { name: "local".into(), url: url.into(), ..Default::default() };
        registries
            .create_registry(v1::CreateRegistryRequest {
                registry: Some(definition),
                ..Default::default()
            })
            .await?;
        let mut policies = PolicyServiceClient::new(channel.clone());
        let policy = v1::Policy {
            name: "bench".into(),
            registry: "local".into(),
            repository_selector: "**".into(),
            cadence: "1d".into(),
            keep_n: 10,
            dry_run: true,
            ..Default::default()
        };
        policies
            .create_policy(v1::CreatePolicyRequest {
                policy: Some(policy),
                live: false,
                ..Default::default()
            })
            .await?;
        Ok(Self { policies, channel, _worker: worker, _scheduler: scheduler, _db: db })
    }

    /// Previews `repo`, which must hold `tags` tags and read whole; returns
    /// tags per second by the job's own measure (listing, reading, planning).
    pub async fn tags_per_second(&mut self, repo: &str, tags: usize) -> Result<f64> {
        Ok(self.timed(repo, tags).await?.tags_per_second)
    }

    /// As `tags_per_second`, with what the job spent after planning.
    pub async fn timed(&mut self, repo: &str, tags: usize) -> Result<Timing> {
        let request = v1::PreviewPolicyRequest {
            policy: "bench".into(),
            repository: repo.into(),
            ..Default::default()
        };
        let preview = self.policies.preview_policy(request).await?.into_inner();
        anyhow::ensure!(
            preview.decisions.len() == tags && preview.blocked.is_empty(),
            "preview decided {} of {tags} tags ({})",
            preview.decisions.len(),
            preview.blocked
        );
        let job = v1::job_service_client::JobServiceClient::new(self.channel.clone())
            .get_job(v1::GetJobRequest { id: preview.job_id })
            .await?
            .into_inner()
            .job
            .context("job")?;
        let result = regsweep_proto::struct_to_json(job.result.as_ref().context("result")?);
        let elapsed_ms = result["elapsed_ms"].as_f64().context("elapsed_ms")?;
        let at = |t: Option<&regsweep_proto::pbjson_types::Timestamp>| {
            t.and_then(regsweep_proto::timestamp_to_chrono).context("job times")
        };
        let ran = at(job.finished_at.as_ref())? - at(job.started_at.as_ref())?;
        Ok(Timing {
            tags_per_second: tags as f64 / (elapsed_ms / 1000.0),
            planning_ms: elapsed_ms,
            after_plan_ms: (ran.num_milliseconds() as f64 - elapsed_ms).max(0.0),
            reclaimable_bytes: preview.reclaimable_bytes,
        })
    }
}
