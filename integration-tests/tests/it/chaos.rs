//! Jepsen-style chaos against real processes on PostgreSQL: two scheduler
//! replicas behind a TCP proxy to the database, three workers each behind
//! TCP proxies to the replicas, a backlog of short jobs, and while it
//! drains a random schedule of worker SIGKILLs, replica SIGKILLs, database
//! outages (short ones, and ones longer than the leader lease and the TTL),
//! SIGSTOPped workers, partitioned workers (their links cut or frozen past
//! the TTL) and cancels. A checker then
//! reads the final state and an audit of every status change (a trigger
//! installed in the test database only) and fails on any lost job, any job
//! completed twice, any job stuck, and any attempt spent by a worker that
//! was neither killed, stopped nor partitioned (an outage or a leadership
//! change alone must cost nothing).
//!
//! `make test` runs a bounded schedule; `make chaos JOBS=N` a longer one
//! (`CHAOS_JOBS`, `CHAOS_SEED` replays one).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regsweep_integration_tests::tcpproxy::TcpProxy;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1;
use serde_json::json;

const WORKERS: usize = 3;
/// Scheduler timing: heartbeats 1 s, TTL 3 s, lease 4 s.
const FLAGS: &[&str] =
    &["--heartbeat-interval", "1s", "--heartbeat-ttl", "3s", "--leader-lease", "4s"];

/// Every status or attempt change of every job, in the order the changes
/// were written.
const AUDIT: &str = "
CREATE TABLE job_audit (
    seq      bigint GENERATED ALWAYS AS IDENTITY,
    job_id   bigint NOT NULL,
    attempt  int NOT NULL,
    status   text NOT NULL,
    worker   uuid
);
CREATE FUNCTION job_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        INSERT INTO job_audit (job_id, attempt, status, worker)
        VALUES (NEW.id, NEW.attempt, NEW.status, NEW.worker_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER job_audit AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_audit();
";

struct Cluster {
    db: TestDb,
    proxy: TcpProxy,
    db_url: String,
    replicas: Vec<(String, Scheduler)>,
    /// Each worker process with the id it registered under.
    workers: Vec<(Worker, String)>,
    /// Each worker's links, one proxy per replica (a restarted replica
    /// listens on its port again).
    links: Vec<Vec<TcpProxy>>,
}

impl Cluster {
    async fn start() -> Self {
        let db = TestDb::postgres().await;
        let (proxy, db_url) = TcpProxy::in_front_of_database(&db.url).await;
        let mut replicas = Vec::new();
        for name in ["scheduler-a", "scheduler-b"] {
            let scheduler = Scheduler::launch(name, &db_url, FLAGS, false).await;
            replicas.push((scheduler.addr().to_string(), scheduler));
        }
        let mut links = Vec::new();
        for _ in 0..WORKERS {
            let mut link = Vec::new();
            for (addr, _) in &replicas {
                link.push(TcpProxy::start(addr).await);
            }
            links.push(link);
        }
        let mut cluster = Self { db, proxy, db_url, replicas, workers: Vec::new(), links };
        for i in 0..WORKERS {
            let worker = cluster.worker(i).await;
            cluster.workers.push(worker);
        }
        cluster
    }

    /// Cuts every connection to the database for `how_long`.
    async fn outage(&self, how_long: Duration) {
        self.proxy.down();
        tokio::time::sleep(how_long).await;
        self.proxy.up();
    }

    /// Cuts or freezes worker `i`'s links to every replica for `how_long`.
    async fn partition(&self, i: usize, how_long: Duration, freeze: bool) {
        for link in &self.links[i] {
            if freeze { link.stall() } else { link.down() }
        }
        tokio::time::sleep(how_long).await;
        for link in &self.links[i] {
            if freeze { link.resume() } else { link.up() }
        }
    }

    async fn worker(&self, i: usize) -> (Worker, String) {
        let urls: Vec<String> =
            self.links[i].iter().map(|l| format!("http://{}", l.addr())).collect();
        let urls = urls.join(",");
        let worker = Worker::spawn_with(&urls, &format!("w{i}"), &["--capacity", "sleep=4"], false);
        let line = worker
            .process
            .wait_for_message("registered with scheduler", Duration::from_secs(30))
            .await;
        let id = line["worker_id"].as_str().expect("worker_id").to_string();
        (worker, id)
    }

    /// SIGKILLs replica `i` and starts it again on its port.
    async fn kill_replica(&mut self, i: usize) {
        let (addr, scheduler) = &mut self.replicas[i];
        scheduler.process.signal(Signal::SIGKILL);
        // Gone, and its port free again, before it starts anew.
        scheduler.process.wait_exit(Duration::from_secs(10)).await;
        let addr = addr.clone();
        let mut flags = vec!["--listen", addr.as_str()];
        flags.extend(FLAGS);
        let name = if i == 0 { "scheduler-a" } else { "scheduler-b" };
        let restarted = Scheduler::launch(name, &self.db_url, &flags, false).await;
        self.replicas[i].1 = restarted;
    }
}

/// When a worker could not heartbeat through a fault of its own: from a
/// SIGKILL on (a process's id dies with it), or from a SIGSTOP until two
/// TTLs after its SIGCONT (it is declared dead, then reconnects under the
/// same id).
type Window = (DateTime<Utc>, Option<DateTime<Utc>>);

/// What the faults did, per worker id.
#[derive(Default)]
struct Faults {
    harmed: HashMap<String, Vec<Window>>,
    /// Jobs the chaos asked to cancel (the only ones that may end but
    /// `done`).
    cancelled: HashSet<i64>,
    counts: BTreeMap<&'static str, u32>,
}

impl Faults {
    fn harm(&mut self, worker: &str, window: Window) {
        self.harmed.entry(worker.to_string()).or_default().push(window);
    }

    /// Whether an expiry of `worker`'s attempt at `at` follows a fault of
    /// its own.
    fn excuses(&self, worker: &str, at: DateTime<Utc>) -> bool {
        self.harmed
            .get(worker)
            .into_iter()
            .flatten()
            .any(|(from, to)| *from <= at && to.is_none_or(|to| at <= to))
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_loses_nothing_completes_once_and_spends_no_attempt_on_outages() {
    let jobs: usize = std::env::var("CHAOS_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(250);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos: {jobs} jobs, CHAOS_SEED={seed:x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start().await;
    let pool = cluster.db.scheduler_pool().await;
    sqlx::raw_sql(AUDIT).execute(&pool).await.expect("install the audit trigger");

    let mut client = cluster.replicas[0].1.jobs().await;
    let mut created = Vec::new();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|_| v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(json!({"seconds": rng.random_range(0.2..2.5)}))),
                max_attempts: 10,
                ..Default::default()
            })
            .collect();
        let results = client
            .create_jobs(v1::CreateJobsRequest { jobs: batch })
            .await
            .expect("create jobs")
            .into_inner()
            .results;
        created.extend(results.into_iter().map(|r| r.job.expect("created").id));
    }

    let faults = unleash(&mut cluster, &mut rng, &created, &pool).await;
    eprintln!("chaos: faults {:?}", faults.counts);
    check(&pool, &created, &faults).await;
}

