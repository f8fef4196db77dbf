//! `regsweep jobs ...`

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use regsweep_common::duration;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{json_to_struct, struct_to_json, timestamp_from_chrono};

use crate::cli::{Cli, CreateJob, JobsCommand, ListJobs, Output};
use crate::client;
use crate::output::{self, Table, short, time};

type Jobs = JobServiceClient<regsweep_common::grpc::Client>;

pub async fn run(cli: &Cli, command: &JobsCommand) -> Result<()> {
    let mut jobs = client::jobs(&cli.scheduler).await?;
    match command {
        JobsCommand::Create(args) if args.count > 1 => create_many(cli, &mut jobs, args).await?,
        JobsCommand::Create(args) => {
            let request = create_request(args)?;
            let response = jobs.create_job(request).await?.into_inner();
            if cli.output == Output::Json {
                return output::json(&response);
            }
            let job = response.job.context("server returned no job")?;
            let verb = if response.created { "created" } else { "exists (same unique key)" };
            println!("job {} {verb}: {} {}", job.id, job.kind, status(&job));
        }
        JobsCommand::Get { id } => {
            let job = jobs.get_job(v1::GetJobRequest { id: *id }).await?.into_inner().job;
            let job = job.context("server returned no job")?;
            match cli.output {
                Output::Json => output::json(&job)?,
                Output::Table => print_job(&job),
            }
        }
        JobsCommand::List(args) => {
            let list = list(&mut jobs, args).await?;
            match cli.output {
                Output::Json => output::json(&list)?,
                Output::Table => print_jobs(&list),
            }
        }
        JobsCommand::Cancel { id, reason } => {
            let request = v1::CancelJobRequest { id: *id, reason: reason.clone() };
            let job = jobs
                .cancel_job(request)
                .await?
                .into_inner()
                .job
                .context("server returned no job")?;
            match cli.output {
                Output::Json => output::json(&job)?,
                Output::Table => println!("job {}: {}", job.id, status(&job)),
            }
        }
        JobsCommand::Delete { id } => {
            jobs.delete_job(v1::DeleteJobRequest { id: *id }).await?;
            match cli.output {
                Output::Json => {
                    output::json(&serde_json::json!({"id": id.to_string(), "deleted": true}))?
                }
                Output::Table => println!("job {id} deleted"),
            }
        }
        JobsCommand::Logs { id, attempt, follow: true } => {
            follow_logs(&mut jobs, cli.output, *id, attempt.unwrap_or(0)).await?
        }
        JobsCommand::Logs { id, attempt, follow: false } => {
            print_logs(&mut jobs, cli.output, *id, attempt.unwrap_or(0)).await?
        }
    }
    Ok(())
}

/// Consecutive lost streams a follow survives: about 45 s of a scheduler
/// away (a restart, a replica failing over), at the backoff below.
const FOLLOW_RETRIES: u32 = 12;

/// `regsweep jobs logs --follow`: the lines as they come, to the job's end.
/// A stream lost on the way is followed again from the end of its last
/// message, so no line is printed twice or missed.
async fn follow_logs(jobs: &mut Jobs, output: Output, id: i64, attempt: u32) -> Result<()> {
    let mut at = Followed { token: String::new(), status: JobStatus::Unspecified };
    let mut retries =
        regsweep_common::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
            .retries();
    let mut lost = 0;
    loop {
        let from = at.token.clone();
        let followed = follow_from(jobs, output, id, attempt, &mut at).await;
        if at.token != from {
            // It got somewhere: the next loss is a new one.
            lost = 0;
            retries.reset();
        }
        match followed {
            Ok(()) => break,
            Err(FollowError::Stream(status))
                if lost < FOLLOW_RETRIES
                    && matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown) =>
            {
                lost += 1;
                let delay = retries.next_delay();
                eprintln!("log stream lost ({}); following again in {delay:?}", status.message());
                tokio::time::sleep(delay).await;
            }
            Err(FollowError::Stream(status)) => return Err(status.into()),
            Err(FollowError::Print(e)) => return Err(e),
        }
    }
    if output == Output::Table {
        eprintln!("job {id} is {}", at.status.short_name());
    }
    Ok(())
}

