//! The randomized end-to-end safety run: the planner's generator pushed to
//! the real registry and cleaned for real by real processes, while the
//! world moves. During each cleanup's undo window and while it is scrubbed
//! (rate-limited), at random moments: a tag is pushed onto a planned
//! digest, a planned tag is re-pushed to a new image, the scrubber is
//! SIGKILLed and started again, the registry is restarted.
//!
//! After each scenario, on the registry and the records:
//! * every kept tag still names what it named and pulls, and everything
//!   reachable from it is there;
//! * a tag pushed after planning still names what was pushed, and
//!   everything reachable from it is there, unless its loss falls inside
//!   the documented window (a push less than `--tag-snapshot-ttl` plus one
//!   round trip before the DELETE: Distribution has no conditional delete);
//! * no tag is left on an untag placeholder;
//! * every deletion ends `deleted`, `failed` or `cancelled`, with a reason
//!   when it did not delete;
//! * every manifest DELETE and PUT the registry received is in the
//!   scrubber's audit record;
//! * when every deletion ended `deleted`, no manifest is left untagged and
//!   unreachable that was not so before.
//!
//! `SCENARIOS` sets the number (default 6 here; `make safety SCENARIOS=N`).
//! `SAFETY_SEED` replays a run (each run prints its seed).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use regsweep_integration_tests::authproxy::{AuthProxy, Mode};
use regsweep_integration_tests::graphgen::{self, Layout, Model};
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_policy::{Action, RuleSpec, TagCleanupResult};
use regsweep_proto::v1::{self, DeletionStatus};
use regsweep_proto::{struct_to_json, timestamp_to_chrono};

use crate::policies::{create_policy, policy_for, run_policy, sync};

/// How long a tag snapshot is trusted (`--tag-snapshot-ttl`).
const SNAPSHOT_TTL: Duration = Duration::from_millis(500);
/// One round trip on this machine (one clock for every process).
const MARGIN: Duration = Duration::from_millis(300);

fn scenarios() -> u32 {
    std::env::var("SCENARIOS").ok().and_then(|s| s.parse().ok()).unwrap_or(6)
}