/// Faults at random until every job ended (or the time runs out).
async fn unleash(
    cluster: &mut Cluster,
    rng: &mut StdRng,
    created: &[i64],
    pool: &sqlx::PgPool,
) -> Faults {
    let mut faults = Faults::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40 + created.len() as u64 / 4);
    while tokio::time::Instant::now() < deadline && !all_ended(pool).await {
        match rng.random_range(0..12) {
            0..=2 => {
                let i = rng.random_range(0..WORKERS);
                faults.harm(&cluster.workers[i].1, (Utc::now(), None));
                cluster.workers[i].0.signal(Signal::SIGKILL);
                cluster.workers[i] = cluster.worker(i).await;
                faults.count("worker sigkill");
            }
            3 => {
                let i = rng.random_range(0..cluster.replicas.len());
                cluster.kill_replica(i).await;
                faults.count("replica sigkill");
            }
            4 | 5 => {
                // Shorter than the lease plus the TTL less the margin.
                cluster.outage(Duration::from_millis(rng.random_range(500..4000))).await;
                faults.count("database outage");
            }
            6 => {
                let i = rng.random_range(0..WORKERS);
                let stopped = Utc::now();
                cluster.workers[i].0.signal(Signal::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(4)).await;
                cluster.workers[i].0.signal(Signal::SIGCONT);
                let until = Utc::now() + chrono::Duration::seconds(6);
                faults.harm(&cluster.workers[i].1, (stopped, Some(until)));
                faults.count("worker sigstop past the ttl");
            }
            7 => {
                // Past the TTL and the lease: an outage, not a death.
                cluster.outage(Duration::from_millis(rng.random_range(5000..9000))).await;
                faults.count("database outage past the lease");
            }
            8 => {
                let i = rng.random_range(0..WORKERS);
                let (from, freeze) = (Utc::now(), rng.random_bool(0.5));
                cluster.partition(i, Duration::from_secs(4), freeze).await;
                let until = Utc::now() + chrono::Duration::seconds(6);
                faults.harm(&cluster.workers[i].1, (from, Some(until)));
                faults.count(if freeze { "worker frozen off" } else { "worker cut off" });
            }
            _ => {
                let id = created[rng.random_range(0..created.len())];
                if let Ok(mut client) =
                    tokio::time::timeout(Duration::from_secs(2), cluster.replicas[0].1.jobs()).await
                {
                    let request = v1::CancelJobRequest { id, reason: "chaos".into() };
                    faults.cancelled.insert(id);
                    let _ = client.cancel_job(request).await;
                    faults.count("cancel");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
    }
    // The checker names what is still open if this runs out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline && !all_ended(pool).await {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    faults
}

async fn all_ended(pool: &sqlx::PgPool) -> bool {
    let open: Result<(i64,), _> =
        sqlx::query_as("SELECT count(*) FROM jobs WHERE status NOT IN ('done', 'error', 'cancel')")
            .fetch_one(pool)
            .await;
    matches!(open, Ok((0,)))
}

/// The checker: lost, completed twice, stuck, and attempts spent on a
/// worker no fault touched.
async fn check(pool: &sqlx::PgPool, created: &[i64], faults: &Faults) {
    let rows: Vec<(i64, String, serde_json::Value)> =
        sqlx::query_as("SELECT id, status, errors FROM jobs").fetch_all(pool).await.expect("jobs");
    let stored: HashMap<i64, (String, serde_json::Value)> =
        rows.into_iter().map(|(id, status, errors)| (id, (status, errors))).collect();
    let lost: Vec<i64> = created.iter().copied().filter(|id| !stored.contains_key(id)).collect();
    let stuck: Vec<i64> = stored
        .iter()
        .filter(|(_, (status, _))| !["done", "error", "cancel"].contains(&status.as_str()))
        .map(|(id, _)| *id)
        .collect();
    // Sleeps never fail: a job ends `done`, or `cancel` when asked.
    let ended_badly: Vec<(i64, &str)> = stored
        .iter()
        .filter(|(id, (status, _))| match status.as_str() {
            "error" => true,
            "cancel" => !faults.cancelled.contains(id),
            _ => false,
        })
        .map(|(id, (status, _))| (*id, status.as_str()))
        .collect();
    let audit: Vec<(i64, i32, String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT job_id, attempt, status, worker FROM job_audit ORDER BY seq")
            .fetch_all(pool)
            .await
            .expect("audit");
    let mut done: HashMap<i64, u32> = HashMap::new();
    let mut ran_on: HashMap<(i64, i32), uuid::Uuid> = HashMap::new();
    for (job, attempt, status, worker) in &audit {
        if status == "done" {
            *done.entry(*job).or_default() += 1;
        }
        if let (Some(worker), "running") = (worker, status.as_str()) {
            ran_on.insert((*job, *attempt), *worker);
        }
    }
    let twice: Vec<i64> = done.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    let (wasted, spent_on_the_healthy) = spent_attempts(&stored, &ran_on, faults);
    let ended: BTreeMap<&str, usize> = stored.values().fold(BTreeMap::new(), |mut m, (s, _)| {
        *m.entry(s.as_str()).or_default() += 1;
        m
    });
    eprintln!(
        "chaos: {} jobs {ended:?}; lost {}, completed twice {}, stuck {}, attempts spent by faults {wasted}, on untouched workers {}",
        created.len(),
        lost.len(),
        twice.len(),
        stuck.len(),
        spent_on_the_healthy.len()
    );
    assert!(lost.is_empty(), "lost jobs: {lost:?}");
    assert!(twice.is_empty(), "jobs completed twice: {twice:?}");
    assert!(stuck.is_empty(), "stuck jobs: {stuck:?}");
    assert!(
        ended_badly.is_empty(),
        "jobs that ended neither done nor cancelled as asked: {ended_badly:?}"
    );
    assert!(
        spent_on_the_healthy.is_empty(),
        "attempts spent on workers no fault touched (job, attempt, worker, why): {spent_on_the_healthy:?}"
    );
}

/// Every attempt error (sleeps fail only through faults), and those whose
/// worker had no fault of its own then: spent by an outage or a
/// leadership change alone. (job, attempt, worker id, why).
fn spent_attempts(
    stored: &HashMap<i64, (String, serde_json::Value)>,
    ran_on: &HashMap<(i64, i32), uuid::Uuid>,
    faults: &Faults,
) -> (usize, Vec<(i64, i32, String, String)>) {
    let mut wasted = 0;
    let mut untouched = Vec::new();
    for (id, (_, errors)) in stored {
        for error in errors.as_array().into_iter().flatten() {
            wasted += 1;
            let attempt = error["attempt"].as_i64().unwrap_or(0) as i32;
            let worker = ran_on.get(&(*id, attempt)).map(ToString::to_string).unwrap_or_default();
            let at = error["at"]
                .as_str()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map(|at| at.with_timezone(&Utc))
                .expect("an attempt error has its time");
            if !faults.excuses(&worker, at) {
                let why = error["error"].as_str().unwrap_or_default().to_string();
                untouched.push((*id, attempt, worker, why));
            }
        }
    }
    (wasted, untouched)
}