/// Where a follow is: after the lines of `token`, with the last status.
struct Followed {
    token: String,
    status: JobStatus,
}

enum FollowError {
    Stream(tonic::Status),
    Print(anyhow::Error),
}

/// Follows from `at` until the job ends (`Ok`) or the stream fails.
async fn follow_from(
    jobs: &mut Jobs,
    output: Output,
    id: i64,
    attempt: u32,
    at: &mut Followed,
) -> Result<(), FollowError> {
    let request = v1::TailJobLogsRequest { id, attempt, page_token: at.token.clone() };
    let mut stream = jobs.tail_job_logs(request).await.map_err(FollowError::Stream)?.into_inner();
    while let Some(message) = stream.message().await.map_err(FollowError::Stream)? {
        at.status = message.status();
        for line in &message.lines {
            print_line(output, line).map_err(FollowError::Print)?;
        }
        at.token = message.next_page_token;
    }
    if at.status.is_terminal() {
        Ok(())
    } else {
        // A scheduler that ended the stream without the job's end (an
        // older one stopping does): not the end of the log.
        Err(FollowError::Stream(tonic::Status::unavailable("log stream ended before the job")))
    }
}

/// `regsweep jobs logs`: every line so far, page by page.
async fn print_logs(jobs: &mut Jobs, output: Output, id: i64, attempt: u32) -> Result<()> {
    let mut token = String::new();
    loop {
        let request = v1::GetJobLogsRequest { id, attempt, page_size: 0, page_token: token };
        let page = jobs.get_job_logs(request).await?.into_inner();
        for line in &page.lines {
            print_line(output, line)?;
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// One log line: `time [attempt] text`, or one JSON object per line
/// (JSON lines, so a follow can be piped while it runs).
fn print_line(output: Output, line: &v1::JobLogLine) -> Result<()> {
    match output {
        Output::Table => println!("{} [{}] {}", time(line.time.as_ref()), line.attempt, line.text),
        Output::Json => println!("{}", serde_json::to_string(line)?),
    }
    Ok(())
}

fn create_request(args: &CreateJob) -> Result<v1::CreateJobRequest> {
    let parsed = client::json_object("--args", &args.args)?;
    let scheduled_at = args.scheduled_at.as_deref().map(parse_time).transpose()?;
    Ok(v1::CreateJobRequest {
        kind: args.kind.clone(),
        args: Some(json_to_struct(parsed)),
        priority: args.priority,
        scheduled_at: scheduled_at.map(timestamp_from_chrono),
        max_attempts: args.max_attempts.unwrap_or(0),
        unique_key: args.unique_key.clone().unwrap_or_default(),
        parent_id: 0,
    })
}

/// `--count N`: N jobs in CreateJobs batches; every refusal is reported
/// (the same request for every item, so the first batch shows them all).
async fn create_many(
    cli: &Cli,
    jobs: &mut JobServiceClient<regsweep_common::grpc::Client>,
    args: &CreateJob,
) -> Result<()> {
    const BATCH: u32 = 1000;
    let request = create_request(args)?;
    let (mut created, mut left) = (Vec::new(), args.count);
    while left > 0 {
        let n = left.min(BATCH);
        let batch = v1::CreateJobsRequest { jobs: vec![request.clone(); n as usize] };
        let results = jobs.create_jobs(batch).await?.into_inner().results;
        if let Some(refused) = results.iter().find(|r| !r.violations.is_empty()) {
            let why: Vec<String> = refused
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
            anyhow::bail!("job refused: {}", why.join("; "));
        }
        created.extend(results.into_iter().filter_map(|r| r.job.map(|j| j.id)));
        left -= n;
    }
    if cli.output == Output::Json {
        /// `--output json` of `jobs create --count`.
        #[derive(serde::Serialize)]
        struct Created<'a> {
            created: &'a [i64],
        }
        return output::json(&Created { created: &created });
    }
    match (created.first(), created.last()) {
        (Some(first), Some(last)) => {
            println!(
                "{} {} jobs created, first id {first}, last id {last}",
                created.len(),
                args.kind
            );
        }
        _ => println!("no jobs created"),
    }
    Ok(())
}

/// An RFC 3339 time, or a delay from now (`10m`).
fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let delay = duration::parse(text).map_err(|_| {
        anyhow::anyhow!("--scheduled-at {text:?}: expected an RFC 3339 time or a delay such as 10m")
    })?;
    Ok(Utc::now() + chrono::Duration::from_std(delay)?)
}

async fn list(
    jobs: &mut v1::job_service_client::JobServiceClient<regsweep_common::grpc::Client>,
    args: &ListJobs,
) -> Result<Vec<v1::Job>> {
    let mut statuses = Vec::new();
    for name in &args.statuses {
        let status = JobStatus::from_short_name(name)
            .with_context(|| format!("--status {name:?} is not a job status"))?;
        statuses.push(status as i32);
    }
    client::pages(Some(args.limit as usize), |page_size, page_token| {
        let mut jobs = jobs.clone();
        let request = v1::ListJobsRequest {
            statuses: statuses.clone(),
            kind: args.kind.clone().unwrap_or_default(),
            worker_id: args.worker.clone().unwrap_or_default(),
            page_size,
            page_token,
        };
        async move {
            let page = jobs.list_jobs(request).await?.into_inner();
            Ok((page.jobs, page.next_page_token))
        }
    })
    .await
}

fn status(job: &v1::Job) -> &'static str {
    job.status().short_name()
}