/// What happens around one cleanup, at random.
#[derive(Clone, Debug)]
struct Disturbance {
    race: Race,
    /// After the plan is handed over.
    race_after: Duration,
    kill_scrubber_after: Option<Duration>,
    restart_registry_after: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
enum Race {
    None,
    /// A new tag onto the digest of a planned image.
    TagPlannedDigest(usize),
    /// A planned tag pushed again, to a new image.
    RepushPlannedTag(usize),
}

fn arb_disturbance() -> impl Strategy<Value = Disturbance> {
    let at = || (0_u64..4000).prop_map(Duration::from_millis);
    let race = proptest::prop_oneof![
        proptest::strategy::Just(Race::None),
        (0_usize..64).prop_map(Race::TagPlannedDigest),
        (0_usize..64).prop_map(Race::RepushPlannedTag),
    ];
    (race, at(), proptest::option::of(at()), proptest::option::of(at())).prop_map(
        |(race, race_after, kill_scrubber_after, restart_registry_after)| Disturbance {
            race,
            race_after,
            kill_scrubber_after,
            restart_registry_after,
        },
    )
}

/// Policies that delete much: a single rule with no age rule and few
/// kept, or the planner's listed rules with their age rules dropped (the
/// images here are all minutes old, so any age rule keeps everything and
/// races nothing).
fn arb_deleting_spec() -> impl Strategy<Value = RuleSpec> {
    proptest::prop_oneof![arb_deleting_single_rule(), arb_deleting_listed_rules()]
}

fn arb_deleting_single_rule() -> impl Strategy<Value = RuleSpec> {
    let delete = proptest::sample::select(vec![".*", "", "[ab].*", "a.*|c.*"]);
    let keep = proptest::sample::select(vec!["", "keep-.*"]);
    let attachments = proptest::sample::select(vec![
        regsweep_policy::AttachmentPolicy::DeleteWithSubject,
        regsweep_policy::AttachmentPolicy::Keep,
    ]);
    (0_i64..3, delete, keep, attachments).prop_map(|(keep_n, delete, keep, attachments)| RuleSpec {
        keep_n,
        name_regex_delete: delete.to_string(),
        name_regex_keep: keep.to_string(),
        attachments,
        ..RuleSpec::default()
    })
}

fn arb_deleting_listed_rules() -> impl Strategy<Value = RuleSpec> {
    graphgen::arb_listed_spec().prop_map(|mut spec| {
        for rule in &mut spec.rules {
            rule.keep_within_seconds = 0;
        }
        spec
    })
}

/// A tag pushed after planning: what it must still name.
#[derive(Debug)]
struct Pushed {
    tag: String,
    digest: String,
    /// What must stay reachable from it.
    reach: BTreeSet<String>,
    at: DateTime<Utc>,
}

/// The registry behind a recording proxy, and the services.
struct Rig {
    registry: TestRegistry,
    proxy: AuthProxy,
    scheduler: Scheduler,
    scrubber: Scrubber,
    scrubber_listen: String,
    _worker: Worker,
    db: TestDb,
}

const SCRUBBER_FLAGS: &[&str] =
    &["--delay", "3s", "--lease", "2s", "--tag-snapshot-ttl", "500ms", "--max-attempts", "8"];

impl Rig {
    async fn start() -> Self {
        let registry = TestRegistry::start().await;
        let proxy = AuthProxy::start(&registry.url(), Mode::SlowDeletes { millis: 0 }).await;
        let db = TestDb::create().await;
        let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let scrubber_listen = format!("127.0.0.1:{port}");
        let scrubber =
            Scrubber::start_on("scrubber", &db, &scheduler, &scrubber_listen, SCRUBBER_FLAGS).await;
        let worker = Worker::start(&scheduler, "w", &["--scrubber", &scrubber.url]).await;
        // Rate-limited, so that scrubbing takes long enough to be raced.
        let definition = v1::Registry {
            name: "local".into(),
            url: proxy.url(),
            rate_limit: 20.0,
            ..Default::default()
        };
        let request =
            v1::CreateRegistryRequest { registry: Some(definition), ..Default::default() };
        scheduler.registries().await.create_registry(request).await.expect("create registry");
        Self { registry, proxy, scheduler, scrubber, scrubber_listen, _worker: worker, db }
    }
}

fn seed() -> [u8; 32] {
    let hex = std::env::var("SAFETY_SEED").unwrap_or_else(|_| {
        // `RandomState` is keyed randomly per process: a fresh seed.
        use std::hash::{BuildHasher, Hasher};
        let words = (0..4).map(|i: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.finish().to_le_bytes()
        });
        hex::encode(words.flatten().collect::<Vec<u8>>())
    });
    let bytes = hex::decode(hex.trim()).expect("SAFETY_SEED is 64 hex digits");
    bytes.try_into().expect("SAFETY_SEED is 64 hex digits")
}

#[tokio::test(flavor = "multi_thread")]
async fn random_cleanups_under_pushes_kills_and_restarts_keep_what_they_must() {
    let seed = seed();
    eprintln!("safety run seed: SAFETY_SEED={}", hex::encode(seed));
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = (graphgen::arb_layout(12, 14), arb_deleting_spec(), arb_disturbance());
    let mut rig = Rig::start().await;
    let mut in_window = 0;
    for n in 0..scenarios() {
        let (layout, spec, disturbance) =
            strategy.new_tree(&mut runner).expect("a generated scenario").current();
        match scenario(&mut rig, n, &layout, &spec, &disturbance).await {
            Ok(losses) => in_window += losses,
            Err(e) => panic!(
                "scenario {n} (SAFETY_SEED={}): {e}\n{layout:?}\n{spec:?}\n{disturbance:?}",
                hex::encode(seed)
            ),
        }
    }
    eprintln!(
        "{} scenarios; {in_window} racing pushes lost inside the documented window",
        scenarios()
    );
}