fn print_jobs(jobs: &[v1::Job]) {
    let mut table =
        Table::new(&["ID", "KIND", "STATUS", "ATTEMPT", "PRIO", "WORKER", "CREATED", "ERROR"]);
    for job in jobs {
        table.row(vec![
            job.id.to_string(),
            job.kind.clone(),
            status(job).to_string(),
            format!("{}/{}", job.attempt, job.max_attempts),
            job.priority.to_string(),
            short(&job.worker_id, 8),
            time(job.created_at.as_ref()),
            job.last_error.lines().next().unwrap_or_default().chars().take(60).collect(),
        ]);
    }
    table.print();
}

fn print_job(job: &v1::Job) {
    let json = |s: &Option<regsweep_proto::pbjson_types::Struct>| {
        s.as_ref().map_or_else(|| "-".to_string(), |s| struct_to_json(s).to_string())
    };
    output::fields(&[
        ("id", job.id.to_string()),
        ("kind", job.kind.clone()),
        ("status", status(job).to_string()),
        ("args", json(&job.args)),
        ("priority", job.priority.to_string()),
        ("attempt", format!("{} of {}", job.attempt, job.max_attempts)),
        ("worker", short(&job.worker_id, 36)),
        ("scheduled", time(job.scheduled_at.as_ref())),
        ("created", time(job.created_at.as_ref())),
        ("claimed", time(job.claimed_at.as_ref())),
        ("started", time(job.started_at.as_ref())),
        ("heartbeat", time(job.heartbeat_at.as_ref())),
        ("finished", time(job.finished_at.as_ref())),
        ("progress", format!("{:.0}%", job.progress * 100.0)),
        ("result", json(&job.result)),
        ("error", if job.last_error.is_empty() { "-".into() } else { job.last_error.clone() }),
        ("unique key", short(&job.unique_key, 256)),
    ]);
    for error in &job.errors {
        println!(
            "attempt {} failed at {}: {}",
            error.attempt,
            time(error.at.as_ref()),
            error.error
        );
    }
}