/// One scenario; the number of racing pushes lost inside the window.
async fn scenario(
    rig: &mut Rig,
    n: u32,
    layout: &Layout,
    spec: &RuleSpec,
    disturbance: &Disturbance,
) -> Result<u32, String> {
    let repo = format!("safe/s{n}");
    let model = graphgen::push(layout, &rig.registry, &repo).await;
    let tagged_before = model.reach(model.inventory.tags.iter().filter_map(|t| t.digest.clone()));
    let unreachable_before: BTreeSet<String> =
        rig.registry.manifests(&repo).difference(&tagged_before).cloned().collect();
    let (job_id, result) = cleanup(rig, n, &repo, spec).await?;
    let pushed = disturb(rig, &repo, &model, &result, disturbance).await;
    let deletions = ended(rig, job_id, result.deletions.len()).await;
    eprintln!(
        "scenario {n}: {} listed rules, {} tags, {} images planned, {:?}, deletions {:?}",
        spec.rules.len(),
        result.tags.len(),
        result.images.len(),
        disturbance,
        deletions.iter().map(|d| d.status().as_str_name()).collect::<Vec<_>>()
    );
    check_kept(&rig.registry, &repo, &model, &result).await?;
    let lost = check_pushed(rig, &repo, &pushed, &deletions).await?;
    check_records(rig, &repo, &deletions).await?;
    for tag in rig.registry.tags(&repo).await {
        if rig.registry.on_placeholder(&repo, &tag).await {
            return Err(format!("tag {tag} left on a placeholder"));
        }
    }
    let all_deleted = deletions.iter().all(|d| d.status() == DeletionStatus::Deleted);
    if all_deleted && pushed.is_empty() {
        let tagged_now = tag_digests_now(&rig.registry, &repo).await;
        let reachable = model.reach(tagged_now);
        let stray: Vec<String> = rig
            .registry
            .manifests(&repo)
            .into_iter()
            .filter(|d| !reachable.contains(d) && !unreachable_before.contains(d))
            .collect();
        if !stray.is_empty() {
            return Err(format!("left untagged and unreachable: {stray:?}"));
        }
    }
    Ok(lost)
}

/// Runs a live policy over `repo` alone; its job and result once planned.
async fn cleanup(
    rig: &Rig,
    n: u32,
    repo: &str,
    spec: &RuleSpec,
) -> Result<(i64, TagCleanupResult), String> {
    sync(&rig.scheduler, "local").await;
    let name = format!("safe-{n}");
    let policy = create_policy(&rig.scheduler, policy_for(&name, repo, spec)).await;
    if policy.repository_count != 1 {
        return Err(format!("policy {name} covers {} repositories", policy.repository_count));
    }
    run_policy(&rig.scheduler, &name).await;
    let (scheduler, name) = (&rig.scheduler, name.as_str());
    let job = wait_until("the cleanup to plan", Duration::from_secs(60), || async move {
        let request = v1::ListRepositoriesRequest { policy: name.into(), ..Default::default() };
        let repos = scheduler.repositories().await.list_repositories(request).await.ok()?;
        let job_id = repos.into_inner().repositories.first()?.last_job_id;
        let request = v1::GetJobRequest { id: job_id };
        let job = scheduler.jobs().await.get_job(request).await.ok()?.into_inner().job?;
        job.status().is_terminal().then_some(job)
    })
    .await;
    if job.status() != v1::JobStatus::Done {
        return Err(format!("cleanup ended {:?}: {}", job.status(), job.last_error));
    }
    let result = serde_json::from_value(struct_to_json(job.result.as_ref().expect("result")))
        .map_err(|e| format!("result: {e}"))?;
    Ok((job.id, result))
}

/// Races the scrubber as `disturbance` says; the tags it pushed.
async fn disturb(
    rig: &mut Rig,
    repo: &str,
    model: &Model,
    result: &TagCleanupResult,
    disturbance: &Disturbance,
) -> Vec<Pushed> {
    let Rig { registry, scrubber, scheduler, db, scrubber_listen, .. } = rig;
    let registry = &*registry;
    let race = async {
        tokio::time::sleep(disturbance.race_after).await;
        race(registry, repo, model, result, disturbance.race).await
    };
    let kill = async {
        if let Some(after) = disturbance.kill_scrubber_after {
            tokio::time::sleep(after).await;
            scrubber.process.signal(Signal::SIGKILL);
            let _ = scrubber.process.wait_exit(Duration::from_secs(10)).await;
            *scrubber =
                Scrubber::start_on("scrubber", db, scheduler, scrubber_listen, SCRUBBER_FLAGS)
                    .await;
        }
    };
    let restart = async {
        if let Some(after) = disturbance.restart_registry_after {
            tokio::time::sleep(after).await;
            registry.restart().await;
        }
    };
    let (pushed, (), ()) = tokio::join!(race, kill, restart);
    pushed.into_iter().collect()
}

async fn race(
    registry: &TestRegistry,
    repo: &str,
    model: &Model,
    result: &TagCleanupResult,
    race: Race,
) -> Option<Pushed> {
    match race {
        Race::None => None,
        Race::TagPlannedDigest(i) => {
            let planned: Vec<&str> = result.images.iter().map(|i| i.digest.as_str()).collect();
            let digest = planned.get(i % planned.len().max(1))?.to_string();
            let tag = format!("raced-{}", i);
            // Too late (already deleted) is no race.
            if !registry.try_tag(repo, &tag, &digest).await {
                return None;
            }
            let reach = model.reach([digest.clone()]);
            Some(Pushed { tag, digest, reach, at: Utc::now() })
        }
        Race::RepushPlannedTag(i) => {
            let planned: Vec<&str> = result
                .tags
                .iter()
                .filter(|d| d.action == Action::Delete)
                .map(|d| d.tag.as_str())
                .collect();
            let tag = planned.get(i % planned.len().max(1))?.to_string();
            let digest = push_through_restarts(registry, repo, &tag).await;
            let reach = BTreeSet::from([digest.clone()]);
            Some(Pushed { tag, digest, reach, at: Utc::now() })
        }
    }
}

/// Pushes a new image under `tag`, again after a registry restart cut a
/// request: the push the scenario's operator would make until it landed.
/// `at` is taken after the last try, which only widens the window a loss
/// is excused in if an earlier try landed unseen; the retries are bounded
/// because a scenario restarts the registry at most once.
async fn push_through_restarts(registry: &TestRegistry, repo: &str, tag: &str) -> String {
    let mut last = String::new();
    for _ in 0..3 {
        match registry.try_push_image(repo, &[tag], Some(Utc::now()), tag).await {
            Ok(digest) => return digest,
            Err(e) => last = e,
        }
        registry.restarted().await;
    }
    panic!("racing push of {repo}:{tag} failed three times, the last: {last}");
}

/// The job's deletions once every one of them ended.
async fn ended(rig: &Rig, job_id: i64, n: usize) -> Vec<v1::Deletion> {
    if n == 0 {
        return Vec::new();
    }
    let client = rig.scrubber.client().await;
    wait_until(&format!("the deletions of job {job_id} to end"), Duration::from_secs(180), || {
        let mut client = client.clone();
        async move {
            let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
            let listed = client.list_deletions(request).await.ok()?.into_inner().deletions;
            let over = |d: &v1::Deletion| {
                matches!(
                    d.status(),
                    DeletionStatus::Deleted | DeletionStatus::Failed | DeletionStatus::Cancelled
                )
            };
            (listed.len() >= n && listed.iter().all(over)).then_some(listed)
        }
    })
    .await
}

/// Every kept tag names what it named and pulls; its graph is there.
async fn check_kept(
    registry: &TestRegistry,
    repo: &str,
    model: &Model,
    result: &TagCleanupResult,
) -> Result<(), String> {
    let kept: Vec<_> = result.tags.iter().filter(|d| d.action == Action::Keep).collect();
    for d in &kept {
        if registry.tag_digest(repo, &d.tag).await != d.digest {
            return Err(format!("kept tag {} moved or went", d.tag));
        }
        registry.pull(repo, &d.tag).await?;
    }
    let present = registry.manifests(repo);
    for digest in model.reach(kept.iter().filter_map(|d| d.digest.clone())) {
        if !present.contains(&digest) {
            return Err(format!("{digest} is reachable from a kept tag but gone"));
        }
    }
    Ok(())
}

/// A tag pushed after planning keeps what it names, unless a DELETE of
/// it, or an untag's placeholder PUT onto it, left within the documented
/// window after the push; returns how many were lost so.
async fn check_pushed(
    rig: &Rig,
    repo: &str,
    pushed: &[Pushed],
    deletions: &[v1::Deletion],
) -> Result<u32, String> {
    let record = audit(rig, deletions).await;
    let present = rig.registry.manifests(repo);
    let mut lost = 0;
    for p in pushed {
        let names = rig.registry.tag_digest(repo, &p.tag).await.as_deref() == Some(&p.digest);
        let whole = p.reach.iter().all(|d| present.contains(d));
        if names && whole && rig.registry.pull(repo, &p.tag).await.is_ok() {
            continue;
        }
        let window = chrono::Duration::from_std(SNAPSHOT_TTL + MARGIN).expect("window");
        // Lost to a DELETE of what it names, or to the placeholder PUT of
        // an untag of the same tag (Distribution has no conditional PUT).
        let tag_path = format!("/manifests/{}", p.tag);
        let inside = record.iter().any(|r| {
            let deleted =
                r.method == "DELETE" && p.reach.iter().any(|d| r.path.ends_with(d.as_str()));
            let overwritten = r.method == "PUT" && r.path.ends_with(&tag_path);
            (deleted || overwritten)
                && r.sent_at
                    .as_ref()
                    .and_then(timestamp_to_chrono)
                    .is_some_and(|t| t < p.at + window)
        });
        if !inside {
            return Err(format!("{p:?} was hurt by a DELETE sent long after it was pushed"));
        }
        lost += 1;
    }
    Ok(lost)
}

/// The audit record of `deletions`.
async fn audit(rig: &Rig, deletions: &[v1::Deletion]) -> Vec<v1::RegistryRequest> {
    if deletions.is_empty() {
        return Vec::new();
    }
    let request =
        v1::ListRegistryRequestsRequest { deletion_ids: deletions.iter().map(|d| d.id).collect() };
    let mut client = rig.scrubber.client().await;
    client.list_registry_requests(request).await.expect("audit record").into_inner().requests
}

/// Deletions end with a reason; every DELETE and PUT the registry got for
/// `repo` is on record.
async fn check_records(rig: &Rig, repo: &str, deletions: &[v1::Deletion]) -> Result<(), String> {
    for d in deletions {
        let unexplained = matches!(d.status(), DeletionStatus::Failed | DeletionStatus::Cancelled)
            && d.error.is_empty();
        if unexplained {
            return Err(format!("deletion {} ended {:?} with no reason", d.id, d.status()));
        }
    }
    let recorded: BTreeSet<(String, String)> =
        audit(rig, deletions).await.into_iter().map(|r| (r.method, r.path)).collect();
    let prefix = format!("/v2/{repo}/manifests/");
    let probe = format!("sha256:{}", "0".repeat(64));
    for (method, path) in rig.proxy.destructive_requests() {
        let probe = path.ends_with(&probe) || path.contains("/regsweep-probe-");
        if path.starts_with(&prefix)
            && !probe
            && !recorded.contains(&(method.clone(), path.clone()))
        {
            return Err(format!("{method} {path} reached the registry but is not on record"));
        }
    }
    Ok(())
}

async fn tag_digests_now(registry: &TestRegistry, repo: &str) -> Vec<String> {
    let mut now = Vec::new();
    for tag in registry.tags(repo).await {
        if let Some(digest) = registry.tag_digest(repo, &tag).await {
            now.push(digest);
        }
    }
    now
}
